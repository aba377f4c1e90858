"""A source's ``length`` section: long-context data from the documents a source already has.

Two published levers (ProLong, Gao et al. 2024; Fu et al. 2024): leave out the short
documents, or upsample the long ones *within* their source, so the long-document share
rises while the domain mix (the sources' weights) stays as it was. Here rather than in
``schema`` so the run config stays readable; ``schema.SourceSection`` holds one.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from steep.config.strict import Strict

LENGTH_HELP = (
    "long-context data: leave out short documents (min_tokens) or read the long ones more "
    "often (upsample_tokens, upsample_times) within this source"
)


class LengthSection(Strict):
    """Which of a source's documents the run reads, and how often per epoch."""

    min_tokens: int | None = Field(
        None,
        ge=1,
        description="leave out documents shorter than this many tokens (the separator "
        "counted), from training and held-out alike",
    )
    upsample_tokens: int | None = Field(
        None, ge=1, description="documents at least this long are read upsample_times per epoch"
    )
    upsample_times: int = Field(
        1,
        ge=1,
        description="how often a long document is read per epoch (1: once, as any other); "
        "the source's weight, and so the domain mix, does not change",
    )

    @model_validator(mode="after")
    def _upsample_pair(self) -> LengthSection:
        if (self.upsample_tokens is None) != (self.upsample_times == 1):
            raise ValueError(
                "length: give upsample_tokens (which documents) with upsample_times of 2 or "
                f"more (how often), got upsample_tokens={self.upsample_tokens}, "
                f"upsample_times={self.upsample_times}"
            )
        return self

    def describe(self) -> str:
        """The rule in words: report.md, and what a resume compares."""
        parts = []
        if self.min_tokens:
            parts.append(f"documents of {self.min_tokens}+ tokens")
        if self.upsample_tokens:
            parts.append(f"those of {self.upsample_tokens}+ tokens x{self.upsample_times}")
        return ", ".join(parts) or "every document"
