"""The New run form's fields beyond the basics, generated from the config schema.

One definition: ``SECTIONS`` lists which dotted config paths the form shows, in which
group; their kind, default, choices, bounds and help text come from
``RunConfig.model_json_schema()`` (an enum is a dropdown, a bool a checkbox, a number a
number input, an optional section like ``track.wandb`` a checkbox that switches it on,
a list of sections like ``data.phases`` a table of rows). The page posts raw strings by
path; ``fields_config`` turns them into the config's own types and pydantic validates the
result with the rest of the config, so the form cannot drift from the schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import yaml

from steep.config.schema import RunConfig
from steep.studio.safe_yaml import load_studio_yaml

SECTIONS: list[tuple[str, list[str]]] = [
    (
        "Model",
        [
            "model.random_init",
            "model.tokenizer",
            "model.attention",
            "model.document_separator",
            "model.rope_scaling",
            "model.rope_theta",
        ],
    ),
    (
        "Schedule and precision",
        [
            "train.schedule",
            "train.warmup_steps",
            "train.warmup_fraction",
            "train.decay_fraction",
            "train.min_lr_ratio",
            "train.precision",
            "train.weight_decay",
            "train.grad_clip",
        ],
    ),
    (
        "Method and optimizer",
        [
            "train.method",
            "train.lora.rank",
            "train.lora.alpha",
            "train.lora.dropout",
            "train.lora.target_modules",
            "train.lora.embeddings",
            "train.embedding_lr_ratio",
            "train.optimizer",
        ],
    ),
    ("Mix over time", ["data.phases"]),
    (
        "Forgetting budget",
        [
            "train.forgetting_budget",
            "train.forgetting_budget.max_regression",
            "train.forgetting_budget.action",
            "train.forgetting_budget.sets",
            "train.forgetting_budget.replay_step",
            "train.forgetting_budget.max_replay_share",
            "train.forgetting_budget.on_bound",
        ],
    ),
    (
        "Memory and speed",
        [
            "train.activation_checkpointing",
            "train.ac_every",
            "train.compile",
            "train.loss_chunk",
            "train.offload",
            "train.peak_tflops",
        ],
    ),
    (
        "Checkpoints and trackers",
        [
            "checkpoint.every_steps",
            "checkpoint.keep_last",
            "checkpoint.async_save",
            "track.wandb",
            "track.wandb.project",
            "track.wandb.mode",
            "track.mlflow",
            "track.mlflow.tracking_uri",
            "track.mlflow.experiment",
        ],
    ),
]


@dataclass
class FormField:
    """One input: ``kind`` is select, bool, number, text, list, yaml, section or rows."""

    path: str
    kind: str
    label: str
    help: str = ""
    default: Any = None
    choices: list[str] = field(default_factory=list)
    integer: bool = False
    min: float | None = None
    max: float | None = None
    string_only: bool = False  # a text whose value is taken as written (no YAML scalar)
    section: str | None = None  # the optional section (a checkbox) this field belongs to
    columns: list[FormField] = field(default_factory=list)  # rows: the fields of a row

    @property
    def placeholder(self) -> str:
        if self.default is None or self.default == [] or self.default == {}:
            return ""
        if isinstance(self.default, list):
            return ", ".join(map(str, self.default))
        return str(self.default)


@lru_cache(maxsize=1)
def _schema() -> tuple[dict[str, Any], dict[str, Any]]:
    schema = RunConfig.model_json_schema()
    return schema, schema.get("$defs", {})


def _deref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _alternatives(node: dict[str, Any], defs: dict[str, Any]) -> tuple[list[dict], bool]:
    """The non-null types a property allows, dereferenced, and whether null is one."""
    options = node.get("anyOf", [node])
    kept = [_deref(o, defs) for o in options if o.get("type") != "null"]
    return kept, len(kept) < len(options)


def _property(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the property's own schema, with default and description; $defs) of a dotted path."""
    root, defs = _schema()
    node: dict[str, Any] = root
    prop: dict[str, Any] = {}
    for part in path.split("."):
        options, _ = _alternatives(node, defs)
        options += [_deref(o["items"], defs) for o in options if "items" in o]  # a list's rows
        holder = next((o for o in options if part in o.get("properties", {})), None)
        if holder is None:
            raise KeyError(f"{path}: not a config field")
        prop = holder["properties"][part]
        node = prop
    return prop, defs


def default_of(path: str) -> tuple[bool, Any]:
    """(whether the schema gives ``path`` a default, that default)."""
    try:
        prop, _ = _property(path)
    except KeyError:
        return False, None
    return "default" in prop, prop.get("default")


def _field(path: str, prop: dict[str, Any], defs: dict[str, Any]) -> FormField:
    options, _ = _alternatives(prop, defs)
    name = path.rsplit(".", 1)[-1]
    out = FormField(path, "text", name, prop.get("description", ""), prop.get("default"))
    types = {o.get("type") for o in options}
    enums = [v for o in options for v in o.get("enum", [])]
    consts = [o["const"] for o in options if "const" in o]
    if enums and len(options) == 1:
        out.kind, out.choices = "select", [str(v) for v in enums]
    elif types == {"boolean"}:
        out.kind = "bool"
    elif types <= {"integer", "number"} and types:
        out.kind, out.integer = "number", types == {"integer"}
        num = options[0]
        out.min = num.get("minimum", num.get("exclusiveMinimum"))
        out.max = num.get("maximum", num.get("exclusiveMaximum"))
    elif "array" in types:
        item = next(o for o in options if o.get("type") == "array").get("items", {})
        if "$ref" in item:
            row = _deref(item, defs)
            out.kind = "rows"
            out.columns = [
                _field(f"{path}.{k}", p, defs) for k, p in row.get("properties", {}).items()
            ]
        else:
            out.kind, out.choices = "list", [str(c) for c in consts]
    elif "object" in types:
        has_fields = any("properties" in o for o in options)
        out.kind = "section" if has_fields else "yaml"
    else:
        out.string_only = types == {"string"} and not consts
    if consts and out.kind == "text":
        out.help = f"{out.help} (or: {', '.join(map(str, consts))})".strip()
    return out


@lru_cache(maxsize=1)
def form_sections() -> tuple[tuple[str, tuple[FormField, ...]], ...]:
    """The form's groups and fields, each field described by the schema."""
    sections = []
    for title, paths in SECTIONS:
        fields: list[FormField] = []
        toggles: list[str] = []
        for path in paths:
            prop, defs = _property(path)
            f = _field(path, prop, defs)
            f.section = next((t for t in toggles if path.startswith(t + ".")), None)
            if f.kind == "section":
                toggles.append(path)
            fields.append(f)
        sections.append((title, tuple(fields)))
    return tuple(sections)


def all_fields() -> dict[str, FormField]:
    return {f.path: f for _, fields in form_sections() for f in fields}


def coerce(f: FormField, raw: Any) -> Any:
    """A posted value as the config's type; ValueError with a one-line reason."""
    if f.kind == "bool" or f.kind == "section":
        return bool(raw) if f.kind == "bool" else ({} if raw else None)
    text = str(raw).strip()
    if f.kind == "number":
        try:
            return int(text) if f.integer else float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not {'a whole' if f.integer else 'a'} number") from None
    if f.kind == "list":
        if text in f.choices:
            return text
        return [part.strip() for part in text.split(",") if part.strip()]
    if f.kind == "select" or f.string_only:
        return text
    try:  # the studio's loader: no anchors or aliases (a YAML bomb), bounded depth
        value = load_studio_yaml(text, f.path)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {str(exc).splitlines()[0]}") from None
    if f.kind == "yaml" and not isinstance(value, dict):
        raise ValueError(f"give a mapping, e.g. {_EXAMPLES.get(f.path, _EXAMPLES['*'])}")
    return value


_EXAMPLES = {
    "model.rope_scaling": "{rope_type: yarn, factor: 4}",
    "*": "{model_type: llama, hidden_size: 64}",
}


def _put(config: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def fields_config(
    values: dict[str, Any], rows: dict[str, list[dict[str, Any]]], errors: list[str]
) -> dict[str, Any]:
    """The nested config the posted fields describe: a field left empty is not set; a
    field of a section switched off is dropped. Each bad value is one line in ``errors``."""
    known = all_fields()
    out: dict[str, Any] = {}
    off = {p for p, f in known.items() if f.kind == "section" and not values.get(p)}
    for path, raw in values.items():
        f = known.get(path)
        if f is None:
            errors.append(f"form: {path}: not a field of this form")
        elif (
            f.section in off
            or (f.kind == "section" and not raw)
            or raw is None
            or (f.kind not in ("bool", "section") and str(raw).strip() == "")
        ):
            continue
        else:
            try:
                _put(out, path, coerce(f, raw))
            except ValueError as exc:
                errors.append(f"{path}: {exc}")
    for path, items in rows.items():
        f = known.get(path)
        if f is None or f.kind != "rows":
            errors.append(f"form: {path}: not a table of this form")
            continue
        _put(out, path, [_row(f, i, item, errors) for i, item in enumerate(items)])
    return out


def _row(f: FormField, i: int, item: dict[str, Any], errors: list[str]) -> dict[str, Any]:
    columns = {c.path.rsplit(".", 1)[-1]: c for c in f.columns}
    row: dict[str, Any] = {}
    for key, raw in item.items():
        col = columns.get(key)
        if col is None:
            errors.append(f"form: {f.path}.{i}.{key}: not a column of this table")
        elif raw is not None and str(raw).strip() != "":
            try:
                row[key] = coerce(col, raw)
            except ValueError as exc:
                errors.append(f"{f.path}.{i}.{key}: {exc}")
    return row


def take_fields(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """The other way, for a form filled from a config (a cloned run): the values each
    field shows and the table rows, taken out of ``config`` (what stays is the extra YAML).
    Defaults are not shown as values: the field's placeholder says them."""
    values: dict[str, Any] = {}
    rows: dict[str, list[dict]] = {}
    for path, f in all_fields().items():
        *parents, leaf = path.split(".")
        node: Any = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or leaf not in node:
            continue
        value = node[leaf]
        if value is None and f.kind in ("number", "select"):  # no input shows null: YAML
            continue
        if f.kind == "section":
            values[path] = value is not None
            if not value:
                node.pop(leaf)
            continue
        node.pop(leaf)
        if f.kind == "rows":
            rows[path] = [{k: _shown(v) for k, v in r.items()} for r in value or []]
        elif value != f.default:
            values[path] = value if f.kind == "bool" else _shown(value)
    return values, rows


def _shown(value: Any) -> str:
    """A value as its input shows it (the inverse of ``coerce``)."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False).strip()
    return str(value)
