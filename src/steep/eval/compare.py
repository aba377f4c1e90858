"""``steep eval``: one model, or an adapted model against its base, on the same inputs.

Order of work, cheapest first, so a mistake costs seconds and not an hour of scoring:

1. read every eval set, task file and prompt file, and find every lm_eval task;
2. open each model's tokenizer and cut the sets into windows (too short: stop here);
3. load one model at a time and score sets and tasks, and write samples;
4. run lm_eval tasks (lm_eval loads the model itself);
5. compare, then write ``eval.json``, ``eval.md`` and plots, and the model's ``steep.json``.

Headline numbers, as e-Llama reports them: **domain gain** is the mean relative
improvement over the sets (and, separately, tasks) marked ``domain``; **general
regression** is the mean relative worsening over those marked ``general``. For held-out
sets the measure is bits per byte, which does not depend on the tokenizer, so a model
with an extended vocabulary is compared fairly with its base.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

import torch

from steep import __version__
from steep.artifacts import scores
from steep.artifacts.longctx import skipped_line
from steep.artifacts.scores import improvement, rel_change
from steep.config import ModelSection
from steep.errors import UsageError
from steep.eval.compare_report import publish
from steep.eval.generate import complete, read_prompts
from steep.eval.harness import HarnessPlan, plan_harness, run_harness
from steep.eval.lineage import lineage_roles, local_dir
from steep.eval.run_windows import format_rows, score_run_windows
from steep.eval.tasks import Task, evaluate_task, read_task
from steep.model.heldout import (
    TextSet,
    TokenizedSet,
    document_rule,
    evaluate_set,
    read_set,
    tokenize_set,
)
from steep.model.io import ModelLoadError, load_base, load_tokenizer
from steep.model.passkey import passkey_block, split_lengths
from steep.model.passkey_spec import DEFAULT_DEPTHS, DEFAULT_TRIALS
from steep.model.positions import position_loss, text_windows
from steep.model.rope import positions_of
from steep.model.scoring import resolve_device
from steep.workspace import steep_home

log = logging.getLogger(__name__)

Role = Literal["domain", "general"]
FORMAT = "steep-eval"
FORMAT_VERSION = 1
DEFAULT_SEQ_LEN = 1024
SET_METRIC = "bpb"  # the held-out measure the headline uses: fair across tokenizers
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class EvalSpec:
    """Everything ``steep eval`` was asked to do; paths as the user gave them."""

    model: str
    baseline: str | None = None
    sets: dict[str, list[str]] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)  # set or task name -> role
    tasks: dict[str, str] = field(default_factory=dict)  # task name -> jsonl file
    harness_tasks: list[str] = field(default_factory=list)
    harness_include: list[str] = field(default_factory=list)
    harness_limit: int | None = None
    harness_fewshot: int | None = None
    prompts: str | None = None
    seq_len: int | None = None
    batch_size: int = 4
    max_new_tokens: int = 48
    temperature: float = 0.0  # samples: 0 is greedy
    device: str = "auto"
    dtype: str = "float32"
    text_field: str = "text"
    out_dir: str | None = None
    update_lineage: bool = True
    run_windows: bool = False  # also the run's own eval sets under training's rule
    passkey: list[int] = field(default_factory=list)  # prompt lengths in tokens
    passkey_depths: list[float] = field(default_factory=lambda: list(DEFAULT_DEPTHS))
    passkey_trials: int = DEFAULT_TRIALS
    position_loss: bool = False  # loss by position on the --sets, windows of seq_len
    position_windows: int = 64


@dataclass
class _Inputs:
    sets: list[TextSet]
    tasks: list[Task]
    prompts: list[str]
    harness: HarnessPlan | None


# --------------------------------------------------------------------------- model dirs


def _open_tokenizer(spec: str) -> Any | None:
    """A local model directory's tokenizer, before any weights are read; None otherwise.

    A folder with no tokenizer file is refused here by name: transformers would otherwise
    fall back to a hub look-up and fail later with a less useful message.
    """

    path = local_dir(spec)
    if path is None:
        return None
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a Hugging Face model directory (no config.json)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}): save the "
            "tokenizer next to the model (tokenizer.save_pretrained) before evaluating it"
        )
    return load_tokenizer(str(path))


def _max_positions(spec: str) -> int | None:
    path = local_dir(spec)
    if path is None or not (path / "config.json").is_file():
        return None
    cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    value = cfg.get("max_position_embeddings") or (cfg.get("text_config") or {}).get(
        "max_position_embeddings"
    )
    return int(value) if value else None


def _load_model(spec: str, device: torch.device, dtype: str) -> tuple[Any, Any, str]:
    """(model, tokenizer, path lm_eval can load) through steep's own loader."""
    loaded = load_base(ModelSection(base=spec), steep_home())
    model = loaded.model.to(device=device, dtype=DTYPES[dtype])
    return model, loaded.tokenizer, str(loaded.info.get("path", spec))


# --------------------------------------------------------------------------- checks


def _check_inputs(spec: EvalSpec) -> _Inputs:
    """Step 1: read everything the user named; any error names the file (and line)."""
    asked = (spec.sets, spec.tasks, spec.harness_tasks, spec.prompts, spec.run_windows)
    if not (any(asked) or spec.passkey):
        raise UsageError(
            "nothing to evaluate: give --sets, --tasks, --harness-tasks, --prompts, "
            "--run-windows or --passkey"
        )
    if spec.position_loss and not spec.sets:
        raise UsageError("--position-loss reads the --sets' documents: give --sets NAME=PATH")
    if spec.passkey_trials < 1 or spec.position_windows < 1:
        raise UsageError("--passkey-trials and --position-windows must be at least 1")
    if spec.dtype not in DTYPES:
        raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, got {spec.dtype!r}")
    if spec.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    names = [*spec.sets, *spec.tasks, *spec.harness_tasks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UsageError(f"names used twice across sets and tasks: {', '.join(dup)}")
    unknown = sorted(set(spec.roles) - set(names))
    if unknown:
        raise UsageError(
            f"--domain/--general name no set or task: {', '.join(unknown)} "
            f"(known: {', '.join(names) or 'none'})"
        )
    sets = [read_set(name, paths, spec.text_field) for name, paths in spec.sets.items()]
    tasks = [read_task(path, name) for name, path in spec.tasks.items()]
    prompts = read_prompts(spec.prompts) if spec.prompts else []
    harness = plan_harness(spec.harness_tasks, spec.harness_include) if spec.harness_tasks else None
    return _Inputs(sets, tasks, prompts, harness)


def _seq_len(spec: EvalSpec, models: Sequence[str]) -> int:
    """The window length: asked for, else 1024, never past a model's position limit."""
    limits = [m for m in (_max_positions(s) for s in models) if m]
    cap = min(limits) if limits else None
    if spec.seq_len is not None:
        if spec.seq_len < 1:
            raise ValueError("--seq-len must be at least 1")
        if cap and spec.seq_len + 1 > cap:
            raise ValueError(f"--seq-len {spec.seq_len} does not fit the model's {cap} positions")
        return spec.seq_len
    return min(DEFAULT_SEQ_LEN, cap - 1) if cap else DEFAULT_SEQ_LEN


# --------------------------------------------------------------------------- scoring


def _score_model(
    label: str,
    spec_model: str,
    inputs: _Inputs,
    seq_len: int,
    spec: EvalSpec,
    device: torch.device,
    tokenized: list[TokenizedSet] | None,
) -> dict[str, Any]:
    """Sets, tasks and samples of one model; the model is freed before returning."""
    print(f"[{label}] loading {spec_model}", flush=True)
    model, tokenizer, hf_path = _load_model(spec_model, device, spec.dtype)
    if tokenized is None:  # not a local folder: its tokenizer came with the weights
        tokenized = [tokenize_set(s, tokenizer, seq_len) for s in inputs.sets]
    out: dict[str, Any] = {"path": hf_path, "sets": {}, "tasks": {}, "samples": []}
    for tset in tokenized:
        out["sets"][tset.name] = evaluate_set(model, tset, spec.batch_size, device)
        m = out["sets"][tset.name]
        print(
            f"[{label}] set {tset.name}: loss {m['loss']:.4f}  ppl {m['ppl']:.2f}  "
            f"bpb {m['bpb']:.4f}",
            flush=True,
        )
    for task in inputs.tasks:
        out["tasks"][task.name] = evaluate_task(
            model, task, tokenizer, seq_len, spec.batch_size, device
        )
        m = out["tasks"][task.name]
        print(f"[{label}] task {task.name}: acc {m['acc']:.3f}  acc_norm {m['acc_norm']:.3f}")
    if spec.passkey:
        limit = positions_of(model.config)  # dynamic NTK: factor x its original
        out["passkey"] = passkey_block(
            model, tokenizer, spec.passkey, spec.passkey_depths, spec.passkey_trials,
            limit, spec.batch_size, device,
        )  # fmt: skip
        for length, acc in out["passkey"]["mean_accuracy"].items():
            print(f"[{label}] passkey {length}: accuracy {acc:.0%} over the depths", flush=True)
    if spec.position_loss:
        out["position_loss"] = {
            s.name: position_loss(
                model, text_windows(s.name, s.texts, tokenizer, seq_len, spec.position_windows),
                spec.batch_size, device,
            )
            for s in inputs.sets
        }  # fmt: skip
    if inputs.prompts:
        out["samples"] = complete(
            model, tokenizer, inputs.prompts, spec.max_new_tokens, device, spec.temperature
        )
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def run_eval(spec: EvalSpec) -> dict[str, Any]:
    """Run the whole comparison and write its report; returns the eval.json content."""
    inputs = _check_inputs(spec)
    models = {"adapted": spec.model}
    if spec.baseline:
        models = {"base": spec.baseline, **models}
    seq_len = _seq_len(spec, list(models.values()))
    device = resolve_device(spec.device)
    _passkey_fits(spec, inputs, list(models.values()))

    # step 2: tokenizers and windows of every local model before any weights are read
    tokenized: dict[str, list[TokenizedSet] | None] = {}
    for label, model_spec in models.items():
        tok = _open_tokenizer(model_spec)
        tokenized[label] = (
            None if tok is None else [tokenize_set(s, tok, seq_len) for s in inputs.sets]
        )
        if tok is not None and spec.position_loss:  # too short: refused before any weights
            for s in inputs.sets:
                text_windows(s.name, s.texts, tok, seq_len, 1)

    if inputs.sets or inputs.tasks or inputs.prompts or spec.passkey:
        scored = {
            label: _score_model(label, m, inputs, seq_len, spec, device, tokenized[label])
            for label, m in models.items()
        }
    else:  # lm_eval and the run windows load the models themselves
        scored = {
            label: {"path": str(local_dir(m) or m), "sets": {}, "tasks": {}, "samples": []}
            for label, m in models.items()
        }
    if inputs.harness is not None:
        for label, res in scored.items():
            print(f"[{label}] lm_eval: {', '.join(inputs.harness.tasks)}", flush=True)
            res["harness"] = run_harness(
                res["path"],
                inputs.harness,
                device=str(device),
                batch_size=spec.batch_size,
                dtype=spec.dtype,
                limit=spec.harness_limit,
                num_fewshot=spec.harness_fewshot,
            )

    roles = {**lineage_roles(spec.model), **_roles_by_name(spec), **spec.roles}
    result = build_result(spec, inputs, scored, roles, seq_len, str(device))
    for key in ("passkey", "position_loss"):
        if any(key in res for res in scored.values()):
            result[key] = {label: res[key] for label, res in scored.items() if key in res}
    if spec.run_windows:
        result["run_windows"] = score_run_windows(spec.model, with_base=spec.baseline is not None)
        for line in format_rows(result["run_windows"]):
            print(f"[run windows] {line}")

    publish(result, spec.model, out_dir=spec.out_dir, update_lineage=spec.update_lineage)
    return result


def _passkey_fits(spec: EvalSpec, inputs: _Inputs, models: Sequence[str]) -> None:
    """Say which passkey lengths are past a model's positions (they are skipped); refuse
    when that leaves nothing at all to run."""
    if not spec.passkey:
        return
    limits = [m for m in (_max_positions(s) for s in models) if m]
    fit, past = split_lengths(spec.passkey, min(limits) if limits else None)
    if past:
        line = skipped_line({"skipped": past, "max_positions": min(limits)})
        if not fit and not (inputs.sets or inputs.tasks or inputs.prompts or inputs.harness):
            raise UsageError(f"{line}; no passkey length left to run")
        print(f"note: {line}", flush=True)


def _roles_by_name(spec: EvalSpec) -> dict[str, Role]:
    """Fallback: a name that starts with 'domain' or 'general' says its role."""
    roles: dict[str, Role] = {}
    for name in [*spec.sets, *spec.tasks, *spec.harness_tasks]:
        if name.startswith("domain"):
            roles[name] = "domain"
        elif name.startswith("general"):
            roles[name] = "general"
    return roles


# --------------------------------------------------------------------------- comparison


def change(base: float | None, adapted: float | None) -> dict[str, float | None]:
    """Absolute and relative change from base to adapted (relative: by scores.rel_change)."""
    if base is None or adapted is None:
        return {"abs": None, "rel": None}
    return {"abs": adapted - base, "rel": rel_change(adapted, base)}


def headline(sets: dict[str, dict], tasks: dict[str, dict]) -> dict[str, Any]:
    """Domain gain and general regression, from held-out bpb and, separately, from tasks
    (``steep.artifacts.scores.headline``: fractions, None where no set has that role)."""

    def block(rows: dict[str, dict]) -> dict[str, Any]:
        improvements = {n: r["improvement"] for n, r in rows.items()}
        return scores.headline(improvements, {n: r["role"] for n, r in rows.items()}).to_dict()

    out = {"metric": SET_METRIC, **block(sets)}
    out["tasks"] = block(tasks)
    return out


def build_result(
    spec: EvalSpec,
    inputs: _Inputs,
    scored: dict[str, dict[str, Any]],
    roles: dict[str, Role],
    seq_len: int,
    device: str,
) -> dict[str, Any]:
    """The eval.json document (see docs/formats.md)."""
    base = scored.get("base")
    adapted = scored["adapted"]
    sets: dict[str, dict] = {}
    for s in inputs.sets:
        a = adapted["sets"][s.name]
        b = base["sets"][s.name] if base else None
        sets[s.name] = {
            "role": roles.get(s.name),
            "paths": s.paths,
            "documents": len(s.texts),
            "bytes": s.bytes,
            "skipped": s.skipped,
            "base": b,
            "adapted": a,
            "change": {m: change(b[m] if b else None, a[m]) for m in ("loss", "ppl", "bpb")},
            "improvement": improvement(b[SET_METRIC], a[SET_METRIC], False) if b else None,
        }
    tasks: dict[str, dict] = {}
    for t in inputs.tasks:
        a = adapted["tasks"][t.name]
        b = base["tasks"][t.name] if base else None
        tasks[t.name] = _task_row(t.name, "jsonl", t.path, a, b, "acc_norm", {}, roles)
    if inputs.harness is not None:
        for name, a in adapted.get("harness", {}).items():
            b = base.get("harness", {}).get(name) if base else None
            primary = a.get("primary")
            hib = a.get("higher_is_better", {})
            metrics = {k: v for k, v in a.items() if k not in ("primary", "higher_is_better")}
            bm = (
                {k: v for k, v in b.items() if k not in ("primary", "higher_is_better")}
                if b
                else None
            )
            tasks[name] = _task_row(name, "lm_eval", None, metrics, bm, primary, hib, roles)
    samples = [
        {
            "prompt": p,
            "base": base["samples"][i] if base else None,
            "adapted": adapted["samples"][i],
        }
        for i, p in enumerate(inputs.prompts)
    ]
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "steep_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"spec": spec.model, "path": adapted["path"]},
        "baseline": {"spec": spec.baseline, "path": base["path"]} if base else None,
        "settings": {
            "seq_len": seq_len,
            "batch_size": spec.batch_size,
            "device": device,
            "dtype": spec.dtype,
            "max_new_tokens": spec.max_new_tokens,
            "temperature": spec.temperature,
            "harness_limit": spec.harness_limit,
            "harness_fewshot": spec.harness_fewshot,
            "set_rule": document_rule(seq_len, spec.dtype),
        },
        "headline": headline(sets, tasks) if base else None,
        "sets": sets,
        "tasks": tasks,
        "samples": samples,
    }


def _task_row(
    name: str,
    source: str,
    path: str | None,
    adapted: dict[str, Any],
    base: dict[str, Any] | None,
    primary: str | None,
    higher_is_better: dict[str, bool],
    roles: dict[str, Role],
) -> dict[str, Any]:
    numeric = [k for k, v in adapted.items() if isinstance(v, float) and "_stderr" not in k]
    hib = primary is None or higher_is_better.get(primary, True)
    b_primary = base.get(primary) if base and primary else None
    a_primary = adapted.get(primary) if primary else None
    return {
        "role": roles.get(name),
        "source": source,
        "path": path,
        "primary": primary,
        "higher_is_better": hib,
        "base": base,
        "adapted": adapted,
        "change": {m: change(base.get(m) if base else None, adapted.get(m)) for m in numeric},
        "improvement": improvement(b_primary, a_primary, hib) if base else None,
    }
