"""Studio Compare page: runs overlaid, their headline numbers from steep's one scorer.

Run folders are written by hand (config.yaml, metrics.jsonl through the same record
builder training uses, status.json), which is all the hub needs to list a run, so the
test takes a second; the browser test trains a real run.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")

from fastapi.testclient import TestClient  # noqa: E402

from steep.artifacts.metrics import eval_record, read_metrics  # noqa: E402
from steep.artifacts.runstatus import write_status  # noqa: E402
from steep.artifacts.scores import loss_headline, rel_change  # noqa: E402
from steep.studio.app import Settings, create_app  # noqa: E402
from steep.studio.routes.compare import MAX_RUNS, MAX_TRAIN_POINTS, downsample  # noqa: E402
from steep.train.report import eval_table  # noqa: E402

EVIL = '<img src=x onerror="alert(1)">'  # a folder name is the user's: it must stay text
ROLES = {"domain": "domain", "general": "general"}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def config(name: str, steps: int, lr_fraction: float) -> dict:
    src = {"weight": 1, "heldout_fraction": 0.1, "paths": ["x.jsonl"]}
    return {
        "run": {"name": name},
        "model": {"base": "tiny-base"},
        "data": {"sources": [{"name": "domain", **src}, {"name": "general", **src}]},
        "train": {"steps": steps, "lr_fraction": lr_fraction},
    }


def write_run(folder: Path, steps: int, lr_fraction: float, drop: float, rise: float) -> Path:
    """A finished run: a train record per step, evals at 0, steps/2 and steps."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config(folder.name, steps, lr_fraction)))
    base = {"domain": 3.0, "general": 2.5}
    lines = [eval_record(0, 0, base, base)]
    for step in range(1, steps + 1):
        loss = math.nan if step == 2 else 4.0 - step / steps  # a diverged step: JSON has no NaN
        lines.append({"kind": "train", "step": step, "tokens": 256 * step, "loss": loss})
        if step in (steps // 2, steps):
            f = step / steps
            losses = {"domain": 3.0 * (1 - drop * f), "general": 2.5 * (1 + rise * f)}
            lines.append(eval_record(step, 256 * step, losses, base))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    write_status(folder, "done")
    return folder


@pytest.fixture
def home(_steep_home: Path) -> Path:
    runs = _steep_home / "runs"
    write_run(runs / "alpha", 1200, 0.1, drop=0.2, rise=0.01)  # long: downsampled
    write_run(runs / "beta", 6, 0.3, drop=0.3, rise=0.04)
    write_run(runs / EVIL, 4, 0.5, drop=0.1, rise=0.0)
    return _steep_home


@pytest.fixture
def client(home: Path) -> TestClient:
    return TestClient(create_app(Settings(home=home, run_jobs=False)))


def expected(run_dir: Path) -> dict:
    """What steep's scorer says of a run (the sweep's score_point steps)."""
    _, evals = read_metrics(run_dir / "metrics.jsonl")
    rows = eval_table(evals)
    head = loss_headline(
        {r["set"]: r["base_loss"] for r in rows}, {r["set"]: r["final_loss"] for r in rows}, ROLES
    )
    return {"head": head, "rows": {r["set"]: r for r in rows}}


def test_compare_api_numbers_are_the_scorers(client: TestClient, home: Path) -> None:
    r = client.get("/api/compare?runs=alpha,beta")
    assert r.status_code == 200, r.text
    runs = {x["name"]: x for x in r.json()["runs"]}
    assert list(runs) == ["alpha", "beta"]  # the order asked for
    for name in runs:
        got, want = runs[name], expected(home / "runs" / name)
        assert got["domain_gain"] == pytest.approx(want["head"].domain_gain)
        assert got["general_regression"] == pytest.approx(want["head"].general_regression)
        assert got["domain_sets"] == ["domain"] and got["general_sets"] == ["general"]
        for s, row in want["rows"].items():
            assert got["final"][s]["final_loss"] == pytest.approx(row["final_loss"])
            assert got["final"][s]["rel_change"] == pytest.approx(row["rel_change"])
            series = got["eval"][s]
            assert series["rel_change"][0] == 0.0 and series["step"][0] == 0
            assert series["rel_change"][-1] == pytest.approx(row["rel_change"])  # chart = table
        assert got["url"] == f"/runs/r/{name}" and got["status"] == "done"
    beta = runs["beta"]
    assert (beta["lr_fraction"], beta["steps"], beta["base"]) == (0.3, 6, "tiny-base")
    # by hand: the domain loss fell 30%, the general rose 4%
    assert beta["domain_gain"] == pytest.approx(0.3)
    assert beta["general_regression"] == pytest.approx(0.04)
    assert beta["final"]["domain"]["rel_change"] == pytest.approx(rel_change(2.1, 3.0))
    assert beta["train"]["loss"][1] is None  # the NaN step is a gap, and the answer is JSON


def test_train_loss_is_downsampled_keeping_first_and_last(client: TestClient) -> None:
    alpha = client.get("/api/compare?runs=alpha").json()["runs"][0]["train"]
    assert alpha["points"] == 1200
    assert 2 <= len(alpha["step"]) <= MAX_TRAIN_POINTS == len(alpha["loss"])
    assert alpha["step"][0] == 1 and alpha["step"][-1] == 1200
    assert alpha["loss"][-1] == pytest.approx(3.0)
    assert alpha["step"] == sorted(set(alpha["step"]))
    beta = client.get("/api/compare?runs=beta").json()["runs"][0]["train"]
    assert beta["step"] == [1, 2, 3, 4, 5, 6]  # short runs keep every point
    for n in (1, 2, 499, 500, 501, 10_000):
        idx = downsample(n, 500)
        assert idx[0] == 0 and idx[-1] == n - 1 and len(idx) == min(n, 500)


def test_run_names_unknown_too_many_and_both_spellings(client: TestClient) -> None:
    r = client.get("/api/compare?runs=alpha,nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    many = ",".join(f"r{i}" for i in range(MAX_RUNS + 1))
    r = client.get(f"/api/compare?runs={many}")
    assert r.status_code == 400 and str(MAX_RUNS) in r.json()["error"]
    assert client.get("/api/compare").status_code == 400
    one = client.get("/api/compare", params=[("run", "alpha"), ("run", "beta"), ("runs", "alpha")])
    assert [x["name"] for x in one.json()["runs"]] == ["alpha", "beta"]  # each once
    evil = client.get("/api/compare", params={"run": EVIL}).json()["runs"][0]
    assert evil["name"] == EVIL and evil["url"].startswith("/runs/r/%3Cimg")


def test_page_lists_runs_pre_checked_and_escapes_names(client: TestClient) -> None:
    page = client.get("/compare?runs=alpha,beta")
    assert page.status_code == 200
    html = page.text
    assert 'data-page="compare"' in html and '<script src="/static/compare.js">' in html
    assert 'href="/compare"' in html  # the nav link
    assert 'data-api="/api/compare?run=alpha&amp;run=beta"' in html
    for name in ("alpha", "beta"):
        assert f'value="{name}" aria-label="compare {name}" checked' in html
    assert EVIL not in html and "&lt;img src=x" in html  # autoescaped
    evil_box = re.search(r'<input type="checkbox" name="run" value="&lt;img[^>]*>', html)
    assert evil_box and "checked" not in evil_box.group(0)
    bare = client.get("/compare").text
    assert 'data-api=""' in bare and "checked" not in bare
    js = client.get("/static/compare.js")
    assert js.status_code == 200 and "innerHTML" not in js.text  # data goes in as text only


# --- a sweep's points ---------------------------------------------------------------------


def write_sweep(home: Path, name: str = "sw-1", pareto: bool = True) -> Path:
    folder = home / "sweeps" / name
    points = []
    for pid, lr, drop, rise in (("p1", 0.1, 0.1, 0.002), ("p2", 0.3, 0.25, 0.02)):
        run_dir = folder / "points" / pid
        write_run(run_dir, 4, lr, drop=drop, rise=rise)
        points.append(
            {
                "id": pid,
                "values": {"train.lr_fraction": str(lr)},
                "steps": 4,
                "roles": ROLES,
                "run_dir": f"points/{pid}",
                "log": f"logs/{pid}.log",
                "status": "finished",
            }
        )
    points.append({"id": "p3", "values": {}, "steps": 4, "roles": ROLES,
                   "run_dir": "points/p3", "status": "pending"})  # fmt: skip
    data = {
        "format": "steep-sweep",
        "version": 1,
        "created": "2025-01-01T00:00:00+00:00",
        "spec": {"config": "cfg.yaml", "set": [], "grid": [{"key": "train.lr_fraction"}]},
        "max_regression": 0.01,
        "points": points,
        "recommendation": {"id": "p1", "reason": "p1: within budget", "pareto_front": ["p1"]},
    }
    (folder / "sweep.json").write_text(json.dumps(data))
    if pareto:
        (folder / "pareto.png").write_bytes(PNG)
    return folder


def test_sweep_points_show_as_runs_with_their_pareto_plot(client: TestClient, home: Path) -> None:
    folder = write_sweep(home)
    r = client.get("/api/compare?sweep=sw-1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["name"] for x in body["runs"]] == ["p1", "p2", "p3"]
    sweep = body["sweep"]
    assert sweep["recommended"] == "p1" and sweep["pareto_url"] == "/api/sweeps/sw-1/pareto.png"
    for got in body["runs"][:2]:
        want = expected(folder / "points" / got["name"])["head"]
        assert got["domain_gain"] == pytest.approx(want.domain_gain)
        assert got["general_regression"] == pytest.approx(want.general_regression)
        assert got["url"] is None  # the hub does not list sweep points: no run page
    p3 = body["runs"][2]
    assert p3["status"] == "pending" and p3["train"]["step"] == [] and p3["domain_gain"] is None
    assert body["runs"][1]["lr_fraction"] == 0.3

    png = client.get("/api/sweeps/sw-1/pareto.png")
    assert png.status_code == 200 and png.content == PNG
    assert png.headers["content-type"] == "image/png"

    page = client.get("/compare?sweep=sw-1")
    assert page.status_code == 200 and 'data-api="/api/compare?sweep=sw-1"' in page.text
    listing = client.get("/compare").text
    assert 'href="/compare?sweep=sw-1"' in listing and "2 of 3 points finished" in listing


def test_sweep_names_cannot_leave_the_sweeps_folder(
    client: TestClient, home: Path, tmp_path: Path
) -> None:
    write_sweep(home)
    write_sweep(home, "no-plot", pareto=False)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sweep.json").write_text(json.dumps({"format": "steep-sweep", "points": []}))
    (outside / "pareto.png").write_bytes(PNG)
    os.symlink(outside, home / "sweeps" / "linked")
    (home / "sweeps" / "sw-1" / "pareto.png").unlink()
    os.symlink(outside / "pareto.png", home / "sweeps" / "sw-1" / "pareto.png")

    for bad in ("../x", "..", "a/b", ".hidden", "..%2Fruns"):
        assert client.get("/api/compare", params={"sweep": bad}).status_code == 400, bad
        assert client.get("/compare", params={"sweep": bad}).status_code == 400, bad
    for url in ("/api/sweeps/..%2Fx/pareto.png", "/api/sweeps/%2E%2E/pareto.png"):
        assert client.get(url).status_code in (400, 404), url
    assert client.get("/api/sweeps/nope/pareto.png").status_code == 404
    assert client.get("/api/sweeps/no-plot/pareto.png").status_code == 404
    assert client.get("/api/sweeps/linked/pareto.png").status_code == 404  # folder links out
    assert client.get("/api/compare?sweep=linked").status_code == 404
    assert client.get("/api/sweeps/sw-1/pareto.png").status_code == 404  # file links out
    assert client.get("/api/compare?sweep=no-plot").json()["sweep"]["pareto_url"] is None


# --- runs whose eval sets are named differently (#30 finding 9) ---------------------------


def write_named_run(folder: Path, domain: str, general: str, lr_fraction: float) -> Path:
    """A run whose sources carry their roles under their own names (vi-man, en-debref)."""
    folder.mkdir(parents=True)
    src = {"weight": 1, "heldout_fraction": 0.1, "paths": ["x.jsonl"]}
    cfg = config(folder.name, 4, lr_fraction)
    cfg["data"]["sources"] = [
        {"name": domain, "role": "domain", **src},
        {"name": general, "role": "general", **src},
    ]
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    base = {domain: 3.0, general: 2.0}
    after = {domain: 2.4, general: 2.1}
    lines = [eval_record(0, 0, base, base), eval_record(4, 1024, after, base)]
    lines += [{"kind": "train", "step": s, "tokens": 256 * s, "loss": 3.0} for s in range(1, 5)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    write_status(folder, "done")
    return folder


def test_eval_curves_align_by_role_and_the_config_diff_shows(client: TestClient, home: Path):
    write_named_run(home / "runs" / "demo", "vi-man", "en-debref", 0.2)
    body = client.get("/api/compare?runs=beta,demo").json()
    beta, demo = body["runs"]
    for run, domain_set in ((beta, "domain"), (demo, "vi-man")):
        dom = run["by_role"]["domain"]
        assert dom["sets"] == [domain_set] and dom["step"][0] == 0
        assert dom["rel_change"][-1] == pytest.approx(-run["domain_gain"])  # chart = table
        assert run["by_role"]["general"]["rel_change"][-1] == pytest.approx(
            run["general_regression"]
        )
    assert demo["by_role"]["domain"]["rel_change"] == [0.0, pytest.approx(-0.2)]
    diff = body["config_diff"]
    assert diff["train.lr_fraction"] == [0.3, 0.2] and diff["train.steps"] == [6, 4]
    assert diff["data.sources.0.name"] == ["domain", "vi-man"]
    assert diff["data.sources.0.role"] == [None, "domain"]
    assert "model.base" not in diff and "data.sources.0.weight" not in diff  # the same
    sweep = client.get(f"/api/compare?sweep={write_sweep(home).name}").json()
    assert sweep["config_diff"]["train.lr_fraction"] == [0.1, 0.3, None]
    assert "config" not in sweep["runs"][0]


def test_merge_curves_join_their_run_on_the_tradeoff_data(client: TestClient, home: Path) -> None:
    """A studio merge job's curve of beta's model and a saved merge of it (#33): the API
    gives beta's curve (each alpha once, the saved one named); alpha's run has none."""
    from steep.artifacts.lineage import Lineage, write_lineage

    model = home / "runs" / "beta" / "model"
    curve = [{"alpha": a, "domain_gain": 0.3 * a, "general_regression": 0.04 * a * a}
             for a in (0.0, 0.5, 1.0)]  # fmt: skip
    job = home / "studio" / "model-jobs" / "3" / "out"
    job.mkdir(parents=True)
    (job / "merge.json").write_text(
        json.dumps({"method": "linear", "model": str(model), "curve": curve})
    )
    saved = home / "models" / "b-quarter"
    saved.mkdir(parents=True)
    (saved / "config.json").write_text("{}")  # the hub lists a folder with an HF config
    merge = {"method": "linear", "alpha": 0.25, "domain_gain": 0.07, "general_regression": 0.002,
             "parents": {"base": "tiny-base", "model": str(model)}}  # fmt: skip
    write_lineage(saved, Lineage(kind="merge", merge=merge))

    merges = client.get("/api/compare?runs=alpha,beta").json()["merges"]
    assert [(m["run"], m["method"], m["key"]) for m in merges] == [("beta", "linear", "alpha")]
    points = merges[0]["points"]
    assert [(p["x"], p["saved"]) for p in points] == [
        (0.0, []), (0.25, ["b-quarter"]), (0.5, []), (1.0, [])
    ]  # fmt: skip
    assert points[1]["domain_gain"] == 0.07 and points[3]["general_regression"] == 0.04
    assert client.get("/api/compare?runs=alpha").json()["merges"] == []

    # a sweep point's model merged: its curve beside the sweep's points
    folder = write_sweep(home)
    job = home / "studio" / "model-jobs" / "4" / "out"
    job.mkdir(parents=True)
    p2 = {"method": "linear", "model": str(folder / "points" / "p2" / "model"), "curve": curve}
    (job / "merge.json").write_text(json.dumps(p2))
    merges = client.get("/api/compare?sweep=sw-1").json()["merges"]
    assert [(m["run"], [p["x"] for p in m["points"]]) for m in merges] == [("p2", [0.0, 0.5, 1.0])]
