"""The New run form filled from another run's config ("new run from this run", ?from=RUN)
or with a base model (?base=, the Model Hub's link).

The run's config.yaml is split into what the form's inputs show (the basic fields, the
schema fields of ``studio.schema_fields``, Data Hub sources as rows) and the rest, which
goes to the extra YAML box; values equal to the schema's defaults are left out, so the box
holds only what the run changed. A dataset the run trained on that the Data Hub no longer
has is named, one line each: the form would not launch with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from steep.artifacts.yamlload import load_yaml
from steep.datahub.catalog import Catalog, CatalogError
from steep.studio.schema_fields import default_of, take_fields
from steep.workspace import CONFIG_FILE, Workspace, run_name_problem

# the form's own inputs (studio.forms.RunForm) and the config path each one fills
BASIC = {
    "name": "run.name",
    "base": "model.base",
    "base_max_lr": "model.base_max_lr",
    "domain_share": "data.domain_share",
    "seq_len": "data.seq_len",
    "lr_fraction": "train.lr_fraction",
    "steps": "train.steps",
    "global_batch_tokens": "train.global_batch_tokens",
    "micro_batch_size": "train.micro_batch_size",
    "eval_every": "eval.every_steps",
}
STUDIO_SET = ("run.out_dir", "train.device")  # the studio chooses these for each launch


def prefill(
    home: Path, run: str | None, base: str | None, job_config: Path | None = None
) -> dict[str, Any] | None:
    """What the page fills in: ``form`` (for the script), ``note`` and ``problems``.
    ``job_config``: a studio job's config (?job=ID: one that never made its run folder)."""
    if run is None and not base and job_config is None:
        return None
    if run is None and job_config is None:
        return {"form": {"basic": {"base": base}}, "note": f"base: {base}", "problems": []}
    problem = run_name_problem(run) if run is not None else None
    path = job_config or Workspace(home).runs / str(run) / CONFIG_FILE
    if problem or not path.is_file():
        why = problem or f"{path} not found"
        return {"form": {}, "note": "", "problems": [f"?from={run}: no such run ({why})"]}
    config = load_yaml(path.read_text(), str(path))
    form, problems = form_values(config if isinstance(config, dict) else {}, home)
    if base:
        form["basic"]["base"] = base
    return {"form": form, "note": f"filled from {path}", "problems": problems}


def form_values(config: dict[str, Any], home: Path) -> tuple[dict[str, Any], list[str]]:
    """The form's values for ``config`` (taken out of it) and the missing datasets."""
    for path in STUDIO_SET:
        _pop(config, path)
    basic = {key: _pop(config, path) for key, path in BASIC.items()}
    basic = {k: v for k, v in basic.items() if v is not None}
    fields, rows = take_fields(config)
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    catalog = Catalog(Workspace(home).datasets)
    sources, problems = _sources(data.get("sources") or [], catalog)
    if sources is not None:
        data.pop("sources", None)
    eval_sets = _eval_sets(data, catalog, problems)
    _drop_defaults(config, "")
    extra = yaml.safe_dump(config, sort_keys=False) if config else ""
    form = {"basic": basic, "fields": fields, "rows": rows, "sources": sources or []}
    form.update(eval_sets=eval_sets, extra_yaml=extra)
    return form, problems


def _known(catalog: Catalog, ref: str, where: str, problems: list[str]) -> str:
    """``ref`` as the catalog resolves it; a dataset it lost since is a line in problems."""
    try:
        return catalog.get(ref).ref
    except CatalogError as exc:
        problems.append(f"{where}: {ref} is not in the Data Hub any more ({exc}); pick another")
        return ref


def _eval_sets(data: dict[str, Any], catalog: Catalog, problems: list[str]) -> list[dict]:
    """The Data Hub eval sets as the form's rows, taken out of ``data`` with their roles."""
    sets, roles = data.get("eval_sets") or {}, data.get("eval_roles") or {}
    out = []
    for name, value in list(sets.items()):
        if isinstance(value, dict) and value.get("dataset"):
            ref = _known(catalog, str(value["dataset"]), f"data.eval_sets.{name}", problems)
            out.append({"dataset": ref, "role": roles.pop(name, "") or ""})
            sets.pop(name)
    return out


def _sources(rows: list[Any], catalog: Catalog) -> tuple[list[dict] | None, list[str]]:
    """Data Hub sources as the form's rows, or None when one is files (they stay YAML)."""
    if not all(isinstance(r, dict) and r.get("dataset") for r in rows):
        return None, []
    out: list[dict] = []
    problems: list[str] = []
    for i, row in enumerate(rows):
        where = f"data.sources.{i}.dataset (source {row.get('name')!r})"
        ref = _known(catalog, str(row["dataset"]), where, problems)
        out.append({"dataset": ref, "weight": row.get("weight", 1), "role": row.get("role") or "",
                    "length": row.get("length") or None})  # fmt: skip
    return out, problems


def _pop(config: dict[str, Any], path: str) -> Any:
    *parents, leaf = path.split(".")
    node: Any = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    return node.pop(leaf, None) if isinstance(node, dict) else None


def _drop_defaults(node: dict[str, Any], prefix: str) -> None:
    """Remove what equals the schema's default, and the sections left empty."""
    for key in list(node):
        path = f"{prefix}.{key}" if prefix else key
        value = node[key]
        known, default = default_of(path)
        if isinstance(value, dict):
            _drop_defaults(value, path)
            if not value:
                node.pop(key)
        elif isinstance(value, list):  # rows (data.sources): each row's defaults too
            for row in value:
                if isinstance(row, dict):
                    _drop_defaults(row, path)
        elif (known and value == default) or (not known and value is None):
            node.pop(key)
