"""steep sweep --predict: the CPT law fitted on a sweep's evals, predictions, bad input."""

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from steep.cli import main
from steep.config import load_config
from steep.sweep.law import Areas, law
from steep.sweep.observe import curve
from steep.sweep.predict import predict_sweep, target_config
from steep.sweep.predreport import lines
from steep.sweep.size import point_params
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


def true_losses(cfg, steps, noise=0.0, rng=None, truth=None, size=1.0) -> dict[str, np.ndarray]:
    c = curve(cfg)
    out = {}
    for role in ("domain", "general"):
        a = c.areas(role, steps)
        a = Areas(a.own, a.other, a.anneal, size)
        clean = law((truth or TRUE)[role], np.full(len(steps), BASE[role]), a, SCALE)
        out[role] = clean * (1 + (noise * rng.standard_normal(len(steps)) if noise else 0))
    return out


SIZE_KEY = "model.random_init.hidden_size"


def _random_init(raw: dict) -> dict:
    """The synthetic config with a tiny random-init Llama (its size counted, not trained)."""
    raw["model"] = {
        "random_init": {"model_type": "llama", "hidden_size": 16, "intermediate_size": 32,
                        "num_hidden_layers": 2, "num_attention_heads": 2,
                        "num_key_value_heads": 1, "max_position_embeddings": 128},
        "tokenizer": "bytes",
        "base_max_lr": 1e-3,
    }  # fmt: skip
    return raw


def synthetic_sweep(
    tmp: Path, lrs=LRS, shares=SHARES, noise=0.002, broken=(), sizes=(), truth=None
) -> Path:
    """A finished sweep folder whose evals follow ``TRUE`` (or ``truth``): sweep.json, each
    point's config.yaml and metrics.jsonl (step-0 baseline, an eval every EVERY steps).
    ``sizes``: hidden sizes of a random-init model as a third grid axis."""
    root = tmp / "sweep"
    base_cfg = tmp / "base.yaml"
    base_cfg.write_text(yaml.safe_dump(_random_init(_raw(tmp)) if sizes else _raw(tmp)))
    rng = np.random.default_rng(1)
    points = []
    axes = [("train.lr_fraction", lrs), ("data.domain_share", shares)]
    axes += [(SIZE_KEY, sizes)] if sizes else []
    ref = max((_params(base_cfg, h) for h in sizes), default=1)
    for combo in itertools.product(*(v for _, v in axes)):
        values = {k: v for (k, _), v in zip(axes, combo, strict=True)}
        pid = ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in values.items())
        run = root / "points" / pid
        run.mkdir(parents=True)
        sets = [f"{k}={v}" for k, v in values.items()]
        cfg = load_config(base_cfg, sets)
        (run / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        steps = list(range(EVERY, STEPS + 1, EVERY))
        size = _params(base_cfg, values[SIZE_KEY]) / ref if sizes else 1.0
        losses = true_losses(cfg, steps, noise, rng, truth, size)
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
                "values": values,
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
        "grid": [{"key": k, "values": list(v)} for k, v in axes],
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


def _params(base_cfg: Path, hidden: str) -> int:
    return point_params(load_config(base_cfg, [f"{SIZE_KEY}={hidden}"]))


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


def test_failed_and_non_finite_points_are_left_out_and_named(tmp_path, capsys):
    """A failed point and one with a NaN eval: the fit goes on without them and the output
    names each with its reason (not a silent drop)."""
    root = synthetic_sweep(tmp_path, broken={"lr_fraction=0.3,domain_share=0.8"})
    data = json.loads((root / "sweep.json").read_text())
    data["points"][0]["status"] = "failed"
    (root / "sweep.json").write_text(json.dumps(data))
    assert main(["sweep", "--predict", str(root), "--at", "64K", "--bootstrap", "4"]) == 0
    out = capsys.readouterr().out
    assert "lr_fraction=0.1,domain_share=0.2 (status failed)" in out
    assert "lr_fraction=0.3,domain_share=0.8 (non-finite loss on domain)" in out
    pred = json.loads((root / "sweep.json").read_text())["prediction"]
    assert pred["fit"]["points"] == 6 and set(pred["left_out"]) == {
        "lr_fraction=0.1,domain_share=0.2",
        "lr_fraction=0.3,domain_share=0.8",
    }
    assert "status failed" in (root / "results.md").read_text()


# a known law whose learning amplitude grows with model size: D-CPT's N term (law.py)
SIZED = {r: np.concatenate([TRUE[r], [0.6, 0.7]]) for r in TRUE}
HIDDEN = ["16", "32", "64"]


def test_three_sizes_fit_the_size_term_and_predict_a_larger_model(tmp_path, capsys):
    root = synthetic_sweep(tmp_path, lrs=["0.3"], shares=["0.3", "0.7"], sizes=HIDDEN,
                           truth=SIZED)  # fmt: skip
    base_cfg = tmp_path / "base.yaml"
    ref, big = _params(base_cfg, "64"), _params(base_cfg, "128")
    pred, fitted = predict_sweep(root, TARGET, 0.05, n_boot=10, at_size=big)
    assert pred["size"] == {
        "fitted": True,
        "params_seen": sorted(_params(base_cfg, h) for h in HIDDEN),
        "target_params": big,
    }
    assert any("size term fitted (D-CPT Law" in n for n in pred["notes"])
    assert [p["id"] for p in pred["points"] if p["grid_point"]] == [
        f"lr_fraction=0.3,domain_share={s},params={big}" for s in ("0.3", "0.7")
    ]
    for p in pred["points"]:
        assert SIZE_KEY not in p["overrides"] and p["params"] == big
        if not p["grid_point"]:
            continue
        cfg = target_config(load_config(root / "points" / f"lr_fraction=0.3,domain_share="
                                        f"{p['overrides']['data.domain_share']},hidden_size=64"
                                        / "config.yaml"), TARGET)  # fmt: skip
        truth = true_losses(cfg, [cfg.train.steps], truth=SIZED, size=big / ref)
        for role in ("domain", "general"):
            want = float(truth[role][0])
            assert abs(p[role]["loss"] - want) / want < 0.01
    # the larger model learns more than the largest swept one: the size term carries over
    at_ref, _ = predict_sweep(root, TARGET, 0.05, n_boot=4, at_size=ref)
    gain = {p["overrides"]["data.domain_share"]: p["domain_gain"] for p in at_ref["points"]}
    assert all(p["domain_gain"] > gain[p["overrides"]["data.domain_share"]]
               for p in pred["points"])  # fmt: skip
    # the CLI takes the size; a plain prediction keeps every swept size as a candidate
    argv = ["sweep", "--predict", str(root), "--at", str(TARGET), "--bootstrap", "4"]
    assert main([*argv, "--at-size", str(big)]) == 0
    assert f"predicted at {big:,} parameters" in capsys.readouterr().out
    assert main(argv) == 0
    pred = json.loads((root / "sweep.json").read_text())["prediction"]
    assert len({p["params"] for p in pred["points"]}) == 3


def test_fewer_than_three_sizes_refuse_another_size_and_one_size_is_said(tmp_path, capsys):
    two = tmp_path / "two"
    two.mkdir()
    root = synthetic_sweep(two, lrs=["0.3"], shares=["0.3", "0.7"], sizes=["16", "32"],
                           truth=SIZED)  # fmt: skip
    assert main(["sweep", "--predict", str(root), "--at", "64K", "--at-size", "1M"]) == 2
    err = capsys.readouterr().err
    assert "spans 2 model size(s)" in err and "at least 3" in err
    pred, _ = predict_sweep(synthetic_sweep(tmp_path, shares=["0.5"]), TARGET, 0.05, n_boot=4)
    assert pred["size"]["fitted"] is False
    assert "model size is held fixed" in pred["notes"][0]


def test_real_sweep_of_three_random_init_shapes_predicts_a_larger_one(tmp_path, corpora, capsys):
    """A real `steep sweep` over three random-init widths (a model.* grid key), a few steps
    each: the sizes are counted from the configs, the size term fitted, a wider model
    predicted."""
    raw = _random_init(tiny_config(tmp_path, corpora, tmp_path))
    del raw["run"]["out_dir"]
    raw["train"].update(steps=6, threads=1, warmup_steps=1)
    raw["eval"]["every_steps"] = 2
    cfg = tmp_path / "base.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    out = tmp_path / "sweep"
    big = _params(cfg, "48")
    argv = ["sweep", str(cfg), "--grid", f"{SIZE_KEY}=8,16,32", "--out", str(out),
            "--predict-at", "4096", "--at-size", str(big), "--max-regression", "50%",
            "--bootstrap", "4"]  # fmt: skip
    assert main(argv) == 0
    assert f"predicted at {big:,} parameters" in capsys.readouterr().out
    pred = json.loads((out / "sweep.json").read_text())["prediction"]
    assert pred["size"]["fitted"] and len(pred["size"]["params_seen"]) == 3
    assert [p["id"] for p in pred["points"]] == [f"params={big}"]
    for role in ("domain", "general"):
        p = pred["points"][0][role]
        assert p["lo"] <= p["loss"] <= p["hi"] and np.isfinite(p["loss"])


def test_intervals_carry_the_laws_own_error_grown_with_the_factor(tmp_path):
    """Noisy evals: the held-out last evals' error, grown by log(factor) / log(span), is
    part of every interval, so an interval at 8x is wider than at 2x; a pick whose bound
    cannot fit the budget is made on its predicted regression and said so."""
    root = synthetic_sweep(tmp_path, noise=0.01)
    widths, errs = {}, {}
    for f in (2, 8):
        pred, fitted = predict_sweep(root, f * STEPS * BATCH, 0.02, n_boot=10)
        held = np.abs([e for d in pred["fit"]["holdout"].values() for e in d.values()])
        span = pred["fit"]["holdout_span"]
        assert span == pytest.approx(STEPS / (STEPS - EVERY))
        assert pred["fit"]["model_error"] == pytest.approx(
            np.median(held) * np.log(f) / np.log(span)
        )
        p = pred["points"][0]["domain"]
        widths[f], errs[f] = (p["hi"] - p["lo"]) / p["loss"], pred["fit"]["model_error"]
        assert widths[f] > errs[f]  # the law's own error, both sides, is inside
    assert widths[8] > 1.5 * widths[2]
    pred, _ = predict_sweep(root, 8 * STEPS * BATCH, -0.005, n_boot=10)
    rec = pred["recommended"]
    assert rec["bound"] == "central" and rec["general_regression"] <= -0.005
    assert rec["intervals"]["general_regression"]["hi"] > -0.005
    assert any("predicted regression" in w for w in pred["warnings"])
    assert "(predicted value within" in "\n".join(lines(pred))


def test_warmup_is_no_annealing():
    """S2 sums the LR's drops; a warmup's rises are no negative annealing (Tissue et al.
    leave the warmup out). With them in, a 2-step warmup's rise stayed in the momentum for
    the whole run and cancelled a cosine's annealing area (BENCHMARKS.md)."""
    from steep.sweep.law import areas

    flat = areas([0.5, 1.0, 1.0, 1.0, 1.0], [1.0] * 5, [5])
    assert flat.anneal[0] == pytest.approx(0.0)  # warmup, then constant: nothing annealed
    cosine = 0.55 + 0.45 * np.cos(np.linspace(0, np.pi, 96))
    warm = np.concatenate([[0.5], cosine[1:]])
    a, b = areas(warm, np.ones(96), [96]), areas(cosine, np.ones(96), [96])
    assert a.anneal[0] == pytest.approx(b.anneal[0], rel=1e-3) and a.anneal[0] > 30
