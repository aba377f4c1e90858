"""Markdown (model cards, run reports) shown as HTML in the studio, never as raw text.

markdown-it-py with raw HTML off: a card or report is written by steep, but a model card
can come from a hub repo, and its HTML must not run in the studio's origin. Relative
links and images (a report's ``plots/loss.png``) are resolved against ``base_url`` so
they load through the route that serves that folder's files.
"""

from __future__ import annotations

from urllib.parse import urljoin

from markdown_it import MarkdownIt

_MD = MarkdownIt("commonmark", {"html": False}).enable("table")
_SAFE_SCHEMES = ("http://", "https://", "#", "mailto:")


def _rebase(url: str, base_url: str) -> str:
    if not base_url or url.startswith(_SAFE_SCHEMES) or url.startswith("/"):
        return url
    return urljoin(base_url.rstrip("/") + "/", url)


def render(text: str, base_url: str = "") -> str:
    """``text`` as HTML; relative ``src``/``href`` values are put under ``base_url``."""
    tokens = _MD.parse(text)
    for token in tokens:
        for child in token.children or []:
            for attr in ("src", "href"):
                value = child.attrGet(attr)
                if isinstance(value, str):
                    child.attrSet(attr, _rebase(value, base_url))
    return _MD.renderer.render(tokens, _MD.options, {})
