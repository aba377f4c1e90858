"""Bridge to lm-evaluation-harness (``lm_eval``): any of its tasks on a steep model directory.

A steep model directory is a plain Hugging Face folder, so lm_eval's own ``hf`` model
loads it unchanged; steep only builds the task list (lm_eval's tasks plus local YAML
folders), checks the names before any model is loaded, and flattens the results into
``{task: {metric: value}}``. Writing our own adapter (lm_eval's ``LM`` API) was
considered and rejected: ``hf`` already does batching, truncation and the prefix token
the way every published lm_eval number was made.

lm_eval is optional (``pip install lm-eval``); only this bridge needs it.

A local task is an lm_eval YAML file in a folder given with ``--harness-include``; it can
read a jsonl file with ``dataset_path: json`` and
``dataset_kwargs: {data_files: {test: /path/to/file.jsonl}}``, which needs no network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steep.errors import SteepError

# preferred headline metric of a task, in order; the first one it reports wins
PRIMARY_METRICS = ("acc_norm", "acc", "exact_match", "f1", "bleu", "word_perplexity")


class HarnessError(SteepError):
    """lm_eval is missing, or a task name or include folder is wrong."""


@dataclass
class HarnessPlan:
    """Checked task names and the task manager that knows them (built once, reused)."""

    tasks: list[str]
    include: list[str] = field(default_factory=list)
    manager: Any = None


def _import_lm_eval() -> Any:
    try:
        import lm_eval  # optional: lm-evaluation-harness (pip install 'steep[eval]')
    except ImportError:
        raise HarnessError(
            "--harness-tasks needs lm-evaluation-harness: pip install lm-eval "
            "(or pip install -e '.[dev]')"
        ) from None
    return lm_eval


def plan_harness(
    tasks: Sequence[str], include: Sequence[str | Path] = (), include_defaults: bool = True
) -> HarnessPlan:
    """Find every task before any model is loaded: a typo costs seconds, not a full eval.

    Local folders are indexed alone first; lm_eval's own catalogue (~15k tasks, about 15 s
    to index on a laptop CPU) only when a name is not found there and ``include_defaults``.
    """
    _import_lm_eval()
    # optional: lm-evaluation-harness (pip install 'steep[eval]')
    from lm_eval.tasks import TaskManager

    folders = [str(Path(p)) for p in include]
    for folder in folders:
        if not Path(folder).is_dir():
            raise HarnessError(f"--harness-include {folder}: not a folder")
    manager = None
    if folders:
        manager = TaskManager(include_path=folders, include_defaults=False)
        if not all(_known(manager, t) for t in tasks):
            manager = None
    if manager is None:
        manager = TaskManager(include_path=folders or None, include_defaults=include_defaults)
    missing = [t for t in tasks if not _known(manager, t)]
    if missing:
        places = (["lm_eval's tasks"] if include_defaults else []) + folders
        where = f" (looked in {', '.join(places)})" if places else ""
        raise HarnessError(f"unknown lm_eval task(s): {', '.join(missing)}{where}")
    return HarnessPlan(list(tasks), folders, manager)


def _known(manager: Any, name: str) -> bool:
    return name in manager.all_tasks or (name.endswith((".yaml", ".yml")) and Path(name).is_file())


def run_harness(
    model_path: str | Path,
    plan: HarnessPlan,
    device: str = "cpu",
    batch_size: int = 4,
    dtype: str = "float32",
    limit: int | None = None,
    num_fewshot: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Run the planned tasks on one model; ``{task: {metric: value, ...}}``.

    Each task's dict also has ``higher_is_better`` ({metric: bool}) and ``primary`` (the
    metric steep's report leads with).
    """
    lm_eval = _import_lm_eval()
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_path), "dtype": dtype},
        tasks=plan.tasks,
        task_manager=plan.manager,
        device=device,
        batch_size=batch_size,
        limit=limit,
        num_fewshot=num_fewshot,
        log_samples=False,
        bootstrap_iters=1000,
    )
    if results is None:  # non-zero ranks under torchrun get nothing back
        return {}
    return flatten_results(results)


def flatten_results(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """lm_eval's ``{"results": {task: {"acc,none": x, ...}}}`` -> ``{task: {"acc": x}}``.

    The default filter ("none") is dropped from the name; other filters stay as
    ``metric/filter`` so two filters of one metric never collide.
    """
    out: dict[str, dict[str, Any]] = {}
    better = results.get("higher_is_better", {})
    for task, raw in results.get("results", {}).items():
        metrics: dict[str, Any] = {}
        for key, value in raw.items():
            if "," not in key or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            name = metric if filt == "none" else f"{metric}/{filt}"
            metrics[name] = float(value) if math.isfinite(value) else None
        hib = {m: bool(v) for m, v in better.get(task, {}).items() if v is not None}
        metrics["higher_is_better"] = hib
        metrics["primary"] = primary_metric(metrics)
        out[task] = metrics
    return out


def primary_metric(metrics: dict[str, Any]) -> str | None:
    """The metric a report leads with: a known one first, else the first non-stderr one."""
    names = [
        m
        for m, v in metrics.items()
        if isinstance(v, float) and "_stderr" not in m and m not in ("primary",)
    ]
    for want in PRIMARY_METRICS:
        if want in names:
            return want
    return names[0] if names else None
