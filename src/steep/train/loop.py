"""The training loop, top to bottom: model, data, optimizer, schedule; loop; eval; save.

Read ``train`` first: everything it calls lives in a module named for its job.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from steep import __version__
from steep.config import RunConfig, dump_config, parse_config, steep_home
from steep.eval.perplexity import eval_record, evaluate
from steep.eval.report import eval_table, format_table, read_metrics, write_report
from steep.model.base_lr import lookup_peak_lr
from steep.model.io import base_names, load_base, save_hf
from steep.track import METRICS_FILE, Tracker
from steep.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from steep.train.inputs import build_inputs
from steep.train.runtime import Runtime, seed_everything
from steep.train.schedule import Schedule, warmup_steps_for


@dataclass
class RunResult:
    run_dir: Path
    model_dir: Path
    baseline: dict[str, float]
    final: dict[str, float]


def train(config: RunConfig, run_dir: Path | None = None, resume: bool = False) -> RunResult:
    home = steep_home()
    run_dir = run_dir or new_run_dir(config, home)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        (run_dir / "config.yaml").write_text(dump_config(config))
    max_lr, lr_source = resolve_max_lr(config)  # before any slow work: refuse to guess early
    print(f"run {run_dir}\nmax LR {max_lr:.3g} = {config.train.lr_fraction:g} x {lr_source}")

    # --- build: runtime, model, data, optimizer, schedule ---
    runtime = Runtime.from_config(config.train)
    seed_everything(config.run.seed)
    base = load_base(config.model, home, seed=config.run.seed)
    model = base.model.to(device=runtime.device, dtype=runtime.weight_dtype)
    model.train()
    inputs = build_inputs(config, base.tokenizer, home)
    optimizer = build_optimizer(model, config, max_lr)
    schedule = Schedule(
        kind=config.train.schedule,
        max_lr=max_lr,
        total_steps=config.train.steps,
        warmup_steps=warmup_steps_for(
            config.train.steps, config.train.warmup_steps, config.train.warmup_fraction
        ),
        min_lr_ratio=config.train.min_lr_ratio,
        decay_fraction=config.train.decay_fraction,
    )
    seq_len, micro, accum = config.data.seq_len, config.train.micro_batch_size, config.grad_accum
    ckpt_root = run_dir / "checkpoints"

    # --- resume: model, optimizer, RNG, mixture position, baseline ---
    step, baseline = 0, {}
    if resume:
        ckpt = latest_checkpoint(ckpt_root)
        if ckpt is None:
            raise FileNotFoundError(f"{run_dir} has no complete checkpoint to resume from")
        state = load_checkpoint(ckpt, model, optimizer)
        step, baseline = state["step"], state["baseline"]
        inputs.mixture.load_state_dict(state["mixture"])
        print(f"resumed from {ckpt.name}")
    tracker = Tracker(run_dir, resume_step=step if resume else None)

    def run_eval() -> dict[str, float]:
        losses = evaluate(
            model, inputs.eval_sets, config.eval.batch_size, runtime.device, runtime.autocast()
        )
        tracker.log(
            eval_record(step, step * config.train.global_batch_tokens, losses, baseline or losses)
        )
        return losses

    if step == 0:  # the base model is the baseline every later eval is compared with
        baseline = run_eval()

    # --- the loop ---
    bar = tqdm(
        total=config.train.steps, initial=step, desc="train", unit="step", dynamic_ncols=True
    )
    while step < config.train.steps:
        started = time.perf_counter()
        lr = schedule.lr(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = 0.0
        for _ in range(accum):
            batch, _ = inputs.mixture.take(micro)
            batch_t = torch.from_numpy(batch).to(runtime.device)
            with runtime.autocast():
                logits = model(input_ids=batch_t[:, :-1]).logits
            loss = F.cross_entropy(logits.float().flatten(0, 1), batch_t[:, 1:].flatten())
            (loss / accum).backward()
            loss_sum += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), config.train.grad_clip or math.inf
        )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        elapsed = time.perf_counter() - started
        train_loss = loss_sum / accum
        tracker.log(
            {
                "kind": "train",
                "step": step,
                "tokens": step * config.train.global_batch_tokens,
                "loss": train_loss,
                "lr": lr,
                "grad_norm": float(grad_norm),
                "tokens_per_s": config.train.global_batch_tokens / elapsed,
                "tokens_by_source": inputs.mixture.tokens_by_source(seq_len),
            }
        )
        bar.update(1)
        bar.set_postfix(
            loss=f"{train_loss:.3f}",
            lr=f"{lr:.2e}",
            tok_s=f"{config.train.global_batch_tokens / elapsed:.0f}",
        )
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"train loss is {train_loss} at step {step}: "
                "lower train.lr_fraction or check the data"
            )
        if step % config.eval.every_steps == 0 or step == config.train.steps:
            run_eval()
        if step % config.checkpoint.every_steps == 0 or step == config.train.steps:
            save_checkpoint(
                ckpt_root,
                step,
                model,
                optimizer,
                {"baseline": baseline, "mixture": inputs.mixture.state_dict()},
                keep_last=config.checkpoint.keep_last,
            )
    bar.close()
    tracker.close()

    # --- results: HF model with lineage, report ---
    _, evals = read_metrics(run_dir / METRICS_FILE)
    final = {name: m["loss"] for name, m in evals[-1]["sets"].items()} if evals else {}
    lineage = {
        "kind": "cpt",
        "steep_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(run_dir),
        "base": base.info,
        "base_names": base_names(config.model)
        or base.info.get("lineage", {}).get("base_names", []),
        "max_lr": max_lr,
        "max_lr_source": lr_source,
        "data": inputs.lineage,
        "tokens_by_source": inputs.mixture.tokens_by_source(seq_len),
        "config": config.model_dump(mode="json"),
        "metrics": {"step": step, "baseline": baseline, "final": final},
    }
    model_dir = save_hf(model, base.tokenizer, run_dir / "model", lineage)
    write_report(
        run_dir,
        title=f"steep run: {config.run.name}",
        notes={
            "base model": str(config.model.base or "random init"),
            "max LR": f"{max_lr:.3g} ({config.train.lr_fraction:g} x {lr_source})",
            "schedule": f"{config.train.schedule}, {config.train.steps} steps, warmup "
            f"{schedule.warmup_steps}, floor {config.train.min_lr_ratio:g} x max",
            "batch": f"{config.train.global_batch_tokens:,} tokens/step "
            f"({micro} x {seq_len} x {accum} accumulation)",
            "mixture": ", ".join(f"{s.name} {s.weight:g}" for s in config.data.sources),
            "model": str(model_dir),
        },
    )
    print(format_table(eval_table(evals)))
    print(f"model: {model_dir}\nreport: {run_dir / 'report.md'}")
    return RunResult(run_dir, model_dir, baseline, final)


def resume_run(run_dir: Path) -> RunResult:
    """Continue a run from its own resolved config.yaml and newest complete checkpoint."""
    config_path = run_dir / "config.yaml"
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a steep run directory (no config.yaml)")
    config = parse_config(yaml.safe_load(config_path.read_text()), where=str(config_path))
    return train(config, run_dir=run_dir, resume=True)


def resolve_max_lr(config: RunConfig) -> tuple[float, str]:
    """Max LR = lr_fraction x the base's published peak (or the config's base_max_lr)."""
    if config.model.base_max_lr is not None:
        peak, source = config.model.base_max_lr, f"model.base_max_lr {config.model.base_max_lr:g}"
    elif config.model.random_init is not None:
        raise ValueError("a random_init model has no published peak LR: set model.base_max_lr")
    else:
        peak, key, ref = lookup_peak_lr(*base_names(config.model))
        source = f"{key} peak {peak:g} ({ref})"
    return config.train.lr_fraction * peak, source


def build_optimizer(model: torch.nn.Module, config: RunConfig, max_lr: float) -> torch.optim.AdamW:
    """AdamW; no weight decay on norms and biases (1-D tensors), as in GPT-style recipes."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": config.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=max_lr, betas=(config.train.beta1, config.train.beta2), eps=config.train.eps
    )


def new_run_dir(config: RunConfig, home: Path) -> Path:
    if config.run.out_dir:
        path = Path(config.run.out_dir)
        if (path / METRICS_FILE).exists():
            raise FileExistsError(
                f"{path} already holds a run: use --resume {path} or another run.out_dir"
            )
        return path
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return home / "runs" / f"{config.run.name}-{stamp}"
