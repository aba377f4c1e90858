"""Does a GGUF behave like the HF model it came from? The same text through both.

The GGUF's own tokenizer (what llama.cpp and Ollama will use) must give the HF tokenizer's
ids; then both models score those same ids, so any gap in perplexity or logits is the
export's (f16 rounding, quantization, or a conversion bug), never the tokenizer's.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class GgufComparison:
    tokens: int  # ids scored (the first has no prediction)
    same_tokens: bool  # the GGUF's tokenizer gave the HF tokenizer's ids
    first_mismatch: str | None  # where they part, when they do
    hf_ppl: float
    gguf_ppl: float
    max_abs_logit_diff: float

    @property
    def ppl_change(self) -> float:
        """The GGUF's perplexity relative to the HF model's (0.01 = 1% higher)."""
        return self.gguf_ppl / self.hf_ppl - 1


def compare(gguf: Path, model_dir: Path, text: str, max_tokens: int = 1024) -> GgufComparison:
    """Tokenize ``text`` both ways, then score the HF ids (at most ``max_tokens``) in both."""
    import torch  # deferred: heavy, and llama_cpp is optional (the gguf extra)
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ids = tok(text, add_special_tokens=False).input_ids
    threads = os.cpu_count() or 1
    vocab = Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    theirs = vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    mismatch = _first_mismatch(ids, theirs)
    ids = ids[:max_tokens]
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0].float().numpy()
    llm = Llama(
        model_path=str(gguf),
        n_ctx=len(ids),
        n_batch=len(ids),
        logits_all=True,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    llm.eval(ids)
    ours = np.asarray(llm.scores[: len(ids)], dtype=np.float32)
    return GgufComparison(
        tokens=len(ids),
        same_tokens=mismatch is None,
        first_mismatch=mismatch,
        hf_ppl=_perplexity(hf, ids),
        gguf_ppl=_perplexity(ours, ids),
        max_abs_logit_diff=float(np.abs(hf - ours).max()),
    )


def _perplexity(logits: np.ndarray, ids: list[int]) -> float:
    """exp of the mean negative log-likelihood of ids[1:] given the logits before them."""
    x = logits[:-1].astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(len(ids) - 1), ids[1:]]
    return math.exp(float(nll.mean()))


def _first_mismatch(ours: list[int], theirs: list[int]) -> str | None:
    if ours == theirs:
        return None
    at = 0
    while at < min(len(ours), len(theirs)) and ours[at] == theirs[at]:
        at += 1
    return (
        f"ids differ from position {at}: HF {ours[at : at + 5]} vs GGUF "
        f"{theirs[at : at + 5]} ({len(ours)} vs {len(theirs)} ids)"
    )
