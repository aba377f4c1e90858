"""TIES, DARE-TIES, SLERP and task arithmetic through mergekit (the ``merge`` extra).

steep does not re-implement these methods: for each point of a curve it writes mergekit's
YAML (the base as ``base_model``, the CPT model at weight ``alpha``) and runs mergekit's own
``mergekit-yaml`` entry point into a scratch folder; the merged weights are then read back
tensor by tensor like any other model (``steep.model.merge.Weights``). The scoring, the
curve, the pick and the lineage stay steep's.

What ``alpha`` means per method, so that alpha 0 is the base:

- ``task_arithmetic``: base + alpha x (cpt - base), the same numbers as steep's own linear
  interpolation (kept for a user who wants mergekit's output to compare);
- ``ties`` / ``dare_ties``: base + alpha x the CPT delta after trimming to ``density`` of
  its largest entries (DARE: random drop with rescale, seeded) and sign election; with one
  model ``normalize`` is off, else it would divide alpha back out;
- ``slerp``: spherical interpolation at ``t = alpha`` between base (0) and CPT (1).

Plain interpolation does not go through mergekit: it is one line of arithmetic that steep
streams straight into the loaded model it scores (no model folder written per alpha), with
its rules for an extended vocabulary, and it needs no LGPL extra.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from steep.errors import SteepError, UsageError

MERGEKIT_METHODS = ("ties", "dare_ties", "slerp", "task_arithmetic")
DENSITY_METHODS = ("ties", "dare_ties")
DEFAULT_DENSITY = 0.5
EXTRA = "pip install 'steep[merge]'"
SEED = 0  # dare_ties drops at random: one seed, so a curve's points are comparable


class MergekitError(SteepError):
    """mergekit ran and failed: its last line of output, and where the full log is."""


def require_mergekit(method: str) -> None:
    """Refuse in one line, naming the extra, when mergekit is not installed."""
    try:
        found = importlib.util.find_spec("mergekit") is not None
    except (ImportError, ValueError):  # a broken install, or one blocked in sys.modules
        found = False
    if not found:
        raise UsageError(f"--method {method} runs through mergekit, not installed: {EXTRA}")


def mergekit_config(
    method: str, base: Path, cpt: Path, alpha: float, density: float | None = None
) -> dict:
    """mergekit's YAML (as a dict; JSON is YAML) for one point of the curve."""
    if method == "slerp":
        return {
            "merge_method": "slerp",
            "base_model": str(base),
            "models": [{"model": str(base)}, {"model": str(cpt)}],
            "parameters": {"t": alpha},
            "dtype": "float32",
        }
    params: dict[str, float] = {"weight": alpha}
    if method in DENSITY_METHODS:
        params["density"] = DEFAULT_DENSITY if density is None else density
    config = {
        "merge_method": method,
        "base_model": str(base),
        "models": [{"model": str(cpt), "parameters": params}],
        "dtype": "float32",
    }
    if method in DENSITY_METHODS:
        config["parameters"] = {"normalize": False}
    return config


def run_mergekit(config: dict, dest: Path, log: Path) -> Path:
    """Run ``mergekit-yaml CONFIG DEST`` on the CPU in a child process (this Python's
    mergekit), its output in ``log`` (kept only on failure: outside the scratch folder, so
    the one-line error's path is still there to read)."""
    dest.mkdir(parents=True, exist_ok=False)
    yaml_path = dest.parent / f"{dest.name}.yml"
    yaml_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "mergekit.scripts.run_yaml", str(yaml_path), str(dest)]
    cmd += ["--no-cuda", "--lazy-unpickle", "--quiet", "--random-seed", str(SEED)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # local folders only: never a hub look-up
    with open(log, "w", encoding="utf-8") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        lines = [x for x in log.read_text(encoding="utf-8", errors="replace").splitlines() if x]
        last = lines[-1] if lines else "no output"
        raise MergekitError(f"mergekit {config['merge_method']} failed ({last}); log: {log}")
    log.unlink(missing_ok=True)
    return dest
