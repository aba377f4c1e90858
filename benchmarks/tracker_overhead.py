"""What W&B and MLflow cost a training step: the same short CPU run with and without them.

Runs of steep's ``train()`` on one tiny byte-level Llama (no tracker, ``track.wandb``
offline, ``track.mlflow`` on a file: store), interleaved over ``--rounds``, every step
logged as in any run. The loop times each step's compute (its ``tokens_per_s``); the rest
of the gap between two train records in metrics.jsonl is what the training thread did
between steps (metrics.jsonl, TensorBoard, the trackers, the progress bar), which is where
a tracker's cost lands. Medians over all rounds; comparing that part, not whole steps,
keeps other work on the machine (which slows the compute) out of the difference. The
run's wall time adds each tracker's start and finish (W&B's service process, uploads).
Then each backend's ``log`` alone, called in a loop with a real train record, gives the
cost per call, set against a SmolLM2-135M step on the same CPU.

    .venv/bin/python -m benchmarks.tracker_overhead [--steps 20] [--rounds 2] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.recipe.common import TINY_LLAMA, machine, markdown_table

WORDS = "the river mountain city king people history north village winter song def return class"
SMOLLM2_STEP_S = 2048 / 290  # 2,048 tokens at the ~290 tokens/s BENCHMARKS.md measures here


def _corpus(path: Path) -> Path:
    rng, words = random.Random(0), WORDS.split()
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(400):
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(200))}) + "\n")
    return path


def _base(path: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from steep.model.io import byte_tokenizer

    tok = byte_tokenizer()
    shape = {k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **shape)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _config(root: Path, name: str, base: Path, data: Path, steps: int, track: dict) -> dict:
    return {
        "run": {"name": name, "out_dir": str(root / "runs" / name), "seed": 0},
        "model": {"base": str(base), "base_max_lr": 3e-3},
        "data": {
            "seq_len": 256,
            "sources": [{"name": "d", "paths": [str(data)], "weight": 1, "heldout_fraction": 0.05}],
        },
        "train": {
            "steps": steps,
            "global_batch_tokens": 2048,
            "micro_batch_size": 8,
            "lr_fraction": 0.3,
            "warmup_steps": 2,
            "precision": "fp32",
            "threads": 1,  # one core for training: the other takes W&B's service process and
        },  # what else runs, so a busy machine spikes fewer steps
        "eval": {"every_steps": steps, "max_windows": 2},
        "checkpoint": {"every_steps": steps, "keep_last": 1},
        "track": track,
    }


def _between_steps(run_dir: Path) -> tuple[list[float], list[float]]:
    """(compute, between) per step in seconds. The loop times a step's compute itself
    (``tokens_per_s``); the rest of the gap to the next train record is what runs between
    steps on the training thread: metrics.jsonl, TensorBoard, the trackers, the bar."""
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"][1:]  # the first step warms up
    compute = [r["tokens"] / r["step"] / r["tokens_per_s"] for r in train]
    between = [b["time"] - a["time"] - c for a, b, c in zip(train, train[1:], compute[1:], strict=False)]  # fmt: skip
    return compute, between


def run(root: Path, name: str, base: Path, data: Path, steps: int, track: dict) -> tuple[float, Path]:  # fmt: skip
    """(wall seconds of the whole run: start, steps, finish; the run folder)."""
    from steep.config import parse_config
    from steep.train.loop import train

    started = time.perf_counter()
    train(parse_config(_config(root, name, base, data, steps, track), where=name))
    return time.perf_counter() - started, root / "runs" / name


def per_call(root: Path, track: dict, calls: int) -> dict[str, float]:
    """Microseconds per ``log`` of one train record, by backend (the loop's own call)."""
    from steep.config.schema import TrackSection
    from steep.train.trackers import flat_metrics, open_trackers

    record: dict[str, Any] = {
        "kind": "train", "step": 1, "tokens": 2048, "loss": 2.5, "lr": 1e-3, "grad_norm": 0.9,
        "tokens_per_s": 900.0, "tokens_per_s_per_device": 900.0, "mfu": None,
        "peak_mem_gib": 1.2, "tokens_by_source": {"d": 2048},
    }  # fmt: skip
    out = {}
    for key, cfg in track.items():
        run_dir = root / f"calls-{key}"
        run_dir.mkdir(parents=True)
        (backend,) = open_trackers(TrackSection(**{key: cfg}), run_dir, {}, resume=False)
        started = time.perf_counter()
        for step in range(1, calls + 1):
            backend.log(flat_metrics({**record, "step": step}), step, "train", False)
        out[key] = 1e6 * (time.perf_counter() - started) / calls
        backend.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2, help="runs of each, interleaved")
    ap.add_argument("--calls", type=int, default=500, help="log calls timed per backend")
    ap.add_argument("--root", type=Path, default=None)
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="tracker-bench-"))
    os.environ["STEEP_HOME"] = str(root / "home")
    os.environ.setdefault("WANDB_SILENT", "true")
    base, data = _base(root / "base"), _corpus(root / "data.jsonl")
    trackers = {
        "wandb": {"mode": "offline", "project": "bench"},
        "mlflow": {"tracking_uri": (root / "mlruns").as_uri(), "experiment": "bench"},
    }
    run(root, "warmup", base, data, 3, {})  # tokenizes the corpus once for every run
    load = os.getloadavg()[0]
    names = ("none", *trackers)
    walls: dict[str, list[float]] = {k: [] for k in names}
    compute: dict[str, list[float]] = {k: [] for k in names}
    between: dict[str, list[float]] = {k: [] for k in names}
    for i in range(args.rounds):  # interleaved, so load from other work hits each alike
        for key in names:
            track = {key: trackers[key]} if key in trackers else {}
            wall, run_dir = run(root, f"{key}-{i}", base, data, args.steps, track)
            walls[key].append(wall)
            c, b = _between_steps(run_dir)
            compute[key] += c
            between[key] += b
    calls = per_call(root, trackers, args.calls)
    ms = {k: 1e3 * statistics.median(between[k]) for k in names}
    step = 1e3 * statistics.median(compute["none"] + sum((compute[k] for k in trackers), []))
    rows = []
    for key in names:
        added = ms[key] - ms["none"]
        us = calls.get(key)
        rows.append([
            key, f"{1e3 * statistics.median(compute[key]):.0f}", f"{ms[key]:.2f}",
            "-" if key == "none" else f"{added:+.2f} ({100 * added / step:.2f}%)",
            f"{statistics.median(walls[key]):.1f}", "-" if us is None else f"{us:.0f}",
            "-" if us is None else f"{100 * us / 1e6 / SMOLLM2_STEP_S:.3f}%",
        ])  # fmt: skip
    head = ["tracker", "step compute ms", "between steps ms", "added per step (of the step)",
            "run wall s", "log() µs/call", "log() of a 135M step"]  # fmt: skip
    print(f"machine: {machine()}; load average at start {load:.2f}, at the end "
          f"{os.getloadavg()[0]:.2f}; {args.rounds} x {args.steps} steps x 2,048 tokens each")  # fmt: skip
    print(markdown_table(head, rows))


if __name__ == "__main__":
    main()
