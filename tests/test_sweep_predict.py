"""steep sweep --predict: the CPT law fitted on a sweep's evals, predictions, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from steep.cli import main
from steep.config import load_config
from steep.sweep.law import law
from steep.sweep.observe import curve
from steep.sweep.predict import predict_sweep, target_config
from tests.conftest import tiny_config

# the known law the synthetic points follow (normalised parameters, see steep.sweep.law)
TRUE = {
    "domain": np.array([0.6, 0.6, 0.05, 0.02, 0.05, 0.3]),
    "general": np.array([0.1, 0.6, 0.05, 0.01, 0.15, 0.2]),
}
BASE = {"domain": 4.0, "general": 3.0}
LRS = ["0.1", "0.3"]
SHARES = ["0.2", "0.4", "0.6", "0.8"]
STEPS, EVERY, BATCH = 64, 8, 256
SCALE = 20.0  # areas are normalised by this in the synthetic truth


def _raw(tmp: Path) -> dict:
    return {
        "run": {"name": "synth", "seed": 0},
        "model": {"base": str(tmp / "base"), "base_max_lr": 1e-3},
        "data": {
            "seq_len": 64,
            "sources": [
                {"name": "domain", "paths": [str(tmp / "d.txt")], "heldout_fraction": 0.1},
                {"name": "general", "paths": [str(tmp / "g.txt")], "heldout_fraction": 0.1},
            ],
        },
        "train": {"steps": STEPS, "global_batch_tokens": BATCH, "warmup_steps": 4},
        "eval": {"every_steps": EVERY},
    }


def true_losses(cfg, steps, noise=0.0, rng=None) -> dict[str, np.ndarray]:
    c = curve(cfg)
    out = {}
    for role in ("domain", "general"):
        a = c.areas(role, steps)
        clean = law(TRUE[role], np.full(len(steps), BASE[role]), a, SCALE)
        out[role] = clean * (1 + (noise * rng.standard_normal(len(steps)) if noise else 0))
    return out


def synthetic_sweep(tmp: Path, lrs=LRS, shares=SHARES, noise=0.002, broken=()) -> Path:
    """A finished sweep folder whose evals follow ``TRUE``: sweep.json, each point's
    config.yaml and metrics.jsonl (step-0 baseline, an eval every EVERY steps)."""
    root = tmp / "sweep"
    base_cfg = tmp / "base.yaml"
    base_cfg.write_text(yaml.safe_dump(_raw(tmp)))
    rng = np.random.default_rng(1)
    points = []
    for lr in lrs:
        for share in shares:
            pid = f"lr_fraction={lr},domain_share={share}"
            run = root / "points" / pid
            run.mkdir(parents=True)
            sets = [f"train.lr_fraction={lr}", f"data.domain_share={share}"]
            cfg = load_config(base_cfg, sets)
            (run / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
            steps = list(range(EVERY, STEPS + 1, EVERY))
            losses = true_losses(cfg, steps, noise, rng)
            recs = [{"kind": "eval", "step": 0, "tokens": 0, "sets": _sets(BASE)}]
            for i, s in enumerate(steps):
                got = {r: float(losses[r][i]) for r in losses}
                if pid in broken and i == len(steps) - 1:
                    got["domain"] = float("nan")
                recs.append({"kind": "eval", "step": s, "tokens": s * BATCH, "sets": _sets(got)})
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
            points.append(
                {
                    "id": pid,
                    "values": {"train.lr_fraction": lr, "data.domain_share": share},
                    "overrides": sets,
                    "steps": STEPS,
                    "roles": {"domain": "domain", "general": "general"},
                    "run_dir": f"points/{pid}",
                    "log": f"logs/{pid}.log",
                    "status": "finished",
                }
            )
    spec = {
        "config": str(base_cfg),
        "set": [],
        "grid": [
            {"key": "train.lr_fraction", "values": list(lrs)},
            {"key": "data.domain_share", "values": list(shares)},
        ],
        "budget_tokens": STEPS * BATCH,
    }
    data = {
        "format": "steep-sweep",
        "version": 1,
        "spec": spec,
        "max_regression": 0.01,
        "points": points,
        "recommendation": None,
    }
    (root / "sweep.json").write_text(json.dumps(data))
    (root / "results.md").write_text("# steep sweep\n")
    return root


def _sets(losses: dict[str, float]) -> dict:
    return {k: {"loss": v} for k, v in losses.items()}


TARGET = 4 * STEPS * BATCH


def _truth(root: Path, pid: str, tokens: int) -> dict[str, float]:
    cfg = target_config(load_config(root / "points" / pid / "config.yaml"), tokens)
    return {r: float(v[0]) for r, v in true_losses(cfg, [cfg.train.steps]).items()}


def test_fit_recovers_the_known_law_and_intervals_cover(tmp_path):
    root = synthetic_sweep(tmp_path)
    pred, _ = predict_sweep(root, TARGET, 0.02, n_boot=30)
    assert pred["fit"]["r2"] > 0.99 and pred["fit"]["holdout_error"] < 0.005
    assert pred["extrapolation_factor"] == pytest.approx(4.0)
    grid = [p for p in pred["points"] if p["grid_point"]]
    assert len(grid) == 8 and len(pred["points"]) > 8  # mixes between grid values too
    errors, inside = [], 0
    for p in grid:
        truth = _truth(root, p["id"], TARGET)
        for role in ("domain", "general"):
            got = p[role]
            errors.append(abs(got["loss"] - truth[role]) / truth[role])
            inside += got["lo"] <= truth[role] <= got["hi"]
    assert np.median(errors) < 0.005 and max(errors) < 0.02
    assert inside >= 0.75 * len(errors)
    # the pick: the most predicted gain among candidates whose regression bound fits
    rec = pred["recommended"]
    ok = [p for p in pred["points"] if p["intervals"]["general_regression"]["hi"] <= 0.02]
    assert rec["domain_gain"] == max(p["domain_gain"] for p in ok)
    assert rec["intervals"]["general_regression"]["hi"] <= 0.02
    assert set(rec["overrides"]) == {"train.lr_fraction", "data.domain_share"}
    saved = json.loads((root / "sweep.json").read_text())["prediction"]
    assert saved["recommended"]["id"] == rec["id"] and saved["target_tokens"] == TARGET


def test_cli_predict_writes_section_plot_and_refuses_far_targets(tmp_path, capsys):
    root = synthetic_sweep(tmp_path)
    assert main(["sweep", "--predict", str(root), "--at", str(64 * STEPS * BATCH)]) == 2
    assert "64x the sweep's 16,384" in capsys.readouterr().err
    new = ["sweep", str(tmp_path / "base.yaml"), "--grid", "train.lr_fraction=0.1,0.3"]
    assert (
        main([*new, "--budget-tokens", "1024", "--predict-at", "1M", "--out", str(tmp_path / "x")])
        == 2
    )
    assert "977x --budget-tokens 1,024" in capsys.readouterr().err  # before any run
    assert not (tmp_path / "x").exists()
    assert (
        main(
            [
                "sweep",
                "--predict",
                str(root),
                "--at",
                "8K",
                "--max-regression",
                "2%",
                "--bootstrap",
                "8",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "interpolating" in out and "Tissue et al. 2024" in out
    text = (root / "results.md").read_text()
    assert text.count("## Prediction") == 1 and "![Prediction](prediction.png)" in text
    assert (root / "prediction.png").stat().st_size > 10_000
    assert (
        main(["sweep", "--predict", str(root), "--at", "64K", "--bootstrap", "8"]) == 0
    )  # replaces the section
    text = (root / "results.md").read_text()
    assert text.count("## Prediction") == 1 and "64,000 tokens" in text
    capsys.readouterr()
    assert main(["sweep", "--predict", str(root), "--at", "1M", "--force", "--bootstrap", "8"]) == 0
    assert "61.04x the sweep's" in capsys.readouterr().out


def test_one_mix_value_and_broken_points_are_said(tmp_path):
    root = synthetic_sweep(tmp_path, shares=["0.5"], broken={"lr_fraction=0.3,domain_share=0.5"})
    pred, _ = predict_sweep(root, TARGET, 0.05, n_boot=10)
    assert any("one mix value" in w for w in pred["warnings"])
    assert any("only 1 usable point" in w for w in pred["warnings"])
    assert pred["left_out"] == {"lr_fraction=0.3,domain_share=0.5": "non-finite loss on domain"}
    assert [p["id"] for p in pred["points"]] == ["lr_fraction=0.1,domain_share=0.5"]


def test_points_with_different_eval_sets_are_refused(tmp_path, capsys):
    root = synthetic_sweep(tmp_path, shares=["0.4", "0.6"])
    run = root / "points" / "lr_fraction=0.3,domain_share=0.6"
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        r["sets"]["extra"] = r["sets"].pop("general")
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    data = json.loads((root / "sweep.json").read_text())
    data["points"][-1]["roles"] = {"domain": "domain", "extra": "general"}
    (root / "sweep.json").write_text(json.dumps(data))
    assert main(["sweep", "--predict", str(root), "--at", "64K"]) == 2
    err = capsys.readouterr().err
    assert "different eval sets" in err and "extra (general)" in err


def test_real_tiny_sweep_with_predict_at(tmp_path, corpora, tiny_model, capsys):
    """A real `steep sweep` of a tiny model (two LRs, one mix), then the fit at 4x."""
    raw = tiny_config(tmp_path, corpora, tiny_model)
    del raw["run"]["out_dir"]
    raw["train"].update(threads=1, warmup_steps=1)
    raw["eval"]["every_steps"] = 2
    cfg = tmp_path / "base.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "sweep"
    argv = ["sweep", str(cfg), "--grid", "train.lr_fraction=0.1,1.0", "--budget-tokens", "2048",
            "--out", str(out), "--predict-at", "8192", "--max-regression", "50%",
            "--bootstrap", "8"]  # fmt: skip
    assert main(argv) == 0
    assert "prediction at 8,192 tokens" in capsys.readouterr().out
    pred = json.loads((out / "sweep.json").read_text())["prediction"]
    assert pred["target_tokens"] == 8192 and pred["extrapolation_factor"] == pytest.approx(4)
    assert pred["fit"]["points"] == 2 and pred["fit"]["evals"] == 8
    assert [p["id"] for p in pred["points"]] == ["lr_fraction=0.1", "lr_fraction=1.0"]
    for p in pred["points"]:
        for role in ("domain", "general"):
            assert p[role]["lo"] <= p[role]["loss"] <= p[role]["hi"]
    assert any("one mix value" in w for w in pred["warnings"])
    assert "## Prediction" in (out / "results.md").read_text()


def test_plan_shows_the_sweeps_prediction_for_a_config(tmp_path, tiny_model, capsys):
    root = synthetic_sweep(tmp_path)
    pred, _ = predict_sweep(root, TARGET, 0.02, n_boot=10)
    pid = "lr_fraction=0.3,domain_share=0.6"
    cfg = root / "points" / pid / "config.yaml"
    sets = ["--set", f"model.base={tiny_model}", "--set", f"train.steps={4 * STEPS}"]
    assert main(["plan", str(cfg), *sets, "--gpu", "H100", "--sweep", str(root)]) == 0
    text = capsys.readouterr().out
    assert "days" in text or "step time" in text
    assert "domain gain" in text and "4.0x the sweep's" in text
    assert main(["plan", str(cfg), *sets, "--gpu", "H100", "--sweep", str(root), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["prediction"]
    want = next(p for p in pred["points"] if p["id"] == pid)
    assert got["domain_gain"] == pytest.approx(want["domain_gain"])
    for k in ("domain_gain", "general_regression"):
        assert got["intervals"][k] == pytest.approx(want["intervals"][k])
    assert main(["plan", str(cfg), *sets, "--sweep", str(tmp_path)]) == 2  # no fit there
    assert "has no fitted law" in capsys.readouterr().err


def test_studio_sweep_view_shows_the_prediction(tmp_path, _steep_home):
    from fastapi.testclient import TestClient

    from steep.studio.app import create_app
    from steep.studio.state import Settings

    synthetic_sweep(tmp_path)
    root = _steep_home / "sweeps" / "syn"
    root.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "sweep").rename(root)
    client = TestClient(create_app(Settings(home=_steep_home, run_jobs=False)))
    before = client.get("/compare?sweep=syn").text
    assert 'id="sweep-prediction"' not in before
    assert client.get("/api/sweeps/syn/prediction.png").status_code == 404
    assert main(["sweep", "--predict", str(root), "--at", "64K", "--bootstrap", "8"]) == 0
    rec = json.loads((root / "sweep.json").read_text())["prediction"]["recommended"]
    page = client.get("/compare?sweep=syn").text
    assert 'id="sweep-prediction"' in page and "Tissue et al. 2024" in page
    assert 'src="/api/sweeps/syn/prediction.png"' in page
    assert ", ".join(f"{k}={v}" for k, v in rec["overrides"].items()) in page
    png = client.get("/api/sweeps/syn/prediction.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    api = client.get("/api/compare?sweep=syn").json()["sweep"]["prediction"]
    assert api["recommended"]["id"] == rec["id"] and api["target_tokens"] == 64_000
    assert client.get("/api/sweeps/syn/sweep.json").status_code == 404  # plots only
