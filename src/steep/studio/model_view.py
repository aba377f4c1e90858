"""The Models pages' numbers, in one sign convention: the relative change of a loss or of
bits per byte against its base, ``(model - base) / base`` (``steep.artifacts.scores``),
so negative is better everywhere, as in the tables of ``steep eval``'s report and the run
report. The headline's domain gain and general regression are shown as the mean change
on each role's sets (``scores.role_changes``), never with their own signs beside it.
"""

from __future__ import annotations

from typing import Any

from steep.artifacts.fmt import change_pct
from steep.artifacts.lineage import parse_lineage
from steep.artifacts.scores import CHANGE_LEGEND, loss_headline, rel_change, role_changes
from steep.hub import listed_change

LEGEND = CHANGE_LEGEND


def change(value: Any, base: Any) -> dict[str, Any]:
    """A cell: the relative change and its text ('-10.6%', 'n/a'), good or bad."""
    rel = rel_change(value, base)
    return {"rel": rel, "text": change_pct(rel), "good": rel is not None and rel < 0}


def role_cells(head: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The headline as a change per role (domain, general)."""
    return {
        role: {"rel": rel, "text": change_pct(rel), "good": rel is not None and rel < 0}
        for role, rel in role_changes(head).items()
    }


def loss_rows(metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The run's held-out loss per set: step 0 and final, and the change."""
    metrics = metrics or {}
    baseline = metrics.get("baseline") or {}
    return [
        {"set": name, "base": baseline.get(name), "final": loss, **change(loss, baseline.get(name))}
        for name, loss in (metrics.get("final") or {}).items()
    ]


def eval_view(report: dict[str, Any] | None, lineage: dict[str, Any] | None) -> dict[str, Any]:
    """An eval report's sets (bits per byte) and run windows (loss), with a headline per
    role: the report's own, else the run windows' by the run's roles."""
    report = report or {}
    sets = [
        {
            "set": name,
            "role": s.get("role"),
            "base": (s.get("base") or {}).get("bpb"),
            "model": (s.get("adapted") or {}).get("bpb"),
            **change((s.get("adapted") or {}).get("bpb"), (s.get("base") or {}).get("bpb")),
        }
        for name, s in (report.get("sets") or {}).items()
    ]
    windows_block = report.get("run_windows") or {}
    windows = [
        {
            "set": name,
            "base": w.get("base"),
            "model": w.get("adapted"),
            **change(w.get("adapted"), w.get("base")),
        }
        for name, w in (windows_block.get("sets") or {}).items()
    ]
    head, metric = report.get("headline") or {}, "bits per byte"
    if not (head.get("domain") or head.get("general")) and windows:
        roles = parse_lineage(lineage or {}).roles()
        base = {w["set"]: w["base"] for w in windows}
        head = loss_headline(base, {w["set"]: w["model"] for w in windows}, roles).to_dict()
        metric = "loss on the run's eval windows"
    return {"sets": sets, "windows": windows, "roles": role_cells(head), "metric": metric}


def list_row(model: dict[str, Any]) -> dict[str, Any]:
    """A Models list row: the training change per set and the change per role."""
    ev, from_training = listed_change(model)
    return {
        "losses": loss_rows(model.get("metrics")),
        "roles": role_cells(ev),
        "from_training": from_training,
        "any": any(v is not None for v in ev.values()),
    }
