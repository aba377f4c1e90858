"""How `steep data add`, `steep data prepare` and `steep data tokenize` scale: one big
jsonl file (or many small ones), 1 vs 2 workers, the local pool vs Ray, and the cost per
GB as the input grows.

The corpus is the demo corpora (Python docs + Wikipedia, built by `steep demo` under
$STEEP_HOME/demo/corpora) replicated into ONE jsonl file of ``--mb`` MB, with a quarter of
each copy's words resampled so dedup has real work. Each command runs through the CLI as a
user runs it, in a fresh STEEP_HOME. Reported per run: wall seconds, CPU seconds of the
whole machine while it ran (Ray's workers are not children of the command, so the
command's own rusage would miss them), MB/s, and for the local pool the peak RSS of the
command and its worker processes (GNU time's maximum resident set of the largest one).

    .venv/bin/python benchmarks/datahub_scale.py --mb 100 400 --unit-mb 16 --out /tmp/scale.md
    .venv/bin/python benchmarks/datahub_scale.py --mb 100 1024 --steps add tokenize \
        --executors local --tokenizer steep-home/models/base/SmolLM2-135M-Instruct.Q4_1-98362432

``tokenize`` tokenizes the dataset ``add`` made (``steep data tokenize big@1 --base ...``)
with the given tokenizer folder (default: the SmolLM2 base ``steep demo`` converted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "web"  # the packaged recipe (src/steep/datahub/recipes/web.yaml)


def _machine_cpu_seconds() -> float:
    """user + system CPU seconds of every core since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = sum(int(x) for i, x in enumerate(fields) if i not in (3, 4))  # not idle, iowait
    return ticks / os.sysconf("SC_CLK_TCK")


def build_corpus(home: Path, mb: int, out: Path, files: int = 1) -> int:
    """``files`` == 1: ``out`` itself; else ``out`` is a folder of that many files."""
    if files > 1:
        out.mkdir()
        one = out.with_suffix(".tmp.jsonl")
        size = _build_one(home, mb, one)
        lines = one.read_bytes().splitlines(keepends=True)
        for i in range(files):
            (out / f"part-{i:05d}.jsonl").write_bytes(b"".join(lines[i::files]))
        one.unlink()
        return size
    return _build_one(home, mb, out)


def _build_one(home: Path, mb: int, out: Path) -> int:
    corpora = home / "demo" / "corpora"
    docs = []
    for name in ("python_docs.jsonl", "wikipedia.jsonl"):
        with open(corpora / name, encoding="utf-8") as f:
            docs += [json.loads(line)["text"] for line in f]
    vocab = sorted({w for d in docs[:200] for w in d.split()})
    rng = random.Random(0)
    size = 0
    with open(out, "w", encoding="utf-8") as f:
        copy = 0
        while size < mb << 20:
            for text in docs:
                if copy:
                    words = text.split(" ")
                    for _ in range(len(words) // 4):
                        words[rng.randrange(len(words))] = rng.choice(vocab)
                    text = " ".join(words)
                line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
                f.write(line)
                size += len(line.encode("utf-8"))
                if size >= mb << 20:
                    break
            copy += 1
    return size


def _tree_cpu(root: int, seen: dict[int, float], tick: float) -> None:
    """Record the CPU seconds (user + system) of every live descendant of ``root``."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    for pid, cpu in times.items():
        p, hops = pid, 0
        while p not in (0, 1, root) and hops < 64:
            p, hops = parents.get(p, 0), hops + 1
        if p == root and pid != root:
            seen[pid] = max(seen.get(pid, 0.0), cpu)


def _sample_tree(proc: subprocess.Popen, seen: dict[int, float]) -> None:
    """Ray's workers are not reaped into the command's rusage: sample them while it runs
    (misses each process's last sampling interval)."""
    tick = os.sysconf("SC_CLK_TCK")
    while proc.poll() is None:
        _tree_cpu(proc.pid, seen, tick)
        time.sleep(0.25)


def run(cmd: list[str], home: Path) -> dict:
    env = {**os.environ, "STEEP_HOME": str(home), "TOKENIZERS_PARALLELISM": "false"}
    cpu0, t0 = _machine_cpu_seconds(), time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-v", *cmd], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    seen: dict[int, float] = {}
    sampler = threading.Thread(target=_sample_tree, args=(proc, seen), daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    sampler.join()
    proc = subprocess.CompletedProcess(cmd, proc.returncode, "", stderr)
    wall, cpu = time.perf_counter() - t0, _machine_cpu_seconds() - cpu0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    own = sum(
        float(m.group(1))
        for m in re.finditer(r"(?:User|System) time \(seconds\): ([\d.]+)", proc.stderr)
    )  # the command and its (local pool) children: immune to other work on the machine
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_own_s": own,
        "cpu_tree_s": sum(seen.values()),  # sampled: the command and all its descendants
        "peak_rss_mb": int(rss.group(1)) / 1024 if rss else None,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, nargs="+", default=[100])
    p.add_argument("--corpora-home", type=Path, default=ROOT / "steep-home")
    p.add_argument("--executors", nargs="+", default=["local", "ray"])
    p.add_argument("--unit-mb", type=float, default=64, help="as steep data add --unit-mb")
    p.add_argument("--steps", nargs="+", default=["add", "prepare"], help="add prepare tokenize")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--files", type=int, default=1, help="split the input into this many files")
    p.add_argument(
        "--langid", action="store_true", help="add with language ID (the default of data add)"
    )
    p.add_argument("--keep", type=Path, help="keep the corpus at this path (reused if there)")
    p.add_argument(
        "--tokenizer",
        default=str(ROOT / "steep-home/models/base/SmolLM2-135M-Instruct.Q4_1-98362432"),
        help="base (HF folder) whose tokenizer `tokenize` uses",
    )
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    steep = [sys.executable, "-m", "steep"]
    rows = []
    for mb in args.mb:
        work = Path(tempfile.mkdtemp(prefix=f"scale-{mb}-"))
        big = work / ("big" if args.files > 1 else "big.jsonl")
        kept = args.keep and args.keep.with_name(f"{args.keep.stem}-{mb}{args.keep.suffix}")
        if kept and kept.exists() and args.files == 1:
            size = kept.stat().st_size
            big = kept
        else:
            size = build_corpus(args.corpora_home, mb, big, args.files)
            if kept and args.files == 1:
                shutil.move(big, kept)
                big = kept
        for executor in args.executors:
            for workers in args.workers:
                home = work / f"home-{executor}-{workers}"
                engine = ["--executor", executor, "--workers", str(workers)]
                lid = [] if args.langid else ["--no-langid"]
                unit = ["--unit-mb", str(args.unit_mb)]
                commands = {
                    "add": ["data", "add", "big", str(big), *lid, *unit, *engine],
                    "prepare": ["data", "prepare", "big", "--recipe", str(RECIPE), *engine],
                    "tokenize": ["data", "tokenize", "big@1", "--base", args.tokenizer,
                                 "--heldout-fraction", "0.01", *unit, *engine],
                }  # fmt: skip
                if "add" not in args.steps:  # prepare and tokenize read big@1
                    run([*steep, *commands["add"]], home)
                for step in args.steps:
                    r = run([*steep, *commands[step]], home)
                    row = {
                        "mb": size / 2**20,
                        "step": step,
                        "executor": executor,
                        "workers": workers,
                    }
                    rows.append({**row, "files": args.files, **r})
                    print(json.dumps(rows[-1]), flush=True)
                shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"command: {' '.join(sys.argv)}",
        "",
        "| input MB | files | step | executor | workers | wall s | machine CPU s | own CPU s | CPU s/GB | MB/s | speedup 1->2 | peak RSS MB (local) |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by = {(r["mb"], r["step"], r["executor"], r["workers"]): r for r in rows}
    for r in rows:
        one = by.get((r["mb"], r["step"], r["executor"], 1))
        speed = f"{one['wall_s'] / r['wall_s']:.2f}x" if one and r["workers"] == 2 else ""
        rss = f"{r['peak_rss_mb']:.0f}" if r["executor"] == "local" and r["peak_rss_mb"] else "–"
        # CPU per GB: the command's own for the local pool, the machine's for Ray (its
        # workers are not the command's children)
        cpu = r["cpu_own_s"] if r["executor"] == "local" else r["cpu_s"]
        lines.append(
            f"| {r['mb']:.0f} | {r['files']} | {r['step']} | {r['executor']} | {r['workers']} | {r['wall_s']:.1f} "
            f"| {r['cpu_s']:.1f} | {r['cpu_own_s']:.1f} | {cpu / (r['mb'] / 1024):.0f} | {r['mb'] / r['wall_s']:.2f} "
            f"| {speed} | {rss} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
