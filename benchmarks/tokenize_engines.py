"""HF tokenizers against the fast engine (steep.data.tokengine): MB/s on one core, ids
checked, then `steep data tokenize` end to end with each engine on 1 and 2 workers.

The corpus is `datahub_scale.py`'s: the demo corpora (Python docs, Wikipedia; built by
`steep demo` under $STEEP_HOME/demo/corpora) replicated into one jsonl of ``--mb`` MB with a
quarter of each copy's words resampled, so no document repeats. The tokenizer is a base's
folder (default: the SmolLM2 base `steep demo` converted).

    .venv/bin/python benchmarks/tokenize_engines.py --mb 100 --corpora-home /tmp/demohome \
        --tokenizer /tmp/demohome/models/base/SmolLM2-135M-Instruct.Q4_1-98362432
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.datahub_scale import ROOT, build_corpus, run

BATCH = 256  # documents per call, as a unit batches them (steep.data.tokenunits)


REAL = ("python_docs.jsonl", "wikipedia.jsonl", "news.jsonl")  # the demo corpora, as built


def per_core(corpora: Path, tokenizer_dir: str) -> list[dict]:
    """Each engine alone on one pinned core, in this process, on the demo corpora as they
    are (real text: resampled copies repeat words, which flatters a word cache): MB/s of
    text, ids compared document by document."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    for var in ("TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS", "FASTOKENS_BPE_THREADS"):
        os.environ[var] = "false" if var == "TOKENIZERS_PARALLELISM" else "1"
    from steep.data.tokengine import FAST, HF, encoder, first_difference
    from steep.model.io import load_tokenizer

    tok = load_tokenizer(tokenizer_dir)
    texts = []
    for name in REAL:
        with open(corpora / "demo" / "corpora" / name, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    size = sum(len(t.encode("utf-8")) for t in texts)
    rows, ids = [], {}
    for name in (HF, FAST):
        encode = encoder(tok, name)
        encode(texts[:BATCH])  # warm: first-call setup is not throughput
        t0, c0 = time.perf_counter(), time.process_time()
        out = []
        for i in range(0, len(texts), BATCH):
            out.extend(encode(texts[i : i + BATCH]))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ids[name] = out
        tokens = sum(len(x) for x in out)
        rows.append({"engine": name, "mb": size / 2**20, "wall_s": wall, "cpu_s": cpu,
                     "tokens": tokens, "mb_per_s": size / 2**20 / cpu})  # fmt: skip
    diffs = sum(first_difference(a, b) is not None for a, b in zip(ids[FAST], ids[HF], strict=True))
    for r in rows:
        r.update(documents=len(texts), documents_differing=diffs)
    return rows


def end_to_end(
    corpus: Path, tokenizer_dir: str, workers: list[int], unit_mb: float, engines: list[str]
) -> list:
    """`steep data add` once, then `steep data tokenize` per engine and worker count, each
    in its own STEEP_HOME (a fresh cache); CPU is the command's and its workers' own."""
    steep = [sys.executable, "-m", "steep"]
    rows = []
    for engine in engines:
        for n in workers:
            home = corpus.parent / f"home-{engine}-{n}"
            unit = ["--unit-mb", str(unit_mb)]
            run([*steep, "data", "add", "big", str(corpus), "--no-langid", *unit], home)
            os.environ["STEEP_TOKENIZE_ENGINE"] = engine
            r = run([*steep, "data", "tokenize", "big@1", "--base", tokenizer_dir,
                     "--heldout-fraction", "0.01", *unit, "--executor", "local",
                     "--workers", str(n)], home)  # fmt: skip
            del os.environ["STEEP_TOKENIZE_ENGINE"]
            info = json.loads(next(home.rglob("source.json")).read_text())
            rows.append({"engine": info["engine"]["name"], "workers": n, **r,
                         "tokens": info["splits"]["train"]["tokens"]
                         + info["splits"]["heldout"]["tokens"]})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(home, ignore_errors=True)
    return rows


def report(size_mb: float, core: list[dict], e2e: list[dict]) -> str:
    gb = size_mb / 1024
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"command: {' '.join(sys.argv)}",
        "",
        "| engine, one pinned core | MB/s | CPU s/GB | tokens | documents differing from HF |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in core:
        lines.append(
            f"| {r['engine']} | {r['mb_per_s']:.1f} | {r['cpu_s'] / (r['mb'] / 1024):.0f} "
            f"| {r['tokens']:,} "
            f"| {r['documents_differing']} of {r['documents']:,} |"
        )
    lines += [
        "",
        "| `steep data tokenize`, engine | workers | wall s | own CPU s | CPU s/GB | MB/s per core | speedup 1->2 | peak RSS MB | tokens |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    one = {r["engine"]: r for r in e2e if r["workers"] == 1}
    for r in e2e:
        base = one.get(r["engine"])
        speed = f"{base['wall_s'] / r['wall_s']:.2f}x" if base and r["workers"] == 2 else ""
        lines.append(
            f"| {r['engine']} | {r['workers']} | {r['wall_s']:.1f} | {r['cpu_own_s']:.1f} "
            f"| {r['cpu_own_s'] / gb:.0f} | {size_mb / r['cpu_own_s']:.1f} | {speed} "
            f"| {r['peak_rss_mb']:.0f} | {r['tokens']:,} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=100)
    p.add_argument("--corpora-home", type=Path, default=ROOT / "steep-home")
    p.add_argument(
        "--tokenizer",
        default=str(ROOT / "steep-home/models/base/SmolLM2-135M-Instruct.Q4_1-98362432"),
    )
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--unit-mb", type=float, default=16)
    p.add_argument(
        "--engines", nargs="*", default=["hf", "auto"], help="STEEP_TOKENIZE_ENGINE (none: skip)"
    )
    p.add_argument("--no-per-core", action="store_true", help="end to end only")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tokengines-"))
    try:
        corpus = work / "big.jsonl"
        size = build_corpus(args.corpora_home, args.mb, corpus) / 2**20 if args.engines else 1
        e2e = end_to_end(corpus, args.tokenizer, args.workers, args.unit_mb, args.engines)
        # last: it pins this process to one core
        core = [] if args.no_per_core else per_core(args.corpora_home, args.tokenizer)
        text = report(size, core, e2e)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
