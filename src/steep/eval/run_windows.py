"""``steep eval MODEL --run-windows``: a run's own eval sets, scored as its training scored them.

``steep eval`` reads each document on its own after a BOS and reports bits per byte; the
training loop reads fixed windows cut across documents from the tokenized stream, with no
BOS, under the run's precision. On one text the two give different losses, and both are
right by their own rule. This reproduces the training rule exactly (the same cached
shards, the same windows in the same order, batch size, separator mask and precision, the
base loaded as training loaded it), so the numbers in metrics.jsonl can be checked from
the saved model: step 0 against the base, the final eval against the model.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path
from typing import Any

import torch

from steep.artifacts.lineage import read_lineage
from steep.artifacts.metrics import read_metrics
from steep.artifacts.scores import rel_change
from steep.config import ModelSection, RunConfig, parse_config
from steep.errors import MissingInputError
from steep.eval.lineage import local_dir
from steep.model.io import load_base, load_tokenizer
from steep.train.evaluate import EvalSet, evaluate, window_rule
from steep.train.forward import use_document_mask
from steep.train.inputs import run_eval_sets
from steep.train.runtime import Runtime
from steep.workspace import METRICS_FILE, steep_home


def run_config(model_dir: Path) -> RunConfig:
    lineage = read_lineage(model_dir)
    if lineage is None or not lineage.config:
        raise MissingInputError(
            f"{model_dir}: --run-windows needs a model saved by `steep train` (its steep.json "
            "holds the run's config)"
        )
    return parse_config(lineage.config, where=f"{model_dir}/steep.json config")


def logged_losses(run_dir: Path) -> tuple[dict[str, float], dict[str, float], int | None]:
    """Step 0's and the last eval's loss per set, as the run logged them."""
    if not (run_dir / METRICS_FILE).is_file():
        return {}, {}, None
    _, evals = read_metrics(run_dir / METRICS_FILE)
    if not evals:
        return {}, {}, None

    def losses(rec: dict[str, Any]) -> dict[str, float]:
        return {n: v["loss"] for n, v in (rec.get("sets") or {}).items() if "loss" in v}

    first = next((e for e in evals if e.get("step") == 0), None)
    return losses(first) if first else {}, losses(evals[-1]), evals[-1].get("step")


def load_scored(spec: ModelSection, config: RunConfig, runtime: Runtime) -> torch.nn.Module:
    """A model loaded as training loaded its base: float32, then the run's weight dtype."""
    loaded = load_base(spec, steep_home(), seed=config.run.seed)
    return loaded.model.to(device=runtime.device, dtype=runtime.weight_dtype)


def score_loaded(
    model: torch.nn.Module, config: RunConfig, sets: list[EvalSet], sep: int, runtime: Runtime
) -> dict[str, float]:
    """Each set's loss under the run's eval rule (batch size, separator mask, precision)."""
    separator = sep if use_document_mask(config, runtime) else None
    chunk = config.train.loss_chunk
    return evaluate(
        model, sets, config.eval.batch_size, runtime.device, runtime.autocast(), separator, chunk
    )


def _score(
    spec: ModelSection, config: RunConfig, sets: list[EvalSet], sep: int, runtime: Runtime
) -> dict[str, float]:
    model = load_scored(spec, config, runtime)
    losses = score_loaded(model, config, sets, sep, runtime)
    del model
    gc.collect()
    return losses


def score_run_windows(model_spec: str, with_base: bool = True) -> dict[str, Any]:
    """The run's eval sets under its own rule, for the model (and its base), beside the
    losses the run logged; ``max_abs_diff`` says how closely they are reproduced."""
    model_dir = local_dir(model_spec)
    if model_dir is None:
        raise MissingInputError(f"--run-windows needs a local model folder, got {model_spec!r}")
    config = run_config(model_dir)
    runtime = Runtime.from_config(config.train, 0)
    print(f"[run windows] the eval sets of run {config.run.name!r}, as training read them")
    scored = ModelSection(base=str(model_dir), document_separator=config.model.document_separator)
    tokenizer = load_tokenizer(str(model_dir))  # the run's, saved beside its weights
    sets, sep = run_eval_sets(config, tokenizer, steep_home())
    adapted = _score(scored, config, sets, sep, runtime)
    base = _score(config.model, config, sets, sep, runtime) if with_base else None
    logged_base, logged_final, step = logged_losses(model_dir.parent)
    rows: dict[str, dict[str, Any]] = {}
    diffs: list[float] = []
    for s in sets:
        row = {
            "windows": int(s.windows.shape[0]),
            "tokens": s.tokens,
            "base": base[s.name] if base else None,
            "adapted": adapted[s.name],
            "in_run_step0": logged_base.get(s.name),
            "in_run_final": logged_final.get(s.name),
        }
        row["rel_change"] = rel_change(row["adapted"], row["base"]) if base else None
        pairs = [("adapted", "in_run_final"), ("base", "in_run_step0")]
        diffs += [abs(row[a] - row[b]) for a, b in pairs if row[a] is not None and row[b]]
        rows[s.name] = row
    return {
        "run": config.run.name,
        "rule": window_rule(
            config.data.seq_len,
            config.eval.max_windows,
            config.train.precision,
            use_document_mask(config, runtime),
        ),
        "device": str(runtime.device),
        "final_step": step,
        "sets": rows,
        "max_abs_diff": max(diffs) if diffs else None,
    }


def format_rows(block: dict[str, Any]) -> list[str]:
    """Lines for the console: each set's loss now and as the run logged it."""

    def f(x: float | None) -> str:
        return "-" if x is None or not math.isfinite(x) else f"{x:.4f}"

    lines = [f"rule: {block['rule']}"]
    for name, r in block["sets"].items():
        lines.append(
            f"{name}: base {f(r['base'])} (run step 0: {f(r['in_run_step0'])})  "
            f"model {f(r['adapted'])} (run final: {f(r['in_run_final'])})"
        )
    if block["max_abs_diff"] is not None:
        lines.append(f"largest difference from the run's own numbers: {block['max_abs_diff']:.2e}")
    return lines
