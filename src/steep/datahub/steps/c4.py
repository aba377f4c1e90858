"""``c4``: C4's line rules (Raffel et al. 2020)."""

from __future__ import annotations

import re
from typing import ClassVar

from steep.datahub.steps.base import Doc, DocStep, Drop, Edit, StepResult, register
from steep.datahub.steps.text import _ends_sentence, _replace_text

_CITATION = re.compile(r"\[(?:\d*|edit|citation needed)\]", re.IGNORECASE)
# Sentence ends inside a line, counted without a language-specific tokenizer: CJK full
# stops end a sentence anywhere (no space follows them); other marks need whitespace or
# the end of the line after them (and after any closing quotes/brackets).
_SENTENCE_END = re.compile(
    r"[。！？｡]+[”’」』）]*"
    r"|[.!?．؟۔।॥։።‼⁉]+[\"'”’“»」』)\]]*(?=\s|$)"
)
POLICY_SUBSTRINGS: tuple[str, ...] = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


@register
class C4(DocStep):
    """C4's line rules (Raffel et al. 2020, as in the TFDS/datatrove implementation).

    Keeps only lines that look like sentences (terminal punctuation, at least
    ``min_words_per_line`` words) and drop boilerplate lines (javascript notices, cookie and
    policy banners); a page with "lorem ipsum" or a curly bracket in a kept line is dropped
    whole, and so is a page with fewer than ``min_num_sentences`` sentences left. As in the
    reference implementation, the page-level rules look only at lines that passed the
    punctuation and length rules. Paragraph breaks (blank lines) between kept lines stay.
    """

    kind: ClassVar[str] = "c4"

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_words_per_line: int | None = 3
    max_word_length: int | None = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    min_num_sentences: int | None = 5

    def apply(self, doc: Doc) -> StepResult:
        kept: list[str] = []
        n_lines = n_removed = n_citations = n_sentences = 0
        pending_break = False
        for raw in doc.text.split("\n"):
            line = raw.strip()
            if not line:
                pending_break = bool(kept)
                continue
            n_lines += 1
            words = line.split()
            too_long = self.max_word_length  # no word is longer than its line
            if too_long is not None and len(line) > too_long and max(map(len, words)) > too_long:
                n_removed += 1
                continue
            if self.remove_citations and "[" in line:
                line, k = _CITATION.subn("", line)
                n_citations += k
            if self.filter_no_terminal_punct and not _ends_sentence(line):
                n_removed += 1
                continue
            if self.min_words_per_line is not None and len(words) < self.min_words_per_line:
                n_removed += 1
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                return Drop("c4.lorem_ipsum", f"line {n_lines}")
            if self.filter_javascript and "javascript" in lower:
                n_removed += 1
                continue
            if self.filter_curly_bracket and "{" in line:
                return Drop("c4.curly_bracket", f"line {n_lines}")
            if self.filter_policy and any(p in lower for p in POLICY_SUBSTRINGS):
                n_removed += 1
                continue
            n_sentences += max(1, len(_SENTENCE_END.findall(line)))
            if pending_break:
                kept.append("")
                pending_break = False
            kept.append(line)

        if self.min_num_sentences is not None and n_sentences < self.min_num_sentences:
            return Drop("c4.too_few_sentences", f"{n_sentences} < {self.min_num_sentences}")
        if not kept:
            return Drop("c4.empty", f"0 of {n_lines} lines kept")
        if n_removed:
            return Edit(
                _replace_text(doc, "\n".join(kept)),
                "c4.lines_removed",
                f"{n_removed} of {n_lines} lines",
            )
        if n_citations:
            return Edit(
                _replace_text(doc, "\n".join(kept)),
                "c4.citations_removed",
                f"{n_citations} citations",
            )
        return doc  # only whitespace would change: not worth an edit
