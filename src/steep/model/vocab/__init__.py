"""Teach a base a new language: extend its tokenizer, grow its embeddings, measure the gain.

Why: SmolLM2's and Llama's tokenizers cut Vietnamese into ~1.5 characters per token, so
training and inference on it are slow and waste context. Chinese-LLaMA, Swallow and ChipNeMo
first add target-language tokens and initialise each new embedding row as the mean of the
rows of the pieces the old tokenizer cut it into.

The work is split by job: ``tokenizer`` learns the new merges and extends the tokenizer,
``embeddings`` grows and initialises the new rows, ``measure`` scores the result,
``report`` writes it up and ``extend`` is the ``steep tokenizer extend`` workflow.
"""

from steep.model.vocab.embeddings import INITS, Init, grow_embeddings, sub_token_ids, tied
from steep.model.vocab.extend import ExtendResult, ExtendSpec, extend_model, read_corpus
from steep.model.vocab.measure import fertility, initial_bpb, new_token_usage
from steep.model.vocab.report import REPORT_FILE, format_report
from steep.model.vocab.tokenizer import (
    EXTENDABLE,
    LANG_SAMPLE,
    Extension,
    VocabError,
    backend_json,
    check_language,
    corpus_words,
    extend_tokenizer,
    learn_merges,
)

__all__ = [
    "EXTENDABLE",
    "INITS",
    "LANG_SAMPLE",
    "REPORT_FILE",
    "ExtendResult",
    "ExtendSpec",
    "Extension",
    "Init",
    "VocabError",
    "backend_json",
    "check_language",
    "corpus_words",
    "extend_model",
    "extend_tokenizer",
    "fertility",
    "format_report",
    "grow_embeddings",
    "initial_bpb",
    "learn_merges",
    "new_token_usage",
    "read_corpus",
    "sub_token_ids",
    "tied",
]
