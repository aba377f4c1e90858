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
_TRAILING_WS = re.compile(r"[^\S\n]+$", re.MULTILINE)
# A run of 2+ spaces/tabs after the first visible character of a line (indentation stays).
_INNER_WS = re.compile(r"(?<=\S)[ \t]{2,}")
_MANY_BLANK_LINES = re.compile(r"\n{4,}")


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
        text = _NEWLINES.sub("\n", doc.text)
        text = _CONTROL.sub("", text)
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        text = _TRAILING_WS.sub("", text)
        if self.collapse_spaces:
            text = _INNER_WS.sub(" ", text)
        text = _MANY_BLANK_LINES.sub("\n\n\n", text).strip("\n")
        if not text.strip():
            return Drop("normalize.empty", f"{len(doc.text)} chars, none visible")
        if text == doc.text:
            return doc
        return Edit(
            _replace_text(doc, text), "normalize.changed", f"{len(doc.text)} -> {len(text)} chars"
        )
