"""GPU proof: steep against HF Trainer on a Llama-3.2-1B-shaped model, one command.

Runs a list of cases, each in its own process on the same token windows (seq 2048, bf16
autocast over fp32 weights, AdamW, clipping 1.0, constant LR after one warm-up step):
steep plain, compiled, with flash attention or flex attention and document masking,
with Liger's kernels, with the whole logits instead of the chunked loss; HF Trainer plain,
compiled and with Liger; LoRA (rank 16, all linear layers, embeddings trained) on a
Llama-3.1-8B-shaped model through both. For each: tokens/s over the timed steps (after
``--warmup`` steps; the end of every step synchronized), MFU with steep's formula
(``steep.train.flops``: 6 x matmul parameters + 12 x layers x hidden x seq per token, over
the GPU's dense bf16 peak), peak memory (``torch.cuda.max_memory_allocated``), the first
and last step's loss, and the sha256 of the micro-batches the model was fed (equal for a
steep row and its HF row: same batches, see ``gpu_proof_worker.py`` for how).

A case whose package or device is missing is skipped with the reason in its row; a case
that does not fit the time left (``--budget-s``) is skipped as such. results.md and
results.json are rewritten after every case, so a run cut short still leaves a table.

    benchmarks/gpu_proof.sh                      # on a CUDA machine: the one command
    .venv/bin/python benchmarks/gpu_proof.py --device cpu --tiny --out /tmp/proof

``--device cpu --tiny`` runs every case that can run on a CPU with tiny stand-in models
and a few steps, in one worker process: the logic (cases, timing, MFU arithmetic, the HF
Trainer path, the same-batches check, the table) in seconds. This file uses only the
standard library, so the driver starts at once; the worker imports torch.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from steep.plan.flops import mfu

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "gpu_proof_worker.py"
MFU_GOAL, SPEEDUP_GOAL = 0.50, 1.5


def case(name: str, engine: str, **kw: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "engine": engine,
        "shape": "1b",
        "attention": "sdpa",
        "compile": False,
        "document_mask": False,
        "kernels": "none",
        "loss_chunk": "auto" if engine == "steep" else None,
        "method": "full",
        "vs": None,  # the HF case with equal settings
    }
    return {**base, **kw}


# Priority order: when the budget runs short, the cases at the end are the ones skipped.
CASES = [
    case("steep", "steep", vs="hf-trainer"),
    case("hf-trainer", "hf"),
    case("steep-compile", "steep", compile=True, vs="hf-trainer-compile"),
    case("hf-trainer-compile", "hf", compile=True),
    case("steep-lora-8b", "steep", shape="8b", method="lora", vs="hf-lora-8b"),
    case("hf-lora-8b", "hf", shape="8b", method="lora"),
    case("steep-fa2-docmask", "steep", attention="flash_attention_2", document_mask=True),
    case("steep-flex-docmask", "steep", attention="flex_attention", document_mask=True),
    case("steep-liger", "steep", kernels="liger", vs="hf-trainer-liger"),
    case("steep-nochunk", "steep", loss_chunk=None, vs="hf-trainer"),
    case("hf-trainer-liger", "hf", kernels="liger"),
]
# About how long a case takes on one H100/H200 (start, random init, steps); a case that
# does not fit the budget left is skipped rather than cut off half-way
ESTIMATE_S = {"plain": 45, "compile": 110, "lora": 75, "flex": 70}
MODEL_LABEL = {
    "llama-1b": "Llama-3.2-1B shape",
    "llama-8b": "Llama-3.1-8B shape",
    "tiny": "tiny Llama (--tiny)",
    "tiny-8b": "tiny untied Llama (--tiny, stands in for 8B)",
}


def estimate(c: dict) -> int:
    if c["compile"]:
        return ESTIMATE_S["compile"]
    if c["method"] != "full":
        return ESTIMATE_S["lora"]
    return ESTIMATE_S["flex" if c["attention"] == "flex_attention" else "plain"]


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def skip_reason(c: dict, args: argparse.Namespace) -> str | None:
    """Why a case cannot run here, or None."""
    cpu = args.device == "cpu"
    if c["attention"] == "flash_attention_2" and not installed("flash_attn"):
        return (
            "flash-attn is not installed (PyPI has only its source; it builds against one "
            "torch and CUDA): pip install flash-attn --no-build-isolation"
        )
    if c["kernels"] == "liger" and not installed("liger_kernel"):
        return "liger-kernel is not installed: pip install liger-kernel (CUDA only)"
    if c["method"] != "full" and not installed("peft"):
        return "peft is not installed: pip install peft"
    if cpu and (c["kernels"] == "liger" or c["attention"] != "sdpa"):
        return "needs CUDA (Triton kernels / compiled attention): runs on the GPU machine"
    if cpu and c["compile"] and not args.cpu_compile:
        return "cpu: compile left out (inductor's C++ build takes minutes here; --cpu-compile)"
    return None


def worker_case(c: dict, args: argparse.Namespace) -> dict[str, Any]:
    """The case as the worker reads it: the tiny or real shape and batch."""
    lora = c["method"] != "full"
    if args.tiny:
        shape = "tiny-8b" if c["shape"] == "8b" else "tiny"
    else:
        shape = "llama-8b" if c["shape"] == "8b" else "llama-1b"
    micro, accum = (args.lora_micro, args.lora_accum) if lora else (args.micro, args.accum)
    return {**c, "shape": shape, "micro": micro, "accum": accum}


def write_corpus(path: Path, tokens: int, seed: int = 0) -> None:
    """Documents of 200-6,000 characters of made-up words (one byte = one token with
    steep's byte tokenizer), so document masking has real boundaries to respect."""
    rng = random.Random(seed)
    syllables = [a + b for a in "bcdfghklmnprstvz" for b in "aeiou"]
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < tokens:
            n = rng.randint(200, 6000)
            words, size = [], 0
            while size < n:
                w = "".join(rng.choice(syllables) for _ in range(rng.randint(1, 4)))
                words.append(w)
                size += len(w) + 1
            text = " ".join(words)
            f.write(json.dumps({"text": text}) + "\n")
            written += len(text) + 1


def run_worker(
    spec: dict, cases: list[dict], timeout: float | None, log
) -> tuple[list[dict], dict | None, str | None]:
    """Start the worker on ``cases``; its RESULT rows, its ENV line and why it failed."""
    path = Path(spec["work"]) / f"spec-{cases[0]['name']}.json"
    path.write_text(json.dumps({**spec, "cases": cases}))
    env = dict(os.environ)
    env["STEEP_HOME"] = spec["home"]
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = [sys.executable, str(WORKER), str(path)]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=spec["work"]
        )
        out, err = done.stdout, done.stderr
        failed = f"worker exit {done.returncode}" if done.returncode else None
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        failed = f"timed out after {timeout:.0f} s (the time budget left)"
    rows = [json.loads(x[7:]) for x in out.splitlines() if x.startswith("RESULT ")]
    envs = [json.loads(x[4:]) for x in out.splitlines() if x.startswith("ENV ")]
    names = " ".join(c["name"] for c in cases)
    bad = failed or any(r.get("status") == "error" for r in rows)
    log(f"--- worker {names}: {failed or 'done'}; its stderr ends:\n{err[-3000:]}", echo=bool(bad))
    if failed:  # the last lines it wrote say why (an out-of-memory kill, a CUDA error)
        failed += ": " + " / ".join(x for x in err.strip().splitlines()[-3:])[-400:]
    return rows, (envs[0] if envs else None), failed


def finish_row(row: dict, c: dict, args: argparse.Namespace) -> dict:
    """Add what the driver computes: MFU (one formula for every row), labels."""
    row = {**row, "engine": c["engine"], "vs": c["vs"], "settings": settings_text(c)}
    row["order"] = [x["name"] for x in CASES].index(c["name"])
    row["model"] = model_label(c, args)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else row.get("peak_flops")
    row["peak_flops"] = peak
    ok = row.get("status") == "ok" and row.get("flops_per_token")
    row["mfu"] = mfu(row["tokens_per_s"], row["flops_per_token"], peak) if ok else None
    return row


def model_label(c: dict, args: argparse.Namespace) -> str:
    label = MODEL_LABEL[c["shape"]]
    if c["shape"] == "llama-8b" and args.lora_layers != 32:
        label += f", {args.lora_layers} of 32 layers"
    return label


def settings_text(c: dict) -> str:
    parts = [c["attention"], "compile" if c["compile"] else "eager"]
    if c["document_mask"]:
        parts.append("document mask")
    if c["kernels"] != "none":
        parts.append(c["kernels"])
    if c["engine"] == "steep":
        parts.append("chunked loss" if c["loss_chunk"] else "whole logits")
    else:
        parts.append("HF loss (whole logits)" if c["kernels"] == "none" else "Liger's fused loss")
    if c["method"] != "full":
        parts.append("LoRA r16, all linear, embeddings trained")
    parts.append(f"micro {c['micro']} x accum {c['accum']}")
    return ", ".join(parts)


def rel_diff(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def summarize(rows: list[dict]) -> dict[str, Any]:
    """The goals against what was measured, and the same-batches check per pair."""
    by = {r["case"]: r for r in rows if r.get("status") == "ok"}
    full = [r for r in by.values() if r["engine"] == "steep" and "LoRA" not in r["settings"]]
    best = max((r for r in full if r.get("mfu") is not None), key=lambda r: r["mfu"], default=None)
    pairs = []
    for r in by.values():
        hf = by.get(r.get("vs") or "")
        if r["engine"] == "steep" and hf:
            pairs.append(
                {
                    "steep": r["case"],
                    "hf": hf["case"],
                    "speedup": r["tokens_per_s"] / hf["tokens_per_s"],
                    "same_batches": r["batches_sha"] == hf["batches_sha"],
                    "loss_first_rel_diff": rel_diff(r["loss_first"], hf["loss_first"]),
                    "loss_last_rel_diff": rel_diff(r["loss_last"], hf["loss_last"]),
                }
            )
    return {
        "best_mfu": best and {"case": best["case"], "mfu": best["mfu"]},
        "mfu_goal_met": bool(best and best["mfu"] >= MFU_GOAL),
        "pairs": pairs,
        "speedup_goal_met": bool(pairs) and all(p["speedup"] >= SPEEDUP_GOAL for p in pairs),
        "all_same_batches": all(p["same_batches"] for p in pairs),
    }


def fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(result: dict) -> str:
    env, s = result["env"], result["settings"]
    by = {r["case"]: r for r in result["rows"]}
    lines = [
        f"Device: {env.get('device_name', '?')}; torch {env.get('torch', '?')} "
        f"(CUDA {env.get('cuda') or '-'}), transformers {env.get('transformers', '?')}, "
        f"peft {env.get('peft') or '-'}, liger-kernel {env.get('liger_kernel') or '-'}, "
        f"flash-attn {env.get('flash_attn') or '-'}.  ",
        f"Command: `{result['command']}` ({result['date']}).  ",
        f"Every case: seq {s['seq_len']}, {s['steps']} optimizer steps, the first "
        f"{s['warmup']} untimed (warm-up), bf16 autocast over fp32 weights (LoRA: frozen linear "
        f"weights in bf16), AdamW, constant LR {s['lr']:g}. MFU = tokens/s x FLOPs/token "
        f"(steep.train.flops) / {fmt(s.get('peak_tflops_used'), 'g')} TFLOP/s (the dense bf16 "
        "peak; unknown: no MFU). Peak GiB: torch.cuda.max_memory_allocated (CPU: the "
        "worker's peak RSS).\n",
        "| case | model | settings | tokens/s | MFU | vs HF (same settings) "
        "| peak GiB | loss step 1 -> last | batches (sha256) | note |",
        "|---|---|---|---:|---:|---:|---:|---|---|---|",
    ]
    for r in result["rows"]:
        if r.get("status") != "ok":
            note = f"{r.get('status')}: {r.get('reason', '')}".replace("|", "/")
            lines.append(f"| {r['case']} | {r.get('model', '')} | {r.get('settings', '')} "
                         f"| - | - | - | - | - | - | {note} |")  # fmt: skip
            continue
        hf = by.get(r.get("vs") or "")
        ratio = (
            f"{r['tokens_per_s'] / hf['tokens_per_s']:.2f}x"
            if hf and hf.get("status") == "ok"
            else "-"
        )
        note = ""
        if r.get("trainable_params") and r.get("total_params"):
            share = r["trainable_params"] / r["total_params"]
            note = f"{r['trainable_params']:,} of {r['total_params']:,} params train ({share:.1%})"
        lines.append(
            f"| {r['case']} | {r['model']} | {r['settings']} | {r['tokens_per_s']:,.0f} "
            f"| {fmt(r['mfu'], '.1%')} | {ratio} | {r['peak_gib']:.2f} "
            f"| {r['loss_first']:.3f} -> {r['loss_last']:.3f} | `{r['batches_sha']}` | {note} |"
        )
    summ = result["summary"]
    best = summ["best_mfu"]
    lines.append("")
    lines.append(
        f"- MFU goal >= {MFU_GOAL:.0%}: best full-model steep row "
        + (f"{best['case']} at {best['mfu']:.1%}: " if best else "none measured: ")
        + ("met" if summ["mfu_goal_met"] else "not met")
    )
    for p in summ["pairs"]:
        lines.append(
            f"- {p['steep']} vs {p['hf']}: {p['speedup']:.2f}x (goal {SPEEDUP_GOAL}x: "
            f"{'met' if p['speedup'] >= SPEEDUP_GOAL else 'not met'}); same batches: "
            f"{'yes' if p['same_batches'] else 'NO'}; loss differs by "
            f"{p['loss_first_rel_diff']:.2%} at step 1, {p['loss_last_rel_diff']:.2%} at the last"
        )
    lines.append(
        "- FLOPs/token: 6 x matmul parameters + 12 x layers x hidden x seq (PaLM's count, as "
        "steep logs it); LoRA rows 4 x the frozen matmul parameters where steep.train.flops "
        "counts so (no weight gradient), else 6 x. Same batches: equal sha256 of every "
        "micro-batch fed, in order (steep: what its loop loaded; HF: what the Trainer's "
        "collator passed on)."
    )
    return "\n".join(lines) + "\n"


def write_results(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    result["rows"].sort(key=lambda r: r["order"])
    peaks = [r["peak_flops"] for r in result["rows"] if r.get("peak_flops")]
    result["settings"]["peak_tflops_used"] = peaks[0] / 1e12 if peaks else None
    result["summary"] = summarize(result["rows"])
    texts = {"results.json": json.dumps(result, indent=1), "results.md": table(result)}
    for name, text in texts.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def probe_env() -> dict[str, Any]:
    """Package versions, without importing them (the worker adds torch's CUDA view)."""
    env: dict[str, Any] = {}
    for dist, key in (
        ("torch", "torch"),
        ("transformers", "transformers"),
        ("peft", "peft"),
        ("liger-kernel", "liger_kernel"),
        ("flash-attn", "flash_attn"),
        ("triton", "triton"),
        ("accelerate", "accelerate"),
    ):
        try:
            env[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            env[key] = None
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny models, a few steps (CPU check)")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_proof_results")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--budget-s", type=float, default=450, help="skip cases past this time")
    ap.add_argument("--cases", default=None, help="comma list (default: all, in order)")
    ap.add_argument("--seq-len", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None, help="steps left out of the timing")
    ap.add_argument("--micro", type=int, default=None)
    ap.add_argument("--accum", type=int, default=None)
    ap.add_argument("--lora-micro", type=int, default=None)
    ap.add_argument("--lora-accum", type=int, default=None)
    ap.add_argument("--lora-layers", type=int, default=16, help="of the 8B shape's 32")
    ap.add_argument("--peak-tflops", type=float, default=None, help="default: the GPU's")
    ap.add_argument("--cpu-compile", action="store_true", help="run compile cases on CPU too")
    ap.add_argument("--one-process", action="store_true", help="all cases in one worker")
    args = ap.parse_args(argv)
    small = {"seq_len": 32, "steps": 3, "warmup": 1, "micro": 2, "accum": 2}
    big = {"seq_len": 2048, "steps": 13, "warmup": 3, "micro": 8, "accum": 2}
    for key, value in (small if args.tiny else big).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.warmup < 1 or args.steps <= args.warmup:
        ap.error("need --warmup >= 1 and --steps > --warmup (timing starts at a step's end)")
    args.lora_micro = args.lora_micro or (2 if args.tiny else 4)
    args.lora_accum = args.lora_accum or 1
    if args.tiny and args.device == "cpu":
        args.one_process = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out).resolve()
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-proof-")).resolve()
    (work / "home").mkdir(parents=True, exist_ok=True)
    log_path = out / "gpu_proof.log"
    out.mkdir(parents=True, exist_ok=True)

    def log(text: str, echo: bool = True) -> None:
        if echo:
            print(text, file=sys.stderr, flush=True)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(text + "\n")

    names = args.cases.split(",") if args.cases else [c["name"] for c in CASES]
    unknown = sorted(set(names) - {c["name"] for c in CASES})
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; known: {[c['name'] for c in CASES]}")
    cases = [worker_case(c, args) for c in CASES if c["name"] in names]
    most = max(c["micro"] * c["accum"] for c in cases)
    corpus = work / "corpus.jsonl"
    write_corpus(corpus, int(1.2 * args.steps * most * (args.seq_len + 1)) + 10_000)
    spec = {
        "device": args.device,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "warmup": args.warmup,
        "lora_layers": args.lora_layers,
        "peak_tflops": args.peak_tflops,
        "work": str(work),
        "home": str(work / "home"),
        "corpus": str(corpus),
    }
    result: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/gpu_proof.py", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d"),
        "env": probe_env(),
        "settings": {**spec, "lr": 3e-4},
        "rows": [],
    }
    log(f"gpu proof: {len(cases)} cases, budget {args.budget_s:.0f} s, results in {out}")

    def record(row: dict, c: dict) -> None:
        result["rows"].append(finish_row(row, c, args))
        write_results(out, result)
        r = next(x for x in result["rows"] if x["case"] == c["name"])
        what = f"{r['tokens_per_s']:,.0f} tokens/s" if r["status"] == "ok" else r.get("reason")
        log(f"{c['name']}: {r['status']}: {what}")

    runnable = []
    for c in cases:
        reason = skip_reason(c, args)
        if reason:
            record({"case": c["name"], "status": "skipped", "reason": reason}, c)
        else:
            runnable.append(c)
    batches = [runnable] if args.one_process else [[c] for c in runnable]
    for group in batches:
        if not group:
            continue
        left = args.budget_s - (time.perf_counter() - started)
        need = 0 if args.tiny else estimate(group[0])
        if left < need:
            for c in group:
                why = f"time budget: {left:.0f} s left, this case takes about {need} s"
                record({"case": c["name"], "status": "skipped", "reason": why}, c)
            continue
        rows, env, failed = run_worker(spec, group, None if args.tiny else max(left, 30), log)
        if env:
            result["env"].update(env)
        done = {r["case"]: r for r in rows}
        for c in group:
            row = done.get(c["name"]) or {"status": "error", "reason": failed or "no result"}
            if row.get("device_name"):
                result["env"]["device_name"] = row["device_name"]
            record({"case": c["name"], **row}, c)
    result["wall_s"] = time.perf_counter() - started
    write_results(out, result)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
