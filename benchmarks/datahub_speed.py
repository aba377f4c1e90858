"""Data Hub speed against datatrove and HF ``datasets``, per CPU core.

Three comparisons on the same corpus (the demo corpora, replicated to ``--mb`` MB):

1. tokenization with the SmolLM2 tokenizer: ``steep.data.tokenize.tokenize_source`` (read
   jsonl, tokenize, write token shards) vs ``datasets.load_dataset("json")`` +
   ``.map(tok, batched=True)`` (writes an arrow cache file). Run in a subprocess per
   threading mode: tokenizers' default (Rust thread pool over the batch, both sides) and
   one thread (``RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false``, pinned to one CPU).
2. quality filters: steep's ``gopher_quality``, ``gopher_repetition``, ``c4``, ``fineweb``
   (``.apply(Doc)``) vs datatrove's Gopher/C4/FineWeb filters (``.filter(Document)``), one
   by one and chained (repetition -> quality -> c4 -> fineweb, FineWeb's order), with how
   many documents each keeps and how many verdicts differ.
3. MinHash near-dedup (14 buckets x 8 hashes, word 5-grams): steep's ``minhash_dedup``
   ``select_drops`` on parquet shards vs datatrove's four-stage MinHash pipeline on a
   jsonl file (``LocalPipelineExecutor``, workers=1), end to end, with the removed sets.

Sections 2 and 3 run in this process pinned to one CPU. Needs datatrove, datasets and
spacy (datatrove's English word tokenizer is ``spacy.blank("en")``, no model download) in
the same environment as steep; see benchmarks/README.md.

    /tmp/benchvenv/bin/python benchmarks/datahub_speed.py --mb 20 --out /tmp/datahub.md
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import glob
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

SEPARATOR = "<|endoftext|>"
_ALPHA = re.compile(r"[A-Za-z]+")


# ---------------------------------------------------------------- corpus


def base_docs(corpora_dir: Path, cache_dir: Path) -> list[tuple[str, str]]:
    from steep.demos.corpora import build_demo_corpora

    info = build_demo_corpora(corpora_dir, cache_dir)
    docs = []
    for name in ("python_docs", "wikipedia"):
        with open(info[name].path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                docs.append((f"{name}:{i}", json.loads(line)["text"]))
    return docs


def _replace_words(text: str, rng: random.Random, vocab: list[str], positions) -> str:
    """Replace the alphabetic words at the given match indices with words from ``vocab``."""
    out, last = [], 0
    for i, m in enumerate(_ALPHA.finditer(text)):
        if i in positions:
            out.append(text[last : m.start()])
            out.append(rng.choice(vocab))
            last = m.end()
    out.append(text[last:])
    return "".join(out)


def build_corpus(
    base: list[tuple[str, str]], mb: float, dup_frac: float, copy_noise: float, seed: int
) -> tuple[list[tuple[str, str]], set[str]]:
    """(id, text) documents of about ``mb`` MB, and the ids of the planted near-duplicates.

    Copy 0 is the demo corpora as they are. Copy N > 0 has ``copy_noise`` of its alphabetic
    words replaced by words drawn from the corpus (unigram frequency), so copies keep the
    look of the text (line structure, stop words, lengths) but are not near-duplicates of
    each other (5-gram Jaccard ~0.2 to copy 0 at 25% noise, below the LSH threshold).
    Interleaved with them, ``dup_frac`` of all documents are planted near-duplicates: an
    earlier document with 5 words changed.
    """
    rng = random.Random(seed)
    vocab = [w for _, t in base for w in _ALPHA.findall(t)]
    target = int(mb * 1e6)
    docs: list[tuple[str, str]] = []
    originals: list[int] = []
    planted: set[str] = set()
    size = copy = 0
    while size < target:
        for base_id, text in base:
            if size >= target:
                break
            if copy:
                n_words = sum(1 for _ in _ALPHA.finditer(text))
                pos = {i for i in range(n_words) if rng.random() < copy_noise}
                text = _replace_words(text, rng, vocab, pos)
            docs.append((f"c{copy}:{base_id}", text))
            originals.append(len(docs) - 1)
            size += len(text.encode())
            if len(docs) > 10 and rng.random() < dup_frac / (1 - dup_frac):
                src_id, src = docs[rng.choice(originals)]
                n_words = sum(1 for _ in _ALPHA.finditer(src))
                pos = set(rng.sample(range(n_words), min(5, n_words)))
                dup_id = f"dup{len(planted)}:of:{src_id}"
                docs.append((dup_id, _replace_words(src, rng, vocab, pos)))
                planted.add(dup_id)
                size += len(docs[-1][1].encode())
        copy += 1
    return docs, planted


# ---------------------------------------------------------------- machine info


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in (
        "steep",
        "datatrove",
        "datasets",
        "tokenizers",
        "transformers",
        "spacy",
        "numpy",
        "pyarrow",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def machine_info() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.0f} GiB"
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# ---------------------------------------------------------------- timing helpers


class Timer:
    def __enter__(self) -> Timer:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def _profiled(fn, profile_path: Path | None):
    """Run ``fn()``, under cProfile (written to ``profile_path``) when a path is given."""
    if profile_path is None:
        return fn()
    prof = cProfile.Profile()
    try:
        return prof.runcall(fn)
    finally:
        prof.dump_stats(str(profile_path))


# ---------------------------------------------------------------- 1. tokenization


def tokenize_worker(args: argparse.Namespace) -> None:
    """Runs in a subprocess (its environment sets the threading mode); prints JSON."""
    import datasets
    from transformers import AutoTokenizer

    from steep.data.tokenize import tokenize_source

    datasets.disable_progress_bars()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    tok(["warm up the tokenizer"] * 4)
    jsonl = Path(args.jsonl)
    res: dict[str, list[dict]] = {"steep": [], "hf_load": [], "hf_map": []}
    tokens = {}
    for rep in range(args.repeat):
        tmp = Path(tempfile.mkdtemp(prefix="tokbench.", dir=args.tmp))
        try:
            prof = (
                Path(args.profile_dir) / f"steep_tokenize_{args.mode}.prof"
                if args.profile_dir and rep == 0
                else None
            )
            with Timer() as t:
                src = _profiled(
                    lambda cache=tmp / "steep-cache": tokenize_source(
                        "bench",
                        [str(jsonl)],
                        tok,
                        cache,
                        heldout_fraction=0.0,
                        separator=SEPARATOR,
                    ),
                    prof,
                )
            res["steep"].append({"wall": t.wall, "cpu": t.cpu})
            split = src.info["splits"]["train"]
            tokens["steep"] = split["tokens"] - split["documents"]  # minus separators

            with Timer() as t:
                ds = datasets.load_dataset(
                    "json", data_files=str(jsonl), split="train", cache_dir=str(tmp / "hf-cache")
                )
            res["hf_load"].append({"wall": t.wall, "cpu": t.cpu})
            with Timer() as t:
                mapped = ds.map(lambda b: tok(b["text"]), batched=True)
            res["hf_map"].append({"wall": t.wall, "cpu": t.cpu})
            tokens["hf"] = sum(map(len, mapped["input_ids"]))
            del ds, mapped
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({"times": res, "tokens": tokens}))


def run_tokenize(args, jsonl: Path, n_docs: int, mb: float, cpu: int) -> list[dict]:
    modes = [
        ("default", {"TOKENIZERS_PARALLELISM": "true"}, None),
        (
            "1 thread",
            {"TOKENIZERS_PARALLELISM": "false", "RAYON_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
            {cpu},
        ),
    ]
    rows = []
    all_cpus = os.sched_getaffinity(0)
    for mode, extra, affinity in modes:
        env = {**os.environ, **extra, "TQDM_DISABLE": "1"}
        if mode == "default":
            for k in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS"):
                env.pop(k, None)
        cmd = [
            sys.executable,
            __file__,
            "--_worker",
            "tokenize",
            "--jsonl",
            str(jsonl),
            "--tokenizer",
            args.tokenizer,
            "--tmp",
            str(args.work),
            "--repeat",
            str(args.repeat),
            "--mode",
            mode.replace(" ", ""),
        ]
        if args.profile_dir:
            cmd += ["--profile-dir", args.profile_dir]
        aff = affinity or all_cpus
        proc = subprocess.run(
            cmd,
            env=env,
            capture_output=True,
            text=True,
            preexec_fn=lambda aff=aff: os.sched_setaffinity(0, aff),
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            raise SystemExit(f"tokenize worker ({mode}) failed")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        best = {k: min(v, key=lambda r: r["wall"]) for k, v in out["times"].items()}
        hf_total = {
            "wall": best["hf_load"]["wall"] + best["hf_map"]["wall"],
            "cpu": best["hf_load"]["cpu"] + best["hf_map"]["cpu"],
        }
        rows.append(
            {
                "mode": mode,
                "env": " ".join(f"{k}={v}" for k, v in extra.items())
                + ("" if affinity is None else f", pinned to CPU {cpu}"),
                "steep": best["steep"],
                "hf_load": best["hf_load"],
                "hf_map": best["hf_map"],
                "hf_total": hf_total,
                "tokens": out["tokens"],
                "docs": n_docs,
                "mb": mb,
            }
        )
    return rows


# ---------------------------------------------------------------- 2. filters


def _dt_keep(result) -> tuple[bool, str]:
    if isinstance(result, tuple):
        return bool(result[0]), str(result[1]) if len(result) > 1 else ""
    return bool(result), ""


def run_filters(args, docs: list[tuple[str, str]]) -> dict:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    from steep.datahub.steps.base import Doc, Drop, Edit
    from steep.datahub.steps.filters import C4, FineWeb, GopherQuality, GopherRepetition

    pairs = [
        ("gopher_repetition", GopherRepetition(), GopherRepetitionFilter()),
        ("gopher_quality", GopherQuality(), GopherQualityFilter()),
        ("c4", C4(), C4QualityFilter()),
        ("fineweb", FineWeb(), FineWebQualityFilter()),
    ]
    # warm up (spacy.blank("en") loads on the first datatrove call)
    for _, st, dt in pairs:
        for i, t in docs[:3]:
            st.apply(Doc(i, t, {"lang": "en"}))
            dt.filter(Document(text=t, id=i))

    def steep_one(step):
        verdicts, reasons = [], []
        for i, t in docs:
            r = step.apply(Doc(i, t, {"lang": "en"}))
            keep = not isinstance(r, Drop)
            verdicts.append(keep)
            reasons.append("" if keep else r.reason)
        return verdicts, reasons

    def dt_one(flt):
        verdicts, reasons = [], []
        for i, t in docs:
            keep, why = _dt_keep(flt.filter(Document(text=t, id=i)))
            verdicts.append(keep)
            reasons.append("" if keep else why)
        return verdicts, reasons

    def steep_chain():
        kept = 0
        for i, t in docs:
            doc = Doc(i, t, {"lang": "en"})
            for _, st, _ in pairs:
                r = st.apply(doc)
                if isinstance(r, Drop):
                    break
                doc = r.doc if isinstance(r, Edit) else r
            else:
                kept += 1
        return kept

    def dt_chain():
        kept = 0
        for i, t in docs:
            doc = Document(text=t, id=i)
            for _, _, dt in pairs:
                if not _dt_keep(dt.filter(doc))[0]:  # C4 edits doc.text in place
                    break
            else:
                kept += 1
        return kept

    prof_dir = Path(args.profile_dir) if args.profile_dir else None
    rows = []
    for name, st, dt in pairs:
        with Timer() as ts:
            sv, sr = _profiled(
                lambda st=st: steep_one(st), prof_dir / f"steep_{name}.prof" if prof_dir else None
            )
        with Timer() as td:
            dv, dr = _profiled(
                lambda dt=dt: dt_one(dt), prof_dir / f"datatrove_{name}.prof" if prof_dir else None
            )
        disagree: dict[str, int] = {}
        for a, b, ra, rb in zip(sv, dv, sr, dr, strict=True):
            if a != b:
                key = f"steep {'keeps' if a else 'drops (' + ra + ')'} / datatrove {'keeps' if b else 'drops (' + rb + ')'}"
                disagree[key] = disagree.get(key, 0) + 1
        rows.append(
            {
                "filter": name,
                "steep": {"wall": ts.wall, "cpu": ts.cpu, "kept": sum(sv)},
                "datatrove": {"wall": td.wall, "cpu": td.cpu, "kept": sum(dv)},
                "differ": sum(a != b for a, b in zip(sv, dv, strict=True)),
                "disagreements": sorted(disagree.items(), key=lambda kv: -kv[1])[:4],
            }
        )
    with Timer() as ts:
        sk = steep_chain()
    with Timer() as td:
        dk = dt_chain()
    rows.append(
        {
            "filter": "all four, chained",
            "steep": {"wall": ts.wall, "cpu": ts.cpu, "kept": sk},
            "datatrove": {"wall": td.wall, "cpu": td.cpu, "kept": dk},
            "differ": None,
            "disagreements": [],
        }
    )
    return {"rows": rows}


# ---------------------------------------------------------------- 3. MinHash dedup


def run_dedup(args, docs, jsonl: Path, planted: set[str]) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.readers import JsonlReader

    from steep.datahub.steps.base import Doc, write_docs
    from steep.datahub.steps.dedup import MinhashDedup

    root = Path(tempfile.mkdtemp(prefix="dedupbench.", dir=args.work))
    try:
        # steep input: parquet document shards (written outside the timing)
        shards = []
        per = -(-len(docs) // args.shards)
        for s in range(args.shards):
            path = root / f"shard-{s:05d}.parquet"
            write_docs(path, (Doc(i, t, {}) for i, t in docs[s * per : (s + 1) * per]))
            shards.append(path)
        step = MinhashDedup(n_grams=5, num_buckets=14, hashes_per_bucket=8)
        work = root / "steep-work"
        work.mkdir()
        prof = Path(args.profile_dir) / "steep_minhash.prof" if args.profile_dir else None
        with Timer() as ts:
            drops = _profiled(lambda: step.select_drops(shards, work), prof)
        steep_removed = set(drops)

        # datatrove: the four stages, one process (workers=1), timed together and apart
        cfg = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
        dt = root / "datatrove"
        data_dir = jsonl.parent
        stages = [
            (
                "signatures",
                [
                    JsonlReader(str(data_dir), glob_pattern=jsonl.name),
                    MinhashDedupSignature(output_folder=str(dt / "sigs"), config=cfg),
                ],
                1,
            ),
            (
                "buckets",
                [
                    MinhashDedupBuckets(
                        input_folder=str(dt / "sigs"), output_folder=str(dt / "buckets"), config=cfg
                    )
                ],
                cfg.num_buckets,  # must be a multiple of num_buckets; run one after another
            ),
            (
                "cluster",
                [
                    MinhashDedupCluster(
                        input_folder=str(dt / "buckets"),
                        output_folder=str(dt / "remove"),
                        config=cfg,
                    )
                ],
                1,
            ),
            (
                "filter",
                [
                    JsonlReader(str(data_dir), glob_pattern=jsonl.name),
                    MinhashDedupFilter(input_folder=str(dt / "remove")),
                ],
                1,
            ),
        ]
        stage_times = {}
        with Timer() as td:
            for name, pipeline, tasks in stages:
                with Timer() as t, contextlib.redirect_stdout(sys.stderr):  # its stats table
                    LocalPipelineExecutor(
                        pipeline=pipeline,
                        tasks=tasks,
                        workers=1,
                        logging_dir=str(dt / f"logs-{name}"),
                    ).run()
                stage_times[name] = {"wall": t.wall, "cpu": t.cpu}
        import numpy as np

        rm = dt / "remove" / "000000.remove"
        idx = np.fromfile(rm, dtype="<u4") if rm.exists() else np.empty(0, dtype="<u4")
        dt_removed = {docs[int(i)][0] for i in idx}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "steep": {"wall": ts.wall, "cpu": ts.cpu, "removed": len(steep_removed)},
        "datatrove": {"wall": td.wall, "cpu": td.cpu, "removed": len(dt_removed)},
        "datatrove_stages": stage_times,
        "both": len(steep_removed & dt_removed),
        "steep_only": len(steep_removed - dt_removed),
        "datatrove_only": len(dt_removed - steep_removed),
        "planted": len(planted),
        "planted_steep": len(planted & steep_removed),
        "planted_datatrove": len(planted & dt_removed),
    }


# ---------------------------------------------------------------- report


def _rate(n_docs: int, mb: float, t: float) -> str:
    return f"{t:.2f} | {n_docs / t:,.0f} | {mb / t:.2f}"


def report(info, vers, corpus, tok_rows, filt, dedup, command) -> str:
    L = []
    L.append(f"Command: `{command}`\n")
    L.append(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory']} RAM; "
        f"load average at start {info['load average at start']}."
    )
    L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + ".\n")
    L.append(
        f"Corpus: {corpus['docs']:,} documents, {corpus['mb']:.1f} MB of UTF-8 text "
        f"(demo corpora x{corpus['copies']} with 25% of words resampled in each copy after the "
        f"first, plus {corpus['planted']:,} planted near-duplicates = earlier documents with 5 "
        "words changed). Times are wall seconds; rates are documents/s and MB/s of text; "
        "ratio = other's time / steep's time (> 1: steep is faster).\n"
    )
    if tok_rows:
        L.append("### Tokenization (SmolLM2 tokenizer)\n")
        L.append(
            "| threads | tool | s | docs/s | MB/s | CPU s | ratio (wall) | tokens |\n"
            "|---|---|---:|---:|---:|---:|---:|---:|"
        )
        for r in tok_rows:
            n, mb = r["docs"], r["mb"]
            s = r["steep"]["wall"]
            L.append(
                f"| {r['mode']} | steep `tokenize_source` (read + tokenize + write shards) | "
                f"{_rate(n, mb, s)} | {r['steep']['cpu']:.2f} | 1.00 | {r['tokens']['steep']:,} |"
            )
            L.append(
                f"| {r['mode']} | datasets `load_dataset` + `.map` | {_rate(n, mb, r['hf_total']['wall'])} | "
                f"{r['hf_total']['cpu']:.2f} | {r['hf_total']['wall'] / s:.2f} | {r['tokens']['hf']:,} |"
            )
            L.append(
                f"| {r['mode']} | &nbsp;&nbsp;of which `.map` only | {_rate(n, mb, r['hf_map']['wall'])} | "
                f"{r['hf_map']['cpu']:.2f} | {r['hf_map']['wall'] / s:.2f} | |"
            )
            L.append(
                f"| {r['mode']} | &nbsp;&nbsp;of which `load_dataset` | {_rate(n, mb, r['hf_load']['wall'])} | "
                f"{r['hf_load']['cpu']:.2f} | | |"
            )
        L.append("")
        for r in tok_rows:
            L.append(f"- {r['mode']}: {r['env']}")
        L.append("")
    if filt:
        n, mb = corpus["docs"], corpus["mb"]
        L.append("### Quality filters (one core)\n")
        L.append(
            "| filter | steep s | steep docs/s | steep MB/s | datatrove s | datatrove docs/s | "
            "datatrove MB/s | ratio | kept steep | kept datatrove | verdicts differ |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        )
        for r in filt["rows"]:
            s, d = r["steep"], r["datatrove"]
            differ = "" if r["differ"] is None else f"{r['differ']:,}"
            L.append(
                f"| {r['filter']} | {_rate(n, mb, s['wall'])} | {_rate(n, mb, d['wall'])} | "
                f"{d['wall'] / s['wall']:.1f} | {s['kept']:,} | {d['kept']:,} | {differ} |"
            )
        L.append("")
        for r in filt["rows"]:
            for k, c in r["disagreements"]:
                L.append(f"- {r['filter']}: {c:,} x {k}")
        L.append("")
    if dedup:
        n, mb = corpus["docs"], corpus["mb"]
        s, d = dedup["steep"], dedup["datatrove"]
        L.append("### MinHash near-dedup, 14 x 8, word 5-grams (one core)\n")
        L.append(
            "| tool | s | docs/s | MB/s | CPU s | ratio | removed | planted dups removed |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|"
        )
        L.append(
            f"| steep `minhash_dedup.select_drops` ({corpus['shards']} parquet shards) | "
            f"{_rate(n, mb, s['wall'])} | {s['cpu']:.2f} | 1.00 | {s['removed']:,} | "
            f"{dedup['planted_steep']:,} / {dedup['planted']:,} |"
        )
        L.append(
            f"| datatrove 4-stage pipeline (jsonl) | {_rate(n, mb, d['wall'])} | {d['cpu']:.2f} | "
            f"{d['wall'] / s['wall']:.1f} | {d['removed']:,} | "
            f"{dedup['planted_datatrove']:,} / {dedup['planted']:,} |"
        )
        st = dedup["datatrove_stages"]
        L.append("")
        L.append(
            "datatrove stages: "
            + ", ".join(f"{k} {v['wall']:.2f} s" for k, v in st.items())
            + f". Removed by both: {dedup['both']:,}; steep only: {dedup['steep_only']:,}; "
            f"datatrove only: {dedup['datatrove_only']:,}.\n"
        )
    return "\n".join(L)


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=20.0, help="corpus size in MB of text")
    ap.add_argument("--sections", default="tokenize,filters,dedup")
    ap.add_argument("--corpora", default="/tmp/corp", help="build_demo_corpora out_dir")
    ap.add_argument(
        "--cache", default="/tmp/gw", help="build_demo_corpora cache_dir (gensim wheel)"
    )
    ap.add_argument(
        "--tokenizer",
        default=None,
        help="tokenizer folder (default: the converted SmolLM2 base under /tmp/demohome)",
    )
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--repeat", type=int, default=1, help="tokenization runs per mode (best kept)")
    ap.add_argument("--shards", type=int, default=4, help="parquet shards for steep's dedup")
    ap.add_argument("--dup-frac", type=float, default=0.10)
    ap.add_argument("--copy-noise", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--cpu", type=int, default=None, help="CPU to pin one-core runs to (default: last)"
    )
    ap.add_argument(
        "--profile-dir", default=None, help="write cProfile stats of each timed call here"
    )
    ap.add_argument("--out", default=None, help="also write the markdown here")
    ap.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--jsonl", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args._worker == "tokenize":
        tokenize_worker(args)
        return

    command = " ".join([sys.executable, "benchmarks/datahub_speed.py", *sys.argv[1:]])
    sections = set(args.sections.split(","))
    if args.tokenizer is None:
        found = sorted(glob.glob("/tmp/demohome/models/base/*/tokenizer.json"))
        if not found:
            raise SystemExit("no tokenizer: pass --tokenizer DIR (a folder with tokenizer.json)")
        args.tokenizer = str(Path(found[0]).parent)
    if args.profile_dir:
        Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    own_work = args.work is None
    args.work = Path(args.work or tempfile.mkdtemp(prefix="datahub_bench."))
    args.work.mkdir(parents=True, exist_ok=True)
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))

    info, vers = machine_info(), _versions()
    base = base_docs(Path(args.corpora), Path(args.cache))
    docs, planted = build_corpus(base, args.mb, args.dup_frac, args.copy_noise, args.seed)
    mb = sum(len(t.encode()) for _, t in docs) / 1e6
    corpus = {
        "docs": len(docs),
        "mb": mb,
        "planted": len(planted),
        "copies": 1 + max(int(i.split(":")[0][1:]) for i, _ in docs if i.startswith("c")),
        "shards": args.shards,
    }
    data_dir = args.work / "data"
    data_dir.mkdir(exist_ok=True)
    jsonl = data_dir / "corpus.jsonl"
    with open(jsonl, "w", encoding="utf-8") as f:
        for i, t in docs:
            f.write(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n")
    print(
        f"corpus: {len(docs)} docs, {mb:.1f} MB, {len(planted)} planted near-dups", file=sys.stderr
    )

    tok_rows = filt = dedup = None
    try:
        if "tokenize" in sections:
            tok_rows = run_tokenize(args, jsonl, len(docs), mb, cpu)
            print("tokenize done", file=sys.stderr)
        os.sched_setaffinity(0, {cpu})  # filters and dedup: one core
        if "filters" in sections:
            filt = run_filters(args, docs)
            print("filters done", file=sys.stderr)
        if "dedup" in sections:
            dedup = run_dedup(args, docs, jsonl, planted)
            print("dedup done", file=sys.stderr)
    finally:
        if own_work:
            shutil.rmtree(args.work, ignore_errors=True)
    md = report(info, vers, corpus, tok_rows, filt, dedup, command)
    print(md)
    if args.out:
        Path(args.out).write_text(md + "\n")


if __name__ == "__main__":
    main()
