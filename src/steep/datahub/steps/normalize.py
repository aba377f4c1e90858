"""``normalize``: canonical text (NFC, no control characters, \\n line ends, tidy whitespace)."""

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
    """Canonical text: NFC, no control characters, \\n line ends, tidy whitespace.

    Later steps (dedup hashes, stop-word lists, n-gram counts) compare strings; without
    this, the same text in NFD or with \\r\\n would count as different. Leading
    indentation is kept (code and verse need it); runs of spaces/tabs inside a line become
    one space (a lone tab, as in a table row, stays), trailing spaces go, 3+ blank lines
    become 2, and blank lines at the start and end go.
    """

    kind: ClassVar[str] = "normalize"

    def apply(self, doc: Doc) -> StepResult:
        text = _NEWLINES.sub("\n", doc.text)
        text = _CONTROL.sub("", text)
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        text = _TRAILING_WS.sub("", text)
        text = _INNER_WS.sub(" ", text)
        text = _MANY_BLANK_LINES.sub("\n\n\n", text).strip("\n")
        if not text.strip():
            return Drop("normalize.empty", f"{len(doc.text)} chars, none visible")
        if text == doc.text:
            return doc
        return Edit(
            _replace_text(doc, text), "normalize.changed", f"{len(doc.text)} -> {len(text)} chars"
        )
