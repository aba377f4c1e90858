"""Vietnamese text from Debian packages: LibreOffice's help and the translated man pages.

The packages are fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x`` into a
cache folder: nothing is installed and no root is needed beyond what apt-get download
itself wants. ``libreoffice-help-vi`` ships its help as ~2,500 HTML pages (the ``.xhp``
sources are not in the package); ``manpages-vi`` ships ~140 gzipped roff man pages.

Both are only partly translated: many paragraphs are still English. Lines are kept only
when they read as Vietnamese (see ``is_vietnamese``), so an English sentence in a help
page does not end up counted as Vietnamese in the tokenizer or in the held-out sets.
"""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

from steep.demos.corpora import CorpusError, CorpusInfo, _cached, write_corpus

PACKAGES = ("libreoffice-help-vi", "manpages-vi")
MIN_PAGE_CHARS = 200

# Letters that Vietnamese writes and English never does: the seven base letters with
# their own shapes (ă â đ ê ô ơ ư) and every tone mark (precomposed forms).
_VI_LETTERS = set(
    "ăâđêôơưàáảãạằắẳẵặầấẩẫậèéẻẽẹềếểễệìíỉĩịòóỏõọồốổỗộờớởỡợùúủũụừứửữựỳýỷỹỵ"
    "ĂÂĐÊÔƠƯÀÁẢÃẠẰẮẲẴẶẦẤẨẪẬÈÉẺẼẸỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌỒỐỔỖỘỜỚỞỠỢÙÚỦŨỤỪỨỬỮỰỲÝỶỸỴ"
)
_WORD = re.compile(r"[^\W\d_]+")


def is_vietnamese(line: str, min_share: float = 0.25) -> bool:
    """True when at least ``min_share`` of the line's words carry a Vietnamese-only letter.

    A word-level letter test rather than fastText language ID: these lines are often a
    few words long, where lid.176 guesses, while one word in four with a Vietnamese
    letter almost never happens in English (names like 'Đà Nẵng' aside).
    """
    words = _WORD.findall(line)
    if len(words) < 3:
        return False
    vi = sum(1 for w in words if any(ch in _VI_LETTERS for ch in w))
    return vi >= min_share * len(words)


def vietnamese_lines(text: str) -> str:
    """The Vietnamese lines of ``text``, blank-line runs collapsed."""
    kept = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in kept if is_vietnamese(line))


# ---------------------------------------------------------------- LibreOffice help HTML


class _HelpText(HTMLParser):
    """Text of the help page's ``DisplayArea``; block elements end a line.

    Elements with ``hidden`` hold per-platform variants (macOS vs others) that the help
    viewer's JavaScript picks from, and script/style hold no prose: both are skipped.
    """

    BLOCK = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "div", "td", "th", "tr", "br", "pre"}
    VOID = {"br", "img", "input", "meta", "link", "hr", "area", "base", "col", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.depth = 0  # element depth inside DisplayArea (0: outside)
        self.skip_at: int | None = None  # depth where a hidden / script element began

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            if self.depth and tag == "br":
                self.parts.append("\n")
            return
        if self.depth == 0:
            if dict(attrs).get("id") == "DisplayArea":
                self.depth = 1
            return
        self.depth += 1
        hidden = any(k == "hidden" for k, _ in attrs) or tag in ("script", "style")
        if hidden and self.skip_at is None:
            self.skip_at = self.depth
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self.depth == 0 or tag in self.VOID:
            return
        if self.skip_at == self.depth:
            self.skip_at = None
        self.depth -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.depth and self.skip_at is None:
            self.parts.append(data)


def help_page_text(html: str) -> str:
    parser = _HelpText()
    parser.feed(html)
    parser.close()
    return vietnamese_lines("".join(parser.parts))


# ---------------------------------------------------------------- man pages

_ROFF_ESCAPES = [
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes \fB \fI \fP \f(CW \f[B]
    (re.compile(r"\\s[+-]?\d"), ""),  # size changes
    (re.compile(r"\\\((aq|cq)"), "'"),
    (re.compile(r"\\\((lq|rq|dq)"), '"'),
    (re.compile(r"\\\((em|en)"), "-"),
    (re.compile(r"\\\(bu"), "*"),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), ""),  # other named glyphs
    (re.compile(r"\\[&:%|^,/]"), ""),
    (re.compile(r"\\-"), "-"),
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r"\\ "), " "),
    (re.compile(r'\\"'), ""),
]


def man_page_text(roff: str) -> str:
    """Prose of a roff man page: requests dropped, text arguments of .SH/.B/.I kept.

    A few regexes rather than groff: the pages are simple (help2man and po4a output) and
    groff is not on every machine; the letters, which are what matters here, survive.
    """
    lines: list[str] = []
    for raw in roff.splitlines():
        line = raw.rstrip()
        if line.startswith(('.\\"', "'\\\"", '.\\"')) or line in (".", "'"):
            continue
        if line.startswith((".", "'")):
            request, _, rest = line[1:].partition(" ")
            if request in ("SH", "SS", "B", "I", "BI", "BR", "IB", "IR", "RB", "RI", "TP", "IP"):
                line = rest.replace('"', "")
            else:
                continue
        for pattern, repl in _ROFF_ESCAPES:
            line = pattern.sub(repl, line)
        lines.append(line)
    return vietnamese_lines("\n".join(lines))


# ---------------------------------------------------------------- fetching


def fetch_packages(cache_dir: Path, packages: tuple[str, ...] = PACKAGES) -> Path:
    """Download and unpack ``packages`` under ``cache_dir/root``; reuse them next time."""
    root = cache_dir / "root"
    stamp = cache_dir / ".unpacked"
    if stamp.exists() and stamp.read_text().split() == list(packages):
        return root
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise CorpusError(
            "the Vietnamese demo corpus needs apt-get and dpkg-deb (a Debian or Ubuntu "
            f"machine) to fetch {', '.join(packages)}"
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    debs = _download(cache_dir, packages)
    tmp = Path(tempfile.mkdtemp(prefix=".root.", dir=cache_dir))
    try:
        for deb in debs:
            _run(["dpkg-deb", "-x", str(deb), str(tmp)], f"unpacking {deb.name}")
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stamp.write_text(" ".join(packages) + "\n")
    return root


def _download(cache_dir: Path, packages: tuple[str, ...]) -> list[Path]:
    debs = []
    for pkg in packages:
        found = sorted(cache_dir.glob(f"{pkg}_*.deb"))
        if not found:
            print(f"apt-get download {pkg} ...", flush=True)
            done = subprocess.run(
                ["apt-get", "download", pkg], cwd=cache_dir, capture_output=True, text=True
            )
            if done.returncode != 0 and "Unable to locate package" in done.stderr:
                print("package lists are stale or empty: apt-get update ...", flush=True)
                _run(["apt-get", "update", "-qq"], "apt-get update")
                done = subprocess.run(
                    ["apt-get", "download", pkg], cwd=cache_dir, capture_output=True, text=True
                )
            found = sorted(cache_dir.glob(f"{pkg}_*.deb"))
            if done.returncode != 0 or not found:
                raise CorpusError(
                    f"apt-get download {pkg} failed in {cache_dir}:\n{done.stderr.strip()[-1500:]}"
                    f"\nPut {pkg}_*.deb in that folder by hand to build the corpus offline."
                )
        debs.append(found[-1])
    return debs


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise CorpusError(f"{what} failed ({' '.join(cmd)}):\n{done.stderr.strip()[-1500:]}")


# ---------------------------------------------------------------- documents


def help_pages(root: Path) -> Iterator[str]:
    """One document per LibreOffice help page with enough Vietnamese text."""
    for path in sorted((root / "usr/share/libreoffice/help/vi").rglob("*.html")):
        text = help_page_text(path.read_text(encoding="utf-8", errors="replace"))
        if len(text) >= MIN_PAGE_CHARS:
            yield text


def man_pages(root: Path) -> Iterator[str]:
    """One document per Vietnamese man page with enough Vietnamese text."""
    for path in sorted((root / "usr/share/man/vi").rglob("*.gz")):
        text = man_page_text(gzip.decompress(path.read_bytes()).decode("utf-8", "replace"))
        if len(text) >= MIN_PAGE_CHARS:
            yield text


def build_vietnamese(out: Path, cache_dir: Path) -> CorpusInfo:
    """The Vietnamese corpus as jsonl (help pages, then man pages), built once and reused."""
    cached = _cached(out)
    if cached:
        return cached
    root = fetch_packages(cache_dir)

    def docs() -> Iterator[str]:
        yield from help_pages(root)
        yield from man_pages(root)

    return write_corpus(docs(), out, f"debian packages {', '.join(PACKAGES)} (Vietnamese lines)")
