"""`steep plan`'s memory prediction vs the peak memory of real training steps on CPU (#19).

    .venv/bin/python benchmarks/plan_vs_measured.py            # every case, a table
    .venv/bin/python benchmarks/plan_vs_measured.py --cases 0 3

Each case is a random Llama trained in a fresh process through steep's own pieces, in the
loop's order: the model as ``model.random_init`` builds it (fp32, or bf16 under
``precision: bf16``), LoRA's adapters by ``steep.train.lora.apply_method``, activation
checkpointing by ``steep.train.parallel``, the optimizer of ``steep.train.optim`` (fused
AdamW), the loss of ``steep.train.forward.lm_loss`` under the run's autocast, then one
optimizer step of ``grad_accum`` micro-batches with AdamW's moments already made (as they
are from the second step on).

Measured: the process's peak resident memory (``ru_maxrss``, a high-water mark) above its
resident memory just before the model is built. glibc is told to serve every allocation
of 64 KiB or more with its own mmap (``MALLOC_MMAP_THRESHOLD_``), so a freed tensor leaves
the RSS at once and the high-water mark is the peak of live memory, what
``torch.cuda.max_memory_allocated`` reports on a GPU; a warm-up step on a 1-layer model
first runs every kernel once, so the libtorch code pages they touch are in the baseline,
not in the measurement. Predicted: ``steep.plan.estimate`` for the same config on ``cpu``,
its training peak (evaluation is not run here).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
from typing import Any

GIB = 2**30


def case(
    h: int, layers: int, heads: int, kv: int, inter: int, vocab: int, seq: int,
    micro: int = 1, accum: int = 1, ac: str = "none", chunk: int | str | None = None,
    precision: str = "bf16-autocast", method: str = "full", ranks: int = 1,
) -> dict[str, Any]:  # fmt: skip
    return dict(locals())


CASES: list[dict[str, Any]] = [
    case(256, 4, 4, 2, 688, 8192, 256, micro=2),
    case(256, 4, 4, 2, 688, 8192, 256, micro=2, ac="full"),
    case(512, 8, 8, 4, 1376, 16384, 512, accum=2, chunk="auto"),
    case(512, 8, 8, 4, 1376, 16384, 512, accum=2, ac="full", chunk="auto"),
    case(512, 8, 8, 4, 1376, 16384, 512, micro=2, ac="selective", chunk=256),
    case(768, 6, 12, 4, 2048, 32000, 1024),
    case(768, 6, 12, 4, 2048, 32000, 1024, ac="full", chunk="auto"),
    case(1024, 8, 16, 8, 2816, 32000, 1024, chunk="auto", precision="fp32"),
    case(512, 8, 8, 8, 1376, 16384, 512, precision="fp32"),
    case(512, 8, 8, 8, 1376, 16384, 512, ac="full", chunk="auto", precision="fp32"),
    case(512, 8, 8, 4, 1376, 16384, 512, chunk="auto", method="lora"),
    case(512, 8, 8, 4, 1376, 16384, 512, ranks=2),
    case(512, 8, 8, 4, 1376, 16384, 512, ac="full", ranks=2),
    case(512, 8, 8, 4, 1376, 16384, 512, chunk=128, ranks=2),
    case(256, 2, 4, 2, 688, 32000, 1024, micro=2, ranks=2),  # the logits dominate
    case(256, 2, 4, 2, 688, 32000, 1024, micro=2, chunk=256, ranks=2),
]


def case_config(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": {
            "random_init": {
                "hidden_size": c["h"], "num_hidden_layers": c["layers"],
                "num_attention_heads": c["heads"], "num_key_value_heads": c["kv"],
                "intermediate_size": c["inter"], "vocab_size": c["vocab"],
                "max_position_embeddings": c["seq"], "tie_word_embeddings": False,
            },
            "tokenizer": "bytes",
            "base_max_lr": 1e-3,
        },
        "data": {"seq_len": c["seq"], "sources": [{"name": "d", "paths": ["unused.txt"]}]},
        "train": {
            "steps": 1, "global_batch_tokens": c["seq"] * c["micro"] * c["accum"] * c["ranks"],
            "micro_batch_size": c["micro"], "activation_checkpointing": c["ac"],
            "loss_chunk": c["chunk"], "precision": c["precision"], "device": "cpu",
            "method": c["method"],
        },
    }  # fmt: skip


def resident() -> int:
    """The process's resident memory now, in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def high_water() -> int:
    """Peak resident memory (VmHWM), in bytes; ``clear_refs`` 5 restarts it."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def measure(config_dict: dict[str, Any]) -> dict[str, float]:
    """Train ``train.steps`` steps in this process; peak RSS above the start, in bytes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from steep.config import parse_config
    from steep.train.forward import lm_loss
    from steep.train.lora import apply_method
    from steep.train.optim import build_optimizer
    from steep.train.parallel import apply_activation_checkpointing, init_distributed, shard_model
    from steep.train.runtime import Runtime

    config = parse_config(config_dict)
    t = config.train
    values = dict(config.model.random_init or {})
    runtime = Runtime.from_config(t)
    d = init_distributed(config)  # under torchrun: gloo ranks, FSDP2 as the loop shards
    vocab, seq = values["vocab_size"], config.data.seq_len

    def build(**sizes: Any) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        cfg = AutoConfig.for_model("llama", **{**values, **sizes})
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        model = model.to(dtype=runtime.weight_dtype).train()
        adapted = apply_method(model, config, t.precision, sharded=False)
        model = adapted.model if adapted is not None else model
        apply_activation_checkpointing(model, t.activation_checkpointing, t.ac_every)
        if d.enabled:
            shard_model(model, t.precision, runtime.device)
        optimizer, _ = build_optimizer(model, config, 1e-4)
        params = [p for p in model.parameters() if p.requires_grad]
        for p in params:  # AdamW makes its moments at its first step: make them now, so
            p.grad = torch.zeros_like(p)  # the measured step is like every later one
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return model, optimizer

    accum = config.batch_split(d.world).accum  # micro-batches per rank and step

    def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> float:
        for step in range(steps):
            for i in range(accum):
                with runtime.autocast():  # the loop's loss, chunked under FSDP2 too
                    loss = lm_loss(model, batches[(step + i) % 4], chunk=t.loss_chunk)
                (loss / accum).backward()
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return float(loss)

    batches = [torch.randint(0, vocab, (t.micro_batch_size, seq + 1)) for _ in range(4)]
    # a warm-up on a 1-layer model of width 64 runs every kernel once: the code pages of
    # libtorch it touches (resident, counted in the RSS) are then in the baseline
    small = dict(hidden_size=64, intermediate_size=128, num_attention_heads=2,
                 num_key_value_heads=1, num_hidden_layers=1, vocab_size=vocab)  # fmt: skip
    train(*build(**small), steps=1)
    gc.collect()
    before = resident()  # now, not the high-water mark (the warm-up's peak is past)
    model, optimizer = build()
    if d.enabled:  # the whole model existed for a moment before it was sharded: not counted
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # Linux: the high-water mark starts again from now
    loss = train(model, optimizer, steps=t.steps)
    peak = high_water()
    measured = float(peak - before)
    if d.enabled:  # the largest rank's
        import torch.distributed as dist

        box: list[Any] = [None] * d.world
        dist.all_gather_object(box, measured)
        measured = float(max(box))
    return {"measured": measured, "loss": float(loss)}


def measure_in_subprocess(config_dict: dict[str, Any], ranks: int = 1) -> float:
    """``measure`` in a fresh process (``ranks`` > 1: torchrun's gloo ranks) with mmap for
    every large allocation; bytes, the largest rank's."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "STEEP_CPU_ALLOCATOR": "system"}
    env.pop("LD_PRELOAD", None)
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"]
        env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run(
        [*launcher, os.path.abspath(__file__), "--one", json.dumps(config_dict)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"measurement failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["measured"]


def predicted(config_dict: dict[str, Any], ranks: int = 1) -> Any:
    from steep.config import parse_config
    from steep.plan.devices import cpu_device
    from steep.plan.estimate import make_plan

    return make_plan(parse_config(config_dict), ranks, cpu_device(), suggest=False)


def describe(c: dict[str, Any]) -> str:
    loss = "whole" if c["chunk"] is None else f"chunk {c['chunk']}"
    method = "" if c["method"] == "full" else f"{c['method']}, "
    ranks = "" if c["ranks"] == 1 else f", FSDP2 x {c['ranks']}"
    return (
        f"{method}h{c['h']} L{c['layers']} kv{c['kv']}/{c['heads']} V{c['vocab'] // 1000}k "
        f"s{c['seq']} b{c['micro']}x{c['accum']} AC {c['ac']}, {loss}, {c['precision']}{ranks}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, nargs="*", help="indices into CASES (default: all)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        result = measure(json.loads(args.one))
        if os.environ.get("RANK", "0") == "0":
            print(json.dumps(result))
        return
    import torch

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}\n")  # fmt: skip
    print("| case | params | predicted peak, MiB | measured peak, MiB | predicted / measured |")
    print("|---|---:|---:|---:|---:|")
    for i in args.cases if args.cases else range(len(CASES)):
        cfg = case_config(CASES[i])
        plan = predicted(cfg, CASES[i]["ranks"])
        measured = measure_in_subprocess(cfg, CASES[i]["ranks"])
        mem = plan.memory
        pred = mem.train_peak
        print(
            f"| {describe(CASES[i])} | {plan.params / 1e6:.1f}M | {pred / 2**20:,.0f} | "
            f"{measured / 2**20:,.0f} | {pred / measured:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
