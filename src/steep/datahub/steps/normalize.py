"""``normalize``: canonical text (NFC, no control characters, \\n line ends, no trailing
whitespace), keeping the spacing inside lines unless asked."""

from __future__ import annotations

import re
import unicodedata
from typing import ClassVar

from steep.datahub.steps.base import Doc, DocStep, Drop, Edit, StepResult, register
from steep.datahub.steps.text import _replace_text

_NEWLINES = re.compile("\r\n?|[\x0b\x0c\x85\u2028\u2029]")
# C0/C1 controls except \t and \n (\v, \f, \r, NEL became \n above), DEL, and the BOM.
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufeff]")
_NEWLINE_CHARS_ASCII = ("\r", "\x0b", "\x0c")  # what _NEWLINES finds, checked first at C speed
_NEWLINE_CHARS_OTHER = ("\x85", "\u2028", "\u2029")
# A run of 2+ spaces/tabs after the first visible character of a line (indentation stays).
_INNER_WS = re.compile(r"(?<=\S)[ \t]{2,}")
_MANY_BLANK_LINES = re.compile(r"\n{4,}")


def _has_any(text: str, chars: tuple[str, ...]) -> bool:
    return any(c in text for c in chars)


@register
class Normalize(DocStep):
    """Canonical text: NFC, no control characters, \\n line ends, no trailing spaces.

    Later steps (dedup hashes, stop-word lists, n-gram counts) compare strings; without
    this, the same text in NFD or with \\r\\n would count as different. By default only
    what is safe for any text changes: NFC, control characters, line ends, trailing
    spaces, 3+ blank lines become 2, blank lines at the start and end go. Whitespace
    inside a line is content (padded tables, aligned code, verse) and is kept unless
    ``collapse_spaces`` asks for runs of spaces/tabs after a line's first visible
    character to become one space (indentation stays either way). The edit's detail gives
    the characters before and after.
    """

    kind: ClassVar[str] = "normalize"
    collapse_spaces: bool = False

    def apply(self, doc: Doc) -> StepResult:
        text = doc.text
        if _has_any(text, _NEWLINE_CHARS_ASCII) or (
            not text.isascii() and _has_any(text, _NEWLINE_CHARS_OTHER)
        ):
            text = _NEWLINES.sub("\n", text)
        text = _CONTROL.sub("", text)
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        # trailing whitespace of every line (what ``[^\S\n]+$`` in MULTILINE removes)
        text = "\n".join(map(str.rstrip, text.split("\n")))
        if self.collapse_spaces:
            text = _INNER_WS.sub(" ", text)
        if "\n\n\n\n" in text:
            text = _MANY_BLANK_LINES.sub("\n\n\n", text)
        text = text.strip("\n")
        if not text.strip():
            return Drop("normalize.empty", f"{len(doc.text)} chars, none visible")
        if text == doc.text:
            return doc
        return Edit(
            _replace_text(doc, text), "normalize.changed", f"{len(doc.text)} -> {len(text)} chars"
        )
