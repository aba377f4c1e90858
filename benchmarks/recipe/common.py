"""Shared setup for the recipe experiments: two corpora, one tiny pretrained Llama, CPT runs.

The papers' claims are about a model that has *converged* on old data and is then moved to
new data. So every experiment starts from the same base: a tiny byte-level Llama that
steep's own ``train()`` pretrains on Wikipedia (the "old" data) with a full warmup + cosine
schedule from ``PEAK_LR`` down to ``PRETRAIN_MIN_RATIO`` x peak, as a real base would have
been. Continued pretraining (CPT) then goes through the same ``train()`` with
``model.base_max_lr = PEAK_LR``, so ``train.lr_fraction`` means exactly what it means for
a public base: a fraction of the pretraining peak.

Old-data loss is measured on held-out Wikipedia, new-data loss on held-out Python
documentation, both as ``data.eval_sets`` so every run (with or without replay) reports
the same fixed windows under the same names.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path("/tmp/steep-recipe")
OLD, NEW = "wiki", "pydocs"  # eval-set names: old (pretraining) data, new (CPT) data
HELDOUT_FRACTION = 0.1  # of the documents; by content hash, as steep's own split does

PEAK_LR = 3e-3  # the "published" pretraining peak of our tiny base
PRETRAIN_MIN_RATIO = 0.1  # pretraining decays to 10% of the peak, so it ends at 3e-4
SEQ_LEN = 256
MICRO_BATCH = 16
BATCH_TOKENS = SEQ_LEN * MICRO_BATCH  # one forward per optimizer step: 4,096 tokens
PRECISION = "bf16-autocast"  # measured 1.5x faster than fp32 here (AVX512-BF16); fp32 weights
PRETRAIN_STEPS = 700  # ~0.95 epoch of the Wikipedia train split
EVAL_WINDOWS = 64

TINY_LLAMA: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
}


@dataclass(frozen=True)
class Corpora:
    """Train / held-out jsonl files of each corpus (held-out is never trained on)."""

    old_train: Path
    old_heldout: Path
    new_train: Path
    new_heldout: Path

    def eval_sets(self) -> dict[str, list[str]]:
        return {OLD: [str(self.old_heldout)], NEW: [str(self.new_heldout)]}


@dataclass
class Run:
    """What an experiment reads back from one run's metrics.jsonl."""

    name: str
    run_dir: Path
    wall_s: float
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    lrs: list[tuple[int, float]] = field(default_factory=list)

    def series(self, set_name: str) -> tuple[list[int], list[float]]:
        return [s for s, _ in self.evals], [losses[set_name] for _, losses in self.evals]

    def loss(self, set_name: str, at: int = -1) -> float:
        return self.evals[at][1][set_name]


# ------------------------------------------------------------------------------- data


def _split(src: Path, train: Path, heldout: Path) -> None:
    """Split a jsonl corpus by document hash with steep's rule, written atomically."""
    from steep.data.tokenunits import is_heldout

    lines = {"train": [], "heldout": []}
    for line in src.read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["text"]
        lines["heldout" if is_heldout(text, HELDOUT_FRACTION) else "train"].append(line)
    for path, chunk in ((train, lines["train"]), (heldout, lines["heldout"])):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(x + "\n" for x in chunk), encoding="utf-8")
        os.replace(tmp, path)


def prepare_corpora(root: Path) -> Corpora:
    """The demo corpora (Wikipedia = old, Python docs = new), split once into train/held-out."""
    from steep.demos.corpora import build_demo_corpora

    out = root / "corpora"
    built = build_demo_corpora(out, root / "wheels")
    corpora = Corpora(
        out / "wiki.train.jsonl",
        out / "wiki.heldout.jsonl",
        out / "pydocs.train.jsonl",
        out / "pydocs.heldout.jsonl",
    )
    for key, train, heldout in (
        ("wikipedia", corpora.old_train, corpora.old_heldout),
        ("python_docs", corpora.new_train, corpora.new_heldout),
    ):
        if not (train.exists() and heldout.exists()):
            _split(built[key].path, train, heldout)
    return corpora


# ------------------------------------------------------------------------------- runs


def _use_home(root: Path) -> None:
    """All runs share one STEEP_HOME, so each corpus is tokenized once."""
    os.environ["STEEP_HOME"] = str(root / "home")


def run_config(
    name: str,
    out_dir: Path,
    model: dict[str, Any],
    sources: list[dict[str, Any]],
    corpora: Corpora,
    *,
    steps: int,
    lr_fraction: float,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    min_lr_ratio: float = PRETRAIN_MIN_RATIO,
    eval_every: int = 25,
    eval_sets: Sequence[str] = (OLD, NEW),
    seed: int = 0,
) -> dict[str, Any]:
    """A steep config dict; everything not named here is the same in every experiment."""
    all_sets = corpora.eval_sets()
    roles = {OLD: "general", NEW: "domain"}
    return {
        "run": {"name": name, "out_dir": str(out_dir), "seed": seed},
        "model": {**model, "base_max_lr": PEAK_LR},
        "data": {
            "seq_len": SEQ_LEN,
            "sources": sources,
            "eval_sets": {k: all_sets[k] for k in eval_sets},
            "eval_roles": {k: roles[k] for k in eval_sets},
        },
        "train": {
            "steps": steps,
            "global_batch_tokens": BATCH_TOKENS,
            "micro_batch_size": MICRO_BATCH,
            "lr_fraction": lr_fraction,
            "schedule": schedule,
            "warmup_steps": warmup_steps,
            "min_lr_ratio": min_lr_ratio,
            "precision": PRECISION,
        },
        "eval": {"every_steps": eval_every, "max_windows": EVAL_WINDOWS},
        "checkpoint": {"every_steps": steps, "keep_last": 1},  # only the final one
    }


def source(name: str, path: Path, weight: float = 1.0) -> dict[str, Any]:
    """A training source; held-out data comes from ``data.eval_sets``, not from here."""
    return {"name": name, "paths": [str(path)], "weight": weight, "heldout_fraction": 0.0}


def replay_sources(corpora: Corpora, share: float) -> list[dict[str, Any]]:
    """CPT on the new data with ``share`` of old-data replay (weights 1 - share and share);
    no general source at all at 0, since a weight must be > 0."""
    sources = [source("domain", corpora.new_train, 1.0 - share)]
    if share > 0:
        sources.append(source("general", corpora.old_train, share))
    return sources


def read_run(name: str, run_dir: Path, wall_s: float) -> Run:
    from steep.train.report import read_metrics

    train, evals = read_metrics(run_dir / "metrics.jsonl")
    run = Run(name, run_dir, wall_s)
    run.evals = [(r["step"], {k: v["loss"] for k, v in r["sets"].items()}) for r in evals]
    run.lrs = [(r["step"], r["lr"]) for r in train]
    return run


def train_run(root: Path, config: dict[str, Any]) -> Run:
    """Run one config through steep's ``train()`` from scratch (an old run dir is replaced)."""
    from steep.config import parse_config
    from steep.train.loop import train

    _use_home(root)
    out_dir = Path(config["run"]["out_dir"])
    if out_dir.exists():
        shutil.rmtree(out_dir)
    started = time.perf_counter()
    train(parse_config(config, where=config["run"]["name"]))
    return read_run(config["run"]["name"], out_dir, time.perf_counter() - started)


def pretrained_base(root: Path, corpora: Corpora) -> tuple[Path, Run, float]:
    """The tiny base, pretrained on the old data once and reused while its config holds.

    A changed config (model size, steps, LR, data) gets its own directory, so a stale base
    is never mistaken for the one the experiment describes. Returns the model directory,
    the pretraining run and the seconds spent pretraining now (0 when cached).
    """
    config = run_config(
        "pretrain",
        root / "pretrain",  # replaced below by the keyed directory
        {"random_init": TINY_LLAMA, "tokenizer": "bytes"},
        [source("general", corpora.old_train)],
        corpora,
        steps=PRETRAIN_STEPS,
        lr_fraction=1.0,
        warmup_steps=PRETRAIN_STEPS // 20,
        eval_every=100,
    )
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    out_dir = root / f"pretrain-{key}"
    config["run"]["out_dir"] = str(out_dir)
    done = out_dir / "done.json"
    if done.exists():
        run = read_run("pretrain", out_dir, json.loads(done.read_text())["wall_s"])
        print(f"pretrained base (cached): {out_dir / 'model'}")
        return out_dir / "model", run, 0.0
    print(f"pretraining the tiny base on Wikipedia: {PRETRAIN_STEPS} steps ...")
    run = train_run(root, config)
    done.write_text(json.dumps({"wall_s": run.wall_s}) + "\n")
    return out_dir / "model", run, run.wall_s


def cpt_model(base: Path) -> dict[str, Any]:
    return {"base": str(base)}


# ------------------------------------------------------------------------------- output


def parse_args(description: str, default_steps: int, extra: Any = None) -> argparse.Namespace:
    """The scripts' common options; ``extra(parser)`` adds a script's own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="cache: corpora, base, runs")
    p.add_argument("--out", type=Path, default=None, help="tables and PNGs (default ROOT/results)")
    p.add_argument("--steps", type=int, default=default_steps, help="CPT steps per run")
    if extra is not None:
        extra(p)
    args = p.parse_args()
    args.out = args.out or args.root / "results"
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:  # platform.processor() is often empty on Linux; cpuinfo names the chip
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(x.split(":", 1)[1].strip() for x in f if x.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def pct(new: float, old: float) -> str:
    return f"{100 * (new - old) / old:+.1f}%"


def finish(out: Path, stem: str, text: str, started: float, pretrain_s: float) -> None:
    """Print the result and keep it as markdown next to the plot.

    The wall time leaves out pretraining the base, which is done once and cached.
    """
    wall = time.perf_counter() - started - pretrain_s
    text += f"\n\nwall time {wall:.0f} s on {machine()}"
    if pretrain_s:
        text += f" (plus {pretrain_s:.0f} s pretraining the base, cached for later runs)"
    text += "\n"
    print("\n" + text)
    (out / f"{stem}.md").write_text(text, encoding="utf-8")


def new_figure(ncols: int = 1, width: float = 6.0) -> tuple[Any, list[Any]]:
    """A figure with ``ncols`` side-by-side axes, drawn off-screen (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, 4.2), squeeze=False)
    return fig, list(axes[0])


def plot_old_and_new(runs: dict[str, Run], old_title: str, path: Path) -> Path:
    """Two panels, old-data and new-data held-out loss per CPT step, one line per arm."""
    fig, axes = new_figure(2)
    for ax, name, title in ((axes[0], OLD, old_title), (axes[1], NEW, "new data")):
        for label, run in runs.items():
            ax.plot(*run.series(name), marker="o", ms=3, label=label)
        ax.set(title=f"{title}: held-out {name}", xlabel="CPT step", ylabel="loss (nats/byte)")
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot: {path}")
    return path
