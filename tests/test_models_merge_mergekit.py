"""`steep models merge --method ties|dare_ties|slerp|task_arithmetic` (#33): mergekit (the
``merge`` extra) merges, steep scores, curves, picks and records the lineage.

A tiny run (a random Llama trained 3 steps) against its random base: TIES at density 0.5
keeps half of each delta (the other half is the base's, exactly); task arithmetic at alpha
0.5 scores the same as steep's own linear merge; without mergekit the refusal is one line
naming the extra.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from steep.artifacts.lineage import read_lineage
from steep.cli import main
from steep.config import parse_config
from steep.hub import Hub
from steep.train.loop import train
from tests.conftest import tiny_config

pytest.importorskip("mergekit", reason="mergekit not installed: pip install -e '.[merge]'")

TENSOR = "model.layers.0.mlp.up_proj.weight"


@pytest.fixture
def run(tmp_path: Path, corpora, tiny_model) -> Path:
    raw = tiny_config(tmp_path, corpora, tiny_model, steps=3, lr_fraction=1.0)
    raw["eval"] = {"every_steps": 3, "max_windows": 2, "batch_size": 2}
    return train(parse_config(raw)).run_dir


def _losses(folder: Path) -> list[dict[str, float]]:
    curve = json.loads((folder / "merge.json").read_text())["curve"]
    return [{n: s["loss"] for n, s in p["sets"].items()} for p in curve]


def test_ties_through_mergekit_is_scored_picked_and_saved_with_lineage(
    tmp_path: Path, run: Path, tiny_model: Path, capsys
) -> None:
    out = tmp_path / "ties"
    argv = ["models", "merge", str(run), "--method", "ties", "--density", "0.5"]
    argv += ["--alphas", "0,1", "--max-regression", "10", "--out", str(out), "--save", "tied"]
    assert main(argv) == 0, capsys.readouterr().err
    merged = json.loads((out / "merge.json").read_text())
    assert merged["method"] == "ties" and merged["mergekit"]["density"] == 0.5
    step0 = merged["logged"]["step0"]
    for name, loss in _losses(out)[0].items():  # alpha 0 is the base: the run's step 0
        assert loss == pytest.approx(step0[name], abs=1e-3)
    assert merged["picked"] == 1.0

    # TIES of one model at weight 1, density 0.5: the larger half of each delta is the CPT
    # model's, the rest the base's (mergekit's method, not steep's)
    saved = Hub().model("tied")["path"]
    got = load_file(str(Path(saved) / "model.safetensors"))[TENSOR]
    base = load_file(str(tiny_model / "model.safetensors"))[TENSOR]
    cpt = load_file(str(run / "model" / "model.safetensors"))[TENSOR]
    moved = ~torch.isclose(got, base, atol=1e-7)
    assert 0.4 < moved.float().mean() < 0.6
    assert torch.allclose(got[moved], cpt[moved], atol=1e-6)
    kept = (cpt - base).abs()
    assert kept[moved].min() >= kept[~moved].max() - 1e-7  # the largest entries were kept
    lin = read_lineage(Path(saved))
    assert lin.kind == "merge" and lin.merge["method"] == "ties" and lin.merge["alpha"] == 1.0
    assert lin.merge["mergekit"]["version"] and lin.merge["parents"]["model"] == str(
        (run / "model").resolve()
    )
    card = Path(Hub().model("tied")["card"]).read_text()
    assert "ties merge by mergekit" in card and "density 0.5" in card

    # task arithmetic of one model is linear interpolation: the same losses as steep's own
    for method in ("task_arithmetic", "linear"):
        argv = ["models", "merge", str(run), "--method", method, "--alphas", "0.5"]
        assert main([*argv, "--out", str(tmp_path / method)]) == 0
    ta, lin_ = _losses(tmp_path / "task_arithmetic")[0], _losses(tmp_path / "linear")[0]
    assert ta == pytest.approx(lin_, abs=1e-4)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "ties", "--density", "0"], "--density 0: a fraction in (0, 1]"),
        (["--method", "slerp", "--density", "0.5"], "--density 0.5: a fraction in (0, 1]"),
        (["--method", "ties", "--instruct", "x"], "--instruct applies to --method chat-vector"),
    ],
)
def test_bad_mergekit_input_is_one_line(
    tmp_path: Path, tiny_model: Path, capsys, extra: list[str], message: str
) -> None:
    argv = ["models", "merge", str(tiny_model), "--base", str(tiny_model)]
    extra = [str(tiny_model) if x == "x" else x for x in extra]  # an existing folder
    assert main([*argv, "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_without_mergekit_the_refusal_names_the_extra(
    tmp_path: Path, tiny_model: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mergekit", None)  # as if not installed
    argv = ["models", "merge", str(tiny_model), "--base", str(tiny_model), "--method", "dare_ties"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].endswith(
        "--method dare_ties runs through mergekit, not installed: pip install 'steep[merge]'"
    )


def test_a_mergekit_failure_is_one_line_with_its_kept_log(tmp_path: Path, tiny_model: Path) -> None:
    from steep.model.mergekit_run import MergekitError, mergekit_config, run_mergekit

    config = mergekit_config("ties", tmp_path / "no-such-base", tiny_model, 0.5)
    log = tmp_path / "mergekit-ties-0.5.log"
    with pytest.raises(MergekitError) as err:
        run_mergekit(config, tmp_path / "scratch" / "model", log)
    line = str(err.value)
    assert "\n" not in line and line.startswith("mergekit ties failed (")
    assert line.endswith(f"log: {log}") and log.stat().st_size > 0
