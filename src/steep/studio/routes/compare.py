"""The Compare page: several runs on one chart, and their headline numbers side by side.

Pick two or more runs the hub knows (any state, started from the CLI or the studio), or a
sweep's points, and see their train loss and each eval set's change against step 0
overlaid, with each run's final domain gain and general regression. The numbers come from
each run's own ``metrics.jsonl`` scored with ``steep.artifacts.scores`` through the same
steps as a sweep's table (``train.report.eval_table``, then ``loss_headline``), so a run
reads the same here, in its report and in its sweep.

URLs: ``/compare?runs=a,b`` (or ``?run=a&run=b`` for a name with a comma) and
``/compare?sweep=SWEEP_FOLDER`` for the page; ``/api/compare`` takes the same parameters.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from steep.artifacts.lineage import Lineage
from steep.artifacts.metrics import read_metrics
from steep.artifacts.scores import ROLES, finite, loss_headline, mean, rel_change
from steep.config.flat import dotted
from steep.hub import scan
from steep.studio.markdown import render
from steep.studio.merge_points import merges_of, workspace_curves
from steep.studio.state import Studio
from steep.train.report import eval_table
from steep.workspace import METRICS_FILE, Workspace

MAX_RUNS = 12  # more lines than this on one chart cannot be told apart
MAX_TRAIN_POINTS = 500  # per run: a long run's train loss stays a small answer
MAX_SWEEP_POINTS = 48  # a sweep's answer stays bounded too; the page says how many it shows
# sweep.json and pareto.png as steep.sweep writes them (state.SWEEP_FILE, report.PLOT_FILE);
# named here because importing steep.sweep loads torch (its scheduler) into the studio
SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = "steep-sweep"
PARETO_FILE = "pareto.png"
# results.md's "Prediction" section and its plot (steep.sweep.predreport)
RESULTS_FILE = "results.md"
PREDICTION_HEADING = "## Prediction"
PREDICTION_FILE = "prediction.png"
SWEEP_PLOTS = (PARETO_FILE, PREDICTION_FILE)  # the only files of a sweep the studio serves

Names = Annotated[list[str] | None, Query(description="run names, comma-separated")]
OneName = Annotated[list[str] | None, Query(description="one run name each, commas and all")]
SweepName = Annotated[str | None, Query(description="a folder under STEEP_HOME/sweeps")]


def router(studio: Studio) -> APIRouter:
    routes = APIRouter()
    hub = studio.hub
    sweeps_root = Workspace(studio.home).sweeps

    @routes.get("/compare", response_class=HTMLResponse)
    def compare_page(
        request: Request, runs: Names = None, run: OneName = None, sweep: SweepName = None
    ) -> HTMLResponse:
        selected = requested(runs, run)
        context: dict[str, Any] = {"selected": selected, "max_runs": MAX_RUNS, "sweep": None}
        if sweep is not None:
            folder = sweep_folder(sweeps_root, sweep)
            query = [("sweep", folder.name)]
            context.update(title=f"Compare: sweep {folder.name}", sweep=folder.name, runs=[])
            context["prediction_html"] = prediction_html(folder)
        else:
            query = [("run", n) for n in selected]
            context.update(title="Compare runs", runs=hub.runs(), sweeps=list_sweeps(sweeps_root))
        api_url = f"/api/compare?{urlencode(query)}" if query else ""
        return studio.page(request, "compare.html", api_url=api_url, **context)

    @routes.get("/api/compare")
    def api_compare(runs: Names = None, run: OneName = None, sweep: SweepName = None) -> Any:
        """Each run's series and headline; a sweep's points when ``sweep`` is given."""
        if sweep is not None:
            return sweep_view(studio, sweep_folder(sweeps_root, sweep))
        names = requested(runs, run)
        if not names:
            raise HTTPException(400, "name the runs to compare: ?runs=a,b")
        if len(names) > MAX_RUNS:
            raise HTTPException(
                400, f"{len(names)} runs asked for; compare at most {MAX_RUNS} at a time"
            )
        rows = [studio.hub_call(hub.run, n) for n in names]  # 404 names the unknown run
        return {
            "runs": [hub_run_view(r) for r in rows],
            "config_diff": config_diff([r.get("config") for r in rows]),
            "max_train_points": MAX_TRAIN_POINTS,
            "merges": run_merges(studio, {r["name"]: Path(r["path"]) for r in rows}),
        }

    @routes.get("/api/sweeps/{name}/{plot}")
    def api_sweep_plot(name: str, plot: str) -> FileResponse:
        """Only a sweep folder's pareto.png or prediction.png: no other file, nothing
        outside the sweeps."""
        folder = sweep_folder(sweeps_root, name)
        if plot not in SWEEP_PLOTS:
            raise HTTPException(404, f"a sweep serves only {', '.join(SWEEP_PLOTS)}")
        path = folder / plot
        if path.is_symlink() or not path.is_file():
            raise HTTPException(404, f"sweep {name} has no {plot}")
        return FileResponse(path, media_type="image/png")

    return routes


def run_merges(studio: Studio, runs: dict[str, Path | None]) -> list[dict[str, Any]]:
    """The merge curves of the compared runs' models (``steep.studio.merge_points``)."""
    return merges_of(workspace_curves(studio.home, studio.hub.models()), runs)


# --- which runs -------------------------------------------------------------------------


def requested(runs: list[str] | None, run: list[str] | None) -> list[str]:
    """Names from ``runs=a,b`` and ``run=NAME`` (repeatable), in order, each once."""
    names = [n.strip() for part in runs or [] for n in part.split(",")]
    names += list(run or [])
    return list(dict.fromkeys(n for n in names if n))


def sweep_folder(root: Path, name: str) -> Path:
    """The sweep folder ``STEEP_HOME/sweeps/NAME``: one plain name, no way out of it."""
    if (
        not name
        or "/" in name
        or "\\" in name
        or ".." in name
        or name.startswith(".")
        or "\x00" in name
    ):
        raise HTTPException(400, f"not a sweep name: {name!r} (one folder under sweeps/)")
    folder = root / name
    real_root = root.resolve()
    if folder.resolve().parent != real_root or not (folder / SWEEP_FILE).is_file():
        raise HTTPException(404, f"no sweep {name!r} under {root}")
    return folder


def read_sweep_file(folder: Path) -> dict[str, Any]:
    """sweep.json as ``steep.sweep.state.read_sweep`` checks it (format steep-sweep)."""
    try:
        data = json.loads((folder / SWEEP_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HTTPException(404, f"sweep {folder.name}: {SWEEP_FILE} unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SWEEP_FORMAT:
        raise HTTPException(404, f"sweep {folder.name}: {SWEEP_FILE} is not a steep sweep file")
    if not isinstance(data.get("points"), list):
        data["points"] = []
    return data


def prediction_html(folder: Path) -> str:
    """results.md's Prediction section as HTML (its plot served by ``api_sweep_plot``);
    empty when the sweep has not been predicted."""
    path = folder / RESULTS_FILE
    if path.is_symlink() or not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace")
    _, found, section = text.partition("\n" + PREDICTION_HEADING)
    if not found:
        return ""
    return render(PREDICTION_HEADING + section, f"/api/sweeps/{quote(folder.name)}/")


def list_sweeps(root: Path) -> list[dict[str, Any]]:
    """The workspace's sweeps, newest first, for the page's list of links."""
    if not root.is_dir():
        return []
    out = []
    for folder in root.iterdir():
        if folder.name.startswith(".") or not (folder / SWEEP_FILE).is_file():
            continue
        try:
            data = read_sweep_file(folder)
        except HTTPException:
            continue
        points = [p for p in data["points"] if isinstance(p, dict)]
        out.append(
            {
                "name": folder.name,
                "created": str(data.get("created") or ""),
                "points": len(points),
                "finished": sum(p.get("status") == "finished" for p in points),
            }
        )
    return sorted(out, key=lambda s: s["created"], reverse=True)


# --- one run's numbers ------------------------------------------------------------------


def _num(x: Any) -> float | None:
    """A finite number, else None: JSON has no NaN, and a diverged run logs some."""
    return float(x) if finite(x) else None


def downsample(n: int, limit: int = MAX_TRAIN_POINTS) -> list[int]:
    """Indices of at most ``limit`` of ``n`` points, evenly spread, first and last kept."""
    if n <= limit:
        return list(range(n))
    if limit < 2:
        return [n - 1]
    return sorted({round(i * (n - 1) / (limit - 1)) for i in range(limit)})


def roles_of(config: Any) -> dict[str, Any]:
    """Each eval set's role from a run's config, as its model's lineage reads it."""
    return Lineage(config=config).roles() if isinstance(config, dict) else {}


def run_numbers(run_dir: Path | None, roles: Mapping[str, str | None]) -> dict[str, Any]:
    """Train loss (downsampled), eval change vs step 0 per set, final losses and headline;
    empty for a run with no metrics yet (or no folder: ``run_dir`` None)."""
    train: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    if run_dir is not None and (run_dir / METRICS_FILE).is_file():
        # gone or damaged meanwhile: a run with no numbers
        with contextlib.suppress(OSError, UnicodeDecodeError):
            train, evals = read_metrics(run_dir / METRICS_FILE)
    keep = downsample(len(train))
    loss = {
        "step": [train[i]["step"] for i in keep],
        "loss": [_num(train[i].get("loss")) for i in keep],
        "points": len(train),
    }
    rows = eval_table(evals)
    base = {r["set"]: r["base_loss"] for r in rows}
    series: dict[str, dict[str, list[Any]]] = {}
    for rec in evals:  # the change against each set's first eval (step 0), as eval_table
        for name, m in rec["sets"].items():
            if name in base and isinstance(m, dict) and m.get("loss") is not None:
                s = series.setdefault(name, {"step": [], "rel_change": []})
                s["step"].append(rec["step"])
                s["rel_change"].append(rel_change(float(m["loss"]), base[name]))
    head = loss_headline(base, {r["set"]: r["final_loss"] for r in rows}, roles)
    by_role = role_series(series, roles)
    final = {
        r["set"]: {
            "role": roles.get(r["set"]),
            "base_loss": _num(r["base_loss"]),
            "final_loss": _num(r["final_loss"]),
            "rel_change": _num(r["rel_change"]),
            "base_step": r["base_step"],
            "step": r["final_step"],
        }
        for r in rows
    }
    return {
        "train": loss,
        "eval": series,
        "by_role": by_role,
        "final": final,
        "last_step": train[-1]["step"] if train else None,
        "domain_gain": _num(head.domain_gain),
        "general_regression": _num(head.general_regression),
        "domain_sets": head.domain,
        "general_sets": head.general,
    }


def role_series(
    series: Mapping[str, Mapping[str, list[Any]]], roles: Mapping[str, str | None]
) -> dict[str, dict[str, Any]]:
    """Each role's eval change vs step 0, the mean over the run's sets of that role at each
    eval step (as ``loss_headline`` averages them): two runs whose domain sets are named
    differently (``domain`` here, ``vi-man`` there) still overlay on one chart."""
    out: dict[str, dict[str, Any]] = {}
    for role in ROLES:
        sets = [n for n in series if roles.get(n) == role]
        if not sets:
            continue
        at: dict[int, list[Any]] = {}
        for name in sets:
            for step, rel in zip(series[name]["step"], series[name]["rel_change"], strict=True):
                at.setdefault(step, []).append(rel)
        steps = sorted(at)
        out[role] = {
            "sets": sets,
            "step": steps,
            "rel_change": [_num(mean(at[s])) for s in steps],
        }
    return out


def config_diff(configs: list[Any]) -> dict[str, list[Any]]:
    """Every config field (dotted, sources opened by index) whose value is not the same in
    all the compared runs, with each run's value in order (None where a run has none)."""
    flat = [dotted(c, lists=True) if isinstance(c, dict) else {} for c in configs]
    keys = dict.fromkeys(k for f in flat for k in f)
    out = {}
    for key in keys:
        values = [f.get(key) for f in flat]
        if any(v != values[0] for v in values[1:]):
            out[key] = values
    return out


def run_url(name: str) -> str:
    """The run's own page, its name quoted (a folder name may hold ``?`` or ``#``)."""
    return f"/runs/r/{quote(name, safe='')}"


def hub_run_view(run: dict[str, Any]) -> dict[str, Any]:
    """One hub run as the page shows it, linked to its own page."""
    return {
        "name": run["name"],
        "status": run["status"],
        "base": run.get("base"),
        "lr_fraction": run.get("lr_fraction"),
        "steps": run.get("steps"),
        "created": run.get("created"),
        "url": run_url(run["name"]),
        **run_numbers(Path(run["path"]), roles_of(run.get("config"))),
    }


# --- a sweep's points as a set of runs --------------------------------------------------


def point_view(
    folder: Path, point: dict[str, Any], hub_runs: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """One sweep point as a run: its folder's config and metrics, scored with the roles
    the sweep scored it with; linked to a run page when the hub knows its folder."""
    pid = str(point.get("id"))
    run_dir = folder / str(point.get("run_dir") or f"points/{pid}")
    inside = folder.resolve() in run_dir.resolve().parents
    config, _ = scan.read_config(run_dir) if inside else (None, None)
    fields = scan.config_fields(config, run_dir) if config else {}
    roles = point.get("roles") if isinstance(point.get("roles"), dict) else roles_of(config)
    known = hub_runs.get(str(run_dir.resolve())) if inside else None
    numbers = run_numbers(run_dir if inside else None, roles)
    return {
        "name": pid,
        "status": str(point.get("status") or "unknown"),
        "base": fields.get("base"),
        "lr_fraction": fields.get("lr_fraction"),
        "steps": fields.get("steps") or point.get("steps"),
        "created": point.get("started"),
        "values": point.get("values") if isinstance(point.get("values"), dict) else {},
        "url": run_url(known["name"]) if known else None,
        "config": config,
        "run_dir": run_dir if inside else None,
        **numbers,
    }


def sweep_view(studio: Studio, folder: Path) -> dict[str, Any]:
    """The sweep's points as the compared runs, with its recommendation and Pareto plot."""
    data = read_sweep_file(folder)
    points = [p for p in data["points"] if isinstance(p, dict)][:MAX_SWEEP_POINTS]
    hub_runs = studio.runs_by_path()
    spec = data.get("spec") if isinstance(data.get("spec"), dict) else {}
    grid = [a.get("key") for a in spec.get("grid") or [] if isinstance(a, dict)]
    rec = data.get("recommendation") if isinstance(data.get("recommendation"), dict) else {}
    pareto = (folder / PARETO_FILE).is_file() and not (folder / PARETO_FILE).is_symlink()
    runs = [point_view(folder, p, hub_runs) for p in points]
    configs = [r.pop("config") for r in runs]
    folders = {r["name"]: r.pop("run_dir") for r in runs}
    return {
        "sweep": {
            "name": folder.name,
            "created": data.get("created"),
            "updated": data.get("updated"),
            "config": spec.get("config"),
            "grid": grid,
            "max_regression": _num(data.get("max_regression")),
            "recommended": rec.get("id"),
            "reason": rec.get("reason"),
            "pareto_front": rec.get("pareto_front") or [],
            "pareto_url": f"/api/sweeps/{folder.name}/pareto.png" if pareto else None,
            "points": len(data["points"]),
            # `steep sweep --predict`: target, law, fit quality, points, the pick at the target
            "prediction": data.get("prediction")
            if isinstance(data.get("prediction"), dict)
            else None,
        },
        "runs": runs,
        "config_diff": config_diff(configs),
        "max_train_points": MAX_TRAIN_POINTS,
        "merges": run_merges(studio, folders),
    }
