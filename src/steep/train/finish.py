"""What a finished run leaves: the model as an HF folder with its lineage (steep.json), the
report, the trackers' copies, and status.json saying done, last.

Stopped by the forgetting budget, the model is its best checkpoint's, not the last step's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from steep import __version__
from steep.artifacts.lineage import Lineage, TrainMetrics
from steep.model.basenames import base_names
from steep.model.io import save_hf
from steep.train.build import Run
from steep.train.evaluate import window_rule
from steep.train.lora import merged_model
from steep.train.parallel import full_state_dict
from steep.train.report import eval_table, format_table, read_metrics, write_report
from steep.train.runfolder.write_errors import folder_error
from steep.workspace import METRICS_FILE, MODEL_DIR, REPORT_FILE


@dataclass
class RunResult:
    run_dir: Path
    model_dir: Path
    baseline: dict[str, float]
    final: dict[str, float]


def finish(run: Run, best: int | None = None) -> RunResult:
    """Save the model, its lineage and the report; ``best``: the budget's best step, whose
    checkpoint becomes the model. Every rank gathers the weights; rank 0 writes."""
    if best is not None:  # stopped by the budget: the model is its best checkpoint's
        run.checkpointer.load(best)
    run.eval_long_context()  # all ranks: each forward may be a collective
    weights = full_state_dict(run.model, run.d, run.trainable_only)  # a collective: all ranks
    if not run.d.is_main:
        return RunResult(run.run_dir, run.run_dir / MODEL_DIR, run.baseline, {})
    assert run.tracker is not None
    run.tracker.close()
    _, evals = read_metrics(run.run_dir / METRICS_FILE)
    kept_eval = [r for r in evals if r["step"] == best] if best is not None else evals[-1:]
    final = {name: m["loss"] for name, m in kept_eval[0]["sets"].items()} if kept_eval else {}
    model_dir = _save_model(run, _lineage(run, final, best), weights)
    try:
        _write_report(run, model_dir)
    except OSError as exc:  # a full disk after the model was saved: the resume writes it
        raise folder_error(
            "write the report", run.run_dir / REPORT_FILE, exc, run.run_dir,
            f"the model is saved in {model_dir} and the checkpoints are intact",
        ) from exc  # fmt: skip
    run.tracker.finish(run.run_dir)  # W&B / MLflow: report, plots, steep.json; then they end
    run.status.set("done")  # last: the model and its report are on disk
    print(format_table(eval_table(evals)))
    print(f"model: {model_dir}\nreport: {run.run_dir / REPORT_FILE}")
    return RunResult(run.run_dir, model_dir, run.baseline, final)


def _lineage(run: Run, final: dict[str, float], best: int | None) -> Lineage:
    """steep.json: the base, the LR, the data and its tokens, the mix, the metrics."""
    config, seq_len = run.config, run.config.data.seq_len
    return Lineage(
        kind="cpt",
        steep_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        run_dir=str(run.run_dir),
        base=run.base.info,
        base_names=base_names(config.model)
        or run.base.info.get("lineage", {}).get("base_names", []),
        max_lr=run.max_lr,
        max_lr_source=run.lr_source,
        data=run.inputs.lineage,
        tokens_by_source=run.inputs.mixture.tokens_by_source(seq_len),
        **run.mix.lineage(seq_len),  # tokens per phase, mix changes, the budget's actions
        world_size=run.d.world,
        config=config.model_dump(mode="json"),
        metrics=TrainMetrics(step=best or run.step, baseline=run.baseline, final=final),
        data_changes=run.data_changes,  # empty unless resumed with --allow-data-change
        method=run.adapted.method if run.adapted is not None else None,
    )


def _save_model(run: Run, lineage: Lineage, weights: dict[str, Any] | None) -> Path:
    """model/: the HF folder (LoRA: the base reloaded in full precision, the adapters
    merged in); a full disk is one line that says the checkpoint is intact."""
    out = run.run_dir / MODEL_DIR
    try:
        plain = run.base.model
        if run.adapted is not None:
            plain = merged_model(run.adapted, run.config, run.home, weights, run.run_dir)
            weights = None
        return save_hf(plain, run.base.tokenizer, out, lineage, weights)
    except (OSError, SafetensorError) as exc:  # a full disk, in Python's I/O or in Rust's
        raise folder_error(
            "save the model to", out, exc, run.run_dir,
            f"checkpoint step_{run.step:07d} is intact and a resume saves the model again",
        ) from exc  # fmt: skip


def _write_report(run: Run, model_dir: Path) -> None:
    """report.md with the run's settings in words beside its tables and plots."""
    config, seq_len = run.config, run.config.data.seq_len
    write_report(
        run.run_dir,
        title=f"steep run: {config.run.name}",
        notes={
            "base model": str(config.model.base or "random init"),
            "max LR": f"{run.max_lr:.3g} ({config.train.lr_fraction:g} x {run.lr_source})",
            "schedule": f"{config.train.schedule}, {config.train.steps} steps, warmup "
            f"{run.schedule.warmup_steps}, floor {config.train.min_lr_ratio:g} x max",
            "batch": f"{config.train.global_batch_tokens:,} tokens/step ({run.d.world} ranks "
            f"x {run.accum} accumulation x {config.train.micro_batch_size} x {seq_len})",
            **run.mix.report_notes(),  # shares (after data.domain_share), phases, budget
            "model": str(model_dir),
            "eval rule": window_rule(
                seq_len, config.eval.max_windows, config.train.precision, run.separator is not None
            ),
            **({"warning": run.caveat} if run.caveat else {}),
        },
    )
