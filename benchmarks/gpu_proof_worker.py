"""One or more cases of the GPU proof (``benchmarks/gpu_proof.py`` starts this).

``python benchmarks/gpu_proof_worker.py SPEC.json`` runs the cases the spec names, one
after another in this process, and prints one ``RESULT {json}`` line per case. The driver
starts one process per case on CUDA (so each case's peak memory and compile caches are its
own) and one for all cases with ``--tiny`` on CPU (imports cost more than the tiny steps).

Both engines are measured the same way: a timestamp after ``torch.cuda.synchronize()`` at
the end of every optimizer step (steep: when the loop logs the step; HF: the Trainer's
``on_step_end``); tokens/s over the timed steps is their tokens over the time from the end
of the last warm-up step to the end of the last step. Peak memory is
``steep.train.runtime.peak_memory_gib`` at the end of the last step in both (CUDA:
``torch.cuda.max_memory_allocated``; CPU: the process's peak RSS).

Same batches: steep runs its own loop (``steep.train.loop.train``, what ``steep train``
calls) and this process records every micro-batch the loop loads (a wrapper around
``Mixture.load``); the HF run builds the same inputs from the same config
(``build_inputs``: the same token shards, the same seeded mixture), draws them as the
loop does, and feeds those windows in order (a sequential sampler) to ``Trainer``, whose
collator records what it hands the model. Each side reports the sha256 of what it saw;
equal hashes are equal batches. Both start from the same weights (``load_base``, same
seed), so their first-step losses agree too.

The steep run is stopped right after its last timed step (an exception out of the metrics
logger): the final eval, checkpoint and model save come after the timed steps and only
cost disk time here.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.train_throughput import LLAMA_1B  # Llama-3.2-1B's shape

# Llama-3.1-8B's shape; num_hidden_layers may be cut (spec lora_layers)
LLAMA_8B = {
    **LLAMA_1B,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "tie_word_embeddings": False,
}
TINY = dict(  # --tiny stand-ins: the same code paths in seconds on a CPU
    model_type="llama",
    vocab_size=384,
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    tie_word_embeddings=True,
)
TINY_8B = {**TINY, "intermediate_size": 224, "num_hidden_layers": 3, "tie_word_embeddings": False}
SHAPES = {"llama-1b": LLAMA_1B, "llama-8b": LLAMA_8B, "tiny": TINY, "tiny-8b": TINY_8B}
LR = 3e-4


class StopAfterLastStep(BaseException):
    """Raised from the metrics logger once the last timed step is logged."""


class NotApplied(Exception):
    """steep trained something other than what the case asked for (e.g. no LoRA yet)."""


def shape_of(spec: dict, case: dict) -> dict[str, Any]:
    shape = dict(SHAPES[case["shape"]])
    if case["shape"] == "llama-8b":
        shape["num_hidden_layers"] = spec["lora_layers"]
    return shape


def steep_config(spec: dict, case: dict) -> dict[str, Any]:
    """The run config of a case; the HF run reads its data and model from it too."""
    micro, accum, seq = case["micro"], case["accum"], spec["seq_len"]
    train: dict[str, Any] = {
        "steps": spec["steps"],
        "global_batch_tokens": seq * micro * accum,
        "micro_batch_size": micro,
        "lr_fraction": 1.0,
        "schedule": "constant",
        "warmup_steps": 1,
        "precision": "bf16-autocast",
        "device": spec["device"],
        "compile": case["compile"],
        "document_mask": "on" if case["document_mask"] else "off",
        "loss_chunk": case["loss_chunk"],
        "fused_kernels": case["kernels"],
        "method": case["method"],
    }
    if spec.get("peak_tflops"):
        train["peak_tflops"] = spec["peak_tflops"]
    if case["method"] != "full":
        train["lora"] = {"rank": 16, "alpha": 32, "target_modules": "all-linear"}
        train["embedding_lr_ratio"] = 1.0  # as the HF run, which has one LR for all
    return {
        "run": {"name": case["name"], "out_dir": str(Path(spec["work"]) / "runs" / case["name"])},
        "model": {
            "random_init": shape_of(spec, case),
            "tokenizer": "bytes",
            "base_max_lr": LR,
            "attention": case["attention"],
        },
        "data": {
            "seq_len": seq,
            "max_epochs": 1000,
            "sources": [{"name": "bench", "paths": [spec["corpus"]], "heldout_fraction": 0.0}],
        },
        "train": train,
        "eval": {"every_steps": 10**6, "max_windows": 1, "batch_size": 1},
        "checkpoint": {"every_steps": 10**6, "keep_last": 1},
    }


class Seen:
    """The micro-batches a run fed its model, as one sha256 (int64 rows, in order)."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.count = 0
        self.tokens = 0

    def add(self, windows: np.ndarray) -> None:
        rows = np.ascontiguousarray(windows, dtype=np.int64)
        self.sha.update(rows.tobytes())
        self.count += 1
        self.tokens += rows.size

    def digest(self) -> str:
        return self.sha.hexdigest()[:16]


class Clock:
    """Synchronized timestamps at the end of each optimizer step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.ends: list[float] = []

    def tick(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.ends.append(time.perf_counter())

    def step_seconds(self) -> list[float]:
        """Each step's time from the end of the one before (the first has none)."""
        return [b - a for a, b in zip(self.ends[:-1], self.ends[1:], strict=True)]

    def rate(self, warmup: int, tokens_per_step: int) -> tuple[float, float, int]:
        """tokens/s over the steps after ``warmup``, their seconds and their count."""
        timed = len(self.ends) - warmup
        if timed < 1:
            raise RuntimeError(f"{len(self.ends)} steps ran; {warmup} warm-up + 1 needed")
        seconds = self.ends[-1] - self.ends[warmup - 1]
        return timed * tokens_per_step / seconds, seconds, timed


def model_flops(spec: dict, case: dict) -> float:
    """steep's FLOPs per token (steep.train.flops) of the case's shape, on the meta device;
    for LoRA with hf_lora's adapters and trained embeddings, the frozen base at 4 x."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from steep.train.flops import flops_per_token

    shape = shape_of(spec, case)
    cfg = AutoConfig.for_model(**shape)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
        if case["method"] != "full":  # adapters train, the base is frozen, as steep counts
            model = hf_lora(model)
    return flops_per_token(model, spec["seq_len"])


def device_of(spec: dict) -> torch.device:
    return torch.device("cuda" if spec["device"] == "cuda" else "cpu")


def measured(
    spec: dict, clock: Clock, seen: Seen, losses: list[float], tokens_per_step: int, peak: float
) -> dict[str, Any]:
    """What both engines report, measured the same way."""
    rate, seconds, timed = clock.rate(spec["warmup"], tokens_per_step)
    return {
        "tokens_per_s": rate,
        "timed_s": seconds,
        "timed_steps": timed,
        "step_s": clock.step_seconds(),
        "tokens_per_step": tokens_per_step,
        "peak_gib": peak,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "batches_sha": seen.digest(),
        "micro_batches": seen.count,
        "batch_tokens": seen.tokens,
    }


def run_steep(spec: dict, case: dict) -> dict[str, Any]:
    from steep.config import parse_config
    from steep.data.mixture import Mixture
    from steep.train import build as builder
    from steep.train import loop, track

    config = parse_config(steep_config(spec, case))
    device = device_of(spec)
    seen, clock, losses, logged = Seen(), Clock(device), [], []
    counted: dict[str, int] = {}
    load, log = Mixture.load, track.Tracker.log
    build = getattr(builder, "build_optimizer", None)  # the build phase makes the optimizer

    def recording_load(self, draws):
        windows = load(self, draws)
        seen.add(windows)
        return windows

    def timed_log(self, record):
        log(self, record)
        if record.get("kind") != "train":
            return
        clock.tick()
        losses.append(record["loss"])
        logged.append(record)
        if record["step"] >= spec["steps"]:
            raise StopAfterLastStep

    def counting_build(model, *args, **kwargs):
        counted["total"] = sum(p.numel() for p in model.parameters())
        counted["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if case["method"] != "full" and counted["trainable"] == counted["total"]:
            raise NotApplied(
                f"train.method={case['method']} is not applied by this steep's loop yet "
                f"(all {counted['total']:,} parameters would train)"
            )
        return build(model, *args, **kwargs)

    Mixture.load, track.Tracker.log = recording_load, timed_log
    if build is not None:
        builder.build_optimizer = counting_build
    try:
        loop.train(config)
    except StopAfterLastStep:
        pass
    finally:
        Mixture.load, track.Tracker.log = load, log
        if build is not None:
            builder.build_optimizer = build
        shutil.rmtree(config.run.out_dir or "", ignore_errors=True)
    tokens_per_step = config.train.global_batch_tokens
    after = logged[spec["warmup"] :]
    return {
        **measured(spec, clock, seen, losses, tokens_per_step, logged[-1]["peak_mem_gib"]),
        "trainable_params": counted.get("trainable"),
        "total_params": counted.get("total"),
        # steep's own per-step figures, for comparison: each step from its start to the
        # loss's .item(), the logging between steps left out
        "steep_logged_tokens_per_s": len(after)
        * tokens_per_step
        / sum(tokens_per_step / r["tokens_per_s"] for r in after),
        "steep_logged_mfu": after[-1].get("mfu"),
    }


def replay_batches(config, tokenizer, home: Path) -> list[np.ndarray]:
    """The micro-batches steep's loop loads for this config, in its order (one process)."""
    from steep.train.inputs import build_inputs

    inputs = build_inputs(config, tokenizer, home, quiet=True)
    split = config.batch_split()  # one process
    micro, per_step = split.micro, split.per_step
    out = []
    for _ in range(config.train.steps):
        draws = inputs.mixture.draw(per_step)
        for i in range(split.accum):
            out.append(inputs.mixture.load(draws[i * micro : (i + 1) * micro]))
    return out


def hf_lora(model: torch.nn.Module) -> torch.nn.Module:
    """Plain peft, as a Trainer user writes it, with steep's LoRA settings: rank 16, alpha 32
    on every linear layer of the decoder, embeddings trained in full, the frozen linear
    weights stored in bf16 (autocast computes in bf16 anyway)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(model, cfg)
    model.get_input_embeddings().weight.requires_grad_(True)
    model.get_output_embeddings().weight.requires_grad_(True)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and not module.weight.requires_grad:
            module.weight.data = module.weight.data.to(torch.bfloat16)
    return model


def run_hf(spec: dict, case: dict) -> dict[str, Any]:
    from torch.utils.data import Dataset, SequentialSampler
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from steep.config import parse_config
    from steep.model.io import load_base
    from steep.train.runtime import peak_memory_gib

    config = parse_config(steep_config(spec, case))
    home = Path(spec["home"])
    device = device_of(spec)
    torch.manual_seed(0)
    base = load_base(config.model, home, seed=config.run.seed)  # the weights steep starts from
    rows = [w for batch in replay_batches(config, base.tokenizer, home) for w in batch]
    model = base.model
    if case["attention"] != "sdpa":
        model.set_attn_implementation(case["attention"])
    if case["method"] != "full":
        model = hf_lora(model.to(device))
    seen, clock, losses, peak = Seen(), Clock(device), [], []
    micro, accum = case["micro"], case["accum"]

    class Windows(Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> np.ndarray:
            return rows[i]

    def collate(items: list[np.ndarray]) -> dict[str, torch.Tensor]:
        windows = np.stack(items)
        seen.add(windows)
        ids = torch.from_numpy(windows[:, :-1].astype(np.int64))  # the seq_len tokens steep reads
        return {"input_ids": ids, "labels": ids}  # HF shifts the labels inside the model

    class InOrder(Trainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.tick()
            peak[:] = [peak_memory_gib(device)]

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    targs = TrainingArguments(
        output_dir=str(Path(spec["work"]) / "hf" / case["name"]),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum,
        max_steps=spec["steps"],
        learning_rate=LR,
        lr_scheduler_type="constant",  # = steep's constant with 1 warm-up step: max LR at once
        weight_decay=0.1,
        adam_beta1=0.9,
        adam_beta2=0.95,
        adam_epsilon=1e-8,
        max_grad_norm=1.0,
        optim="adamw_torch_fused",
        bf16=True,
        use_cpu=device.type == "cpu",
        torch_compile=case["compile"],
        use_liger_kernel=case["kernels"] == "liger",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
    )
    trainer = InOrder(
        model=model,
        args=targs,
        train_dataset=Windows(),
        data_collator=collate,
        callbacks=[Timer()],
    )
    trainer.train()
    shutil.rmtree(targs.output_dir, ignore_errors=True)
    params = list(trainer.model.parameters())
    return {
        **measured(spec, clock, seen, losses, spec["seq_len"] * micro * accum, peak[0]),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
        "total_params": sum(p.numel() for p in params),
    }


def run_case(spec: dict, case: dict) -> dict[str, Any]:
    from steep.train.flops import device_peak_flops

    started = time.perf_counter()
    device = device_of(spec)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    out: dict[str, Any] = {"case": case["name"]}
    try:
        result = (run_steep if case["engine"] == "steep" else run_hf)(spec, case)
        out.update(status="ok", **result)
    except NotApplied as exc:
        out.update(status="skipped", reason=str(exc))
    except Exception as exc:  # one failed case must not stop the others: its row says why
        tail = traceback.format_exc().strip().splitlines()[-12:]
        out.update(status="error", reason=f"{type(exc).__name__}: {exc}"[:300], log="\n".join(tail))
    try:
        out["flops_per_token"] = model_flops(spec, case)
    except Exception as exc:  # the row keeps its result; the driver then gives no MFU
        out.update(flops_per_token=None, flops_error=f"{type(exc).__name__}: {exc}"[:200])
    peak = device_peak_flops(device, spec.get("peak_tflops"))
    out["peak_flops"] = peak
    out["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out["wall_s"] = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def environment(spec: dict) -> dict[str, Any]:
    cuda = device_of(spec).type == "cuda"
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "device_name": torch.cuda.get_device_name() if cuda else "cpu",
        "capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else None,
        "cpu_threads": torch.get_num_threads(),
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    print("ENV " + json.dumps(environment(spec)), flush=True)
    for case in spec["cases"]:
        result = run_case(spec, case)
        bad = [k for k, v in result.items() if isinstance(v, float) and not math.isfinite(v)]
        for k in bad:
            result[k] = None
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
