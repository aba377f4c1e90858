"""Merge curves on the Compare page: each alpha of a ``steep models merge`` curve as a point
beside the runs (or a sweep's points) on one domain-gain / general-regression plot.

The numbers are the merge's own (``merge.json``'s curve, a saved merge's ``steep.json``):
``steep.artifacts.scores.loss_headline`` against the run's step 0 (alpha 0), the same
function and the same baseline the runs' own numbers use, so a merge point and a run
point are comparable where they share eval sets. Found in the workspace without torch:

- a studio merge job's curve (``studio/model-jobs/N/out/merge.json``);
- a saved merge (a hub model of kind ``merge``): its ``merge.json`` (the curve it was
  picked from) and its own point, marked saved with the model's name.

A curve from ``steep models merge --out ELSEWHERE`` without ``--save`` lives only in that
folder, which the studio does not search.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from steep.artifacts.lineage import try_read_lineage
from steep.artifacts.scores import finite

MERGE_JSON = "merge.json"  # steep.eval.merge_save.MERGE_JSON (that module loads torch)
JOBS_GLOB = f"studio/model-jobs/*/out/{MERGE_JSON}"  # steep.studio.model_jobs' layout


def _key(result: dict[str, Any]) -> str:
    return "weight" if result.get("method") == "chat-vector" else "alpha"


def _resolved(path: Any) -> str | None:
    return str(Path(str(path)).resolve()) if path else None


def _read(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, UnicodeDecodeError, ValueError):
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    return None


def _num(x: Any) -> float | None:
    return float(x) if finite(x) else None


class Curves:
    """Points by (CPT model folder, method), each alpha once (a later file's wins)."""

    def __init__(self) -> None:
        self.points: dict[tuple[str, str], dict[float, dict[str, Any]]] = {}

    def add(self, model: str, method: str, x: Any, gain: Any, regression: Any) -> None:
        if not finite(x):
            return
        at = self.points.setdefault((model, method), {})
        old = at.get(float(x), {})
        at[float(x)] = {
            "x": float(x),
            "domain_gain": _num(gain),
            "general_regression": _num(regression),
            "saved": old.get("saved", []),
        }

    def add_file(self, result: dict[str, Any]) -> None:
        model = _resolved(result.get("model"))
        if model is None:
            return
        key = _key(result)
        for p in result.get("curve") or []:
            if isinstance(p, dict):
                method = str(result.get("method") or "linear")
                self.add(
                    model, method, p.get(key), p.get("domain_gain"), p.get("general_regression")
                )

    def add_saved(self, name: str, merge: dict[str, Any]) -> None:
        """A saved merge's own point (from its lineage), marked with the model's name."""
        model = _resolved((merge.get("parents") or {}).get("model"))
        method = str(merge.get("method") or "linear")
        x = merge.get("weight" if method == "chat-vector" else "alpha")
        if model is None or not finite(x):
            return
        at = self.points.get((model, method), {})
        if float(x) not in at:
            self.add(model, method, x, merge.get("domain_gain"), merge.get("general_regression"))
        self.points[(model, method)][float(x)]["saved"].append(name)


def workspace_curves(home: Path, models: list[dict[str, Any]]) -> Curves:
    """Every merge curve the workspace holds: the studio's merge jobs (oldest first, so a
    newer curve of the same alphas wins) and the saved merges among ``models`` (the hub's)."""
    curves = Curves()
    files = sorted(home.glob(JOBS_GLOB), key=lambda p: int(p.parents[1].name))
    saved = [m for m in models if m.get("kind") == "merge" and m.get("path")]
    files += [Path(m["path"]) / MERGE_JSON for m in saved]
    for path in files:
        result = _read(path)
        if result is not None:
            curves.add_file(result)
    for m in saved:
        lineage, _ = try_read_lineage(Path(m["path"]))
        if lineage is not None and isinstance(lineage.merge, dict):
            curves.add_saved(str(m["name"]), lineage.merge)
    return curves


def merges_of(curves: Curves, runs: dict[str, Path | None]) -> list[dict[str, Any]]:
    """The curves whose CPT model is one of ``runs``' (name -> run folder; a run's model is
    saved inside its folder), each with its points in order of alpha."""
    folders = {str(p.resolve()): name for name, p in runs.items() if p is not None}
    out = []
    for (model, method), at in sorted(curves.points.items()):
        run = folders.get(str(Path(model).parent))
        if run is None:
            continue
        out.append(
            {
                "run": run,
                "model": model,
                "method": method,
                "key": "weight" if method == "chat-vector" else "alpha",
                "points": [at[x] for x in sorted(at)],
            }
        )
    return out
