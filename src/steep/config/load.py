"""Reading a run config: YAML file -> ``--set`` overrides -> validation -> absolute paths.

Errors name the file, the line (for YAML) or the field path, and the fields allowed.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from steep.artifacts.yamlload import load_yaml
from steep.config.schema import RunConfig, SourceSection
from steep.errors import ConfigError


def _section_models() -> dict[tuple[str, ...], type[BaseModel]]:
    """Map a dotted location to the pydantic model that validates it, for typo hints."""
    out: dict[tuple[str, ...], type[BaseModel]] = {(): RunConfig}
    for name, field in RunConfig.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out[(name,)] = ann
    out[("data", "sources")] = SourceSection
    return out


def _format_error(err: dict[str, Any], where: str) -> str:
    loc = [str(p) for p in err["loc"]]
    field = ".".join(loc) if loc else "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent = tuple(p for p in loc[:-1] if not p.isdigit())
        model = _section_models().get(parent)
        valid = sorted(model.model_fields) if model else []
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        return f"{where}: unknown field '{field}'.{hint} Valid fields here: {', '.join(valid)}"
    return f"{where}: {field}: {msg}"


def parse_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Validate a config dict; every problem is listed with its field path."""
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(e, where) for e in exc.errors()]
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; the value is read as YAML (so 3e-4, true, [1,2] work)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.steps=100")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[_list_index(node, part, key)]
                continue
            node = node.setdefault(part, {})
            if not isinstance(node, dict | list):
                raise ConfigError(f"--set {key}: '{part}' is a value, not a section")
        value = yaml.safe_load(raw) if raw else None
        if isinstance(node, list):
            node[_list_index(node, parts[-1], key)] = value
        else:
            node[parts[-1]] = value
    return data


def _list_index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {key}: '{part}' must be an index below {len(node)}")
    return int(part)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read YAML, apply overrides, validate. Relative data paths resolve against the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    data = load_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    data = apply_overrides(data, overrides or [])
    config = parse_config(data, where=str(path))
    return resolve_paths(config, path.parent)


def resolve_paths(config: RunConfig, root: Path) -> RunConfig:
    """Make relative file paths absolute against ``root`` (the config file's folder)."""

    def fix(p: str) -> str:
        return local_path(p, root)

    for src in config.data.sources:
        if src.paths is not None:
            src.paths = [fix(p) for p in src.paths]
    config.data.eval_sets = {
        k: [fix(p) for p in v] if isinstance(v, list) else v
        for k, v in config.data.eval_sets.items()
    }
    for attr in ("base", "tokenizer"):
        value = getattr(config.model, attr)
        if value and value != "bytes" and looks_local(value, root):
            setattr(config.model, attr, fix(value))
    return config


def local_path(value: str, root: Path) -> str:
    """The file a config's path names: expanded, and a relative one joined to ``root``."""
    expanded = expand_path(value)
    return expanded if os.path.isabs(expanded) else str((root / expanded).resolve())


def expand_path(value: str) -> str:
    """``~`` and ``$VAR`` expanded, as a job reads a config's path (still relative if it
    was); the studio checks a job's paths with this same expansion, so it checks what the
    job will open."""
    return os.path.expandvars(os.path.expanduser(value))


def looks_local(value: str, root: Path) -> bool:
    """A hub id looks like 'org/name'; anything that exists on disk or starts with . or / is local."""
    if value.startswith("pkg://"):
        return False
    if value.startswith((".", "/", "~", "$")) or value.endswith(".gguf"):
        return True
    return (root / value).exists()


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
