"""Document-level cleaning and quality steps: normalise, Gopher, C4, FineWeb, PII.

One module per step family: ``normalize``, ``gopher`` (quality and repetition), ``c4``,
``fineweb`` and ``pii``, on the shared word and sentence helpers of ``text``. Importing
this module (or the ``steep.datahub.steps`` package) registers them all.

The thresholds default to the values datatrove uses (which in turn follow the Gopher paper,
Rae et al. 2021 table A1; the C4 paper, Raffel et al. 2020; and FineWeb), so a recipe that
names a step without parameters gets the well-studied behaviour. Words come from one
language-agnostic regex tokenizer (no NLTK, no downloads), so every rule runs on any script
that separates words with spaces; the per-language parts (stop words) are data, not code.

Drop reasons are ``"<kind>.<rule>"`` so the pipeline can count them; ``detail`` carries
the measured value and the threshold it crossed.
"""

from __future__ import annotations

from steep.datahub.steps.c4 import C4, POLICY_SUBSTRINGS
from steep.datahub.steps.fineweb import FineWeb
from steep.datahub.steps.gopher import DEFAULT_STOP_WORDS, GopherQuality, GopherRepetition
from steep.datahub.steps.normalize import Normalize
from steep.datahub.steps.pii import Pii
from steep.datahub.steps.text import TERMINAL_PUNCTUATION

__all__ = [
    "C4",
    "DEFAULT_STOP_WORDS",
    "POLICY_SUBSTRINGS",
    "TERMINAL_PUNCTUATION",
    "FineWeb",
    "GopherQuality",
    "GopherRepetition",
    "Normalize",
    "Pii",
]
