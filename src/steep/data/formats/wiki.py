"""MediaWiki XML dumps (``pages-articles*.xml[.bz2]``): one document per article.

The dump is read as a stream (``iterparse``, each page cleared once read), so a dump of
any size holds one page in memory. Redirects and pages outside the article namespace are
skipped with their title; the markup is stripped by mwparserfromhell, the parser the
MediaWiki community keeps, and what it leaves of links to files and categories removed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import IO, Any

from steep.data.formats.base import Extracted, Items, Opener, Skipped

_LEFTOVER = ("Category:", "File:", "Image:", "thumb|")


def plain_text(markup: str) -> str:
    """Wikitext as plain text: templates, tags and link syntax gone, paragraphs kept."""
    import mwparserfromhell  # optional: the wiki extra (pip install 'steep[wiki]')

    text = mwparserfromhell.parse(markup).strip_code(normalize=True, collapse=True)
    lines = [line.strip() for line in text.splitlines()]
    text = "\n".join(line for line in lines if not line.startswith(_LEFTOVER))
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r"[ \t]+([.,;:])", r"\1", text)  # left behind by removed templates
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def pages(raw: IO[bytes]) -> Items:
    """Articles of a dump stream (``meta`` has the title), and each other page as a skip;
    a page is numbered by its place in the dump."""
    events = ET.iterparse(raw, events=("start", "end"))
    _, root = next(events)
    if not root.tag.endswith("mediawiki"):
        yield Skipped(None, f"not a MediaWiki dump: the root element is <{root.tag}>")
        return
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    n = 0
    for event, elem in events:
        if event != "end" or elem.tag != f"{ns}page":
            continue
        n += 1
        yield _page(elem, ns, n)
        root.clear()  # the page is read: free it (and the ones before)


def _page(page: ET.Element, ns: str, n: int) -> Extracted | Skipped:
    title = (page.findtext(f"{ns}title") or "").strip()
    space = page.findtext(f"{ns}ns") or "0"
    if space != "0":
        return Skipped(n, f"not an article: namespace {space} ({title})")
    markup = page.findtext(f"{ns}revision/{ns}text") or ""
    if page.find(f"{ns}redirect") is not None or markup.lstrip().upper().startswith("#REDIRECT"):
        return Skipped(n, f"redirect: {title}")
    return Extracted(plain_text(markup), n, {"format": "mediawiki", "title": title})


def read(open_bytes: Opener, path: str, **_: Any) -> Items:
    with open_bytes() as raw:
        try:
            yield from pages(raw)
        except ET.ParseError as exc:
            yield Skipped(None, f"broken XML: {exc}")
