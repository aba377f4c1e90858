"""A run's folder: where a new run goes, and the config a resumed one continues with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from steep.config import ConfigError, RunConfig, apply_overrides, load_config, parse_config
from steep.config.flat import dotted
from steep.errors import AlreadyExistsError, MissingInputError
from steep.workspace import CONFIG_FILE, METRICS_FILE, Workspace


def new_run_dir(config: RunConfig, home: Path) -> Path:
    """``run.out_dir``, or a fresh folder under the workspace's runs/ (one naming rule for
    the CLI, the studio and sweeps: ``steep.workspace.Workspace.new_run_dir``)."""
    if config.run.out_dir:
        path = Path(config.run.out_dir)
        if (path / METRICS_FILE).exists():
            raise AlreadyExistsError(
                f"{path} already holds a run: use --resume {path} or another run.out_dir"
            )
        return path
    return Workspace(home).new_run_dir(config.run.name)


def differing_keys(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    fa, fb = dotted(a, lists=True), dotted(b, lists=True)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k) != fb.get(k))


def resume_config(
    run_dir: Path,
    new_data: Path | None = None,
    overrides: list[str] | None = None,
    allow_mixture_change: bool = False,
) -> RunConfig:
    """The run's own config.yaml; with ``new_data`` (a config whose ``data`` section
    replaces the run's: sources added or removed) and ``overrides`` (``data.*`` only),
    the mix it goes on with. Anything but the mix must stay as the run began."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise MissingInputError(f"{run_dir} is not a steep run directory (no config.yaml)")
    before = parse_config(yaml.safe_load(path.read_text()), where=str(path))
    if not new_data and not overrides:
        return before
    if not allow_mixture_change:
        raise ConfigError(
            "--resume with a CONFIG or --set changes the run's mix: add --allow-mixture-change "
            "(kept sources continue where they were; the change is recorded)"
        )
    bad = [o for o in overrides or [] if not o.startswith("data.")]
    if bad:
        raise ConfigError(
            f"--set {bad[0]} on --resume: only data.* keys (the mix) can change on resume"
        )
    data = before.model_dump(mode="json")
    if new_data:
        fresh = load_config(new_data).model_dump(mode="json")
        others = [
            k for k in differing_keys({**fresh, "data": {}}, {**data, "data": {}}) if k != "data"
        ]
        if others:
            shown = ", ".join(others[:5]) + (
                f" and {len(others) - 5} more" if len(others) > 5 else ""
            )
            raise ConfigError(
                f"{new_data} differs from {path} in {shown}: on resume only the data section "
                "(the mix) may change"
            )
        data["data"] = fresh["data"]
    data = apply_overrides(data, overrides or [])
    return parse_config(data, where=f"{path} with the mix changed")
