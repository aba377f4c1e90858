"""Where `steep data prepare` spends its CPU: each document step of a recipe, in order, on
real text (the demo corpora as `steep demo` builds them: Python docs, Wikipedia, news),
in this process, CPU seconds per step and per GB of the text it was given.

Corpus steps (exact and MinHash dedup) work across shards and are not timed here; time
the whole recipe with `datahub_scale.py --steps prepare`.

    .venv/bin/python benchmarks/prepare_steps.py --corpora-home /tmp/demohome --recipe web docs
    .venv/bin/python benchmarks/prepare_steps.py --jsonl /tmp/corpus-40.jsonl --recipe web

(``--jsonl``: e.g. the corpus ``datahub_scale.py --mb 40 --keep /tmp/corpus.jsonl`` leaves.)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from steep.data.docshards import Doc
from steep.datahub.pipeline import build_step, load_recipe
from steep.datahub.steps.base import DocStep, Drop, Edit

CORPORA = ("python_docs.jsonl", "wikipedia.jsonl", "news.jsonl")
BATCH = 256


def _docs(home: Path, jsonl: Path | None = None) -> list[Doc]:
    docs = []
    if jsonl is not None:  # e.g. the resampled corpus of datahub_scale.py (more repetition)
        with open(jsonl, encoding="utf-8") as f:
            return [Doc(f"{jsonl.name}:{i}", json.loads(line)["text"]) for i, line in enumerate(f)]
    for name in CORPORA:
        with open(home / "demo" / "corpora" / name, encoding="utf-8") as f:
            docs += [Doc(f"{name}:{i}", json.loads(line)["text"]) for i, line in enumerate(f)]
    return docs


def time_steps(recipe: str, docs: list[Doc]) -> list[dict]:
    """Each document step's CPU seconds on what the steps before it kept, batch by batch
    through all the steps in turn, as ``steep data prepare`` runs them (so what one step
    leaves for the next, such as the Gopher steps' shared words, counts as it does there)."""
    steps = [(kind, build_step((kind, params))) for kind, params in load_recipe(recipe)]
    steps = [(kind, step) for kind, step in steps if isinstance(step, DocStep)]
    rows = [{"recipe": recipe, "step": kind, "mb_in": 0.0, "docs_in": 0, "docs_out": 0,
             "cpu_s": 0.0} for kind, _ in steps]  # fmt: skip
    for i in range(0, len(docs), BATCH):
        batch = docs[i : i + BATCH]
        for row, (_, step) in zip(rows, steps, strict=True):
            row["mb_in"] += sum(len(d.text.encode("utf-8")) for d in batch) / 2**20
            row["docs_in"] += len(batch)
            t0, kept = time.process_time(), []
            for out in step.apply_batch(batch):
                if isinstance(out, Drop):
                    continue
                kept.append(out.doc if isinstance(out, Edit) else out)
            row["cpu_s"] += time.process_time() - t0
            row["docs_out"] += len(kept)
            batch = kept
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--corpora-home", type=Path, default=Path("steep-home"))
    p.add_argument("--recipe", nargs="+", default=["web", "docs"])
    p.add_argument("--jsonl", type=Path, help="time on this jsonl's texts instead")
    args = p.parse_args()
    docs = _docs(args.corpora_home, args.jsonl)
    lines = [
        f"Machine: {platform.processor() or platform.machine()}; command: {' '.join(sys.argv)}",
        "",
        "| recipe | step | MB in | docs in | docs out | CPU s | CPU s/GB of its input |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for recipe in args.recipe:
        for r in time_steps(recipe, docs):
            lines.append(
                f"| {r['recipe']} | {r['step']} | {r['mb_in']:.1f} | {r['docs_in']:,} "
                f"| {r['docs_out']:,} | {r['cpu_s']:.2f} | {r['cpu_s'] / (r['mb_in'] / 1024):.0f} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
