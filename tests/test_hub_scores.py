"""The hub scores with steep.artifacts.scores: roles from a source's name in any case, and
an undefined change (zero or non-finite baseline) shown as "–"; and the hub's layer rule."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest

import steep.hub
from steep.hub import Hub, render_model_card, training_change, write_model_card


def _model(folder: Path, baseline: dict, final: dict, sources: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    lineage = {
        "kind": "cpt",
        "config": {"data": {"sources": [{"name": n} for n in sources]}},
        "metrics": {"step": 4, "baseline": baseline, "final": final},
    }
    (folder / "steep.json").write_text(json.dumps(lineage))
    return folder


def test_training_change_counts_a_capitalised_domain_source_as_domain(_steep_home: Path) -> None:
    model = _model(
        _steep_home / "models" / "m",
        baseline={"Domain_docs": 4.0, "web": 2.0},
        final={"Domain_docs": 3.0, "web": 2.2},
        sources=["Domain_docs", "web"],
    )
    change = training_change({"path": str(model)})
    assert change == {
        "domain_gain": pytest.approx(0.25),
        "general_regression": pytest.approx(0.1),
        "metric": "train eval loss",
    }
    (row,) = Hub().models()  # the same through the registry, as `steep models list` calls it
    assert training_change(row) == change


def test_training_change_skips_a_zero_baseline(_steep_home: Path) -> None:
    model = _model(
        _steep_home / "models" / "z",
        baseline={"domain": 0.0, "web": 2.0},
        final={"domain": 1.0, "web": 2.2},
        sources=["domain", "web"],
    )
    change = training_change({"path": str(model)})
    assert change["domain_gain"] is None and change["general_regression"] == pytest.approx(0.1)
    assert training_change({"path": str(_steep_home / "nowhere")}) is None
    assert training_change({"path": None}) is None


def test_an_undefined_change_reads_as_a_dash_in_the_card(tmp_path: Path) -> None:
    lineage = {
        "kind": "cpt",
        "metrics": {
            "step": 5,
            "baseline": {"zero": 0.0, "nan": math.nan, "inf": math.inf, "ok": 2.0},
            "final": {"zero": 1.0, "nan": 1.0, "inf": 1.0, "ok": 1.5, "new": 1.25},
        },
    }
    card = render_model_card("m", lineage, None)
    assert "| zero | 0.0000 | 1.0000 | – |" in card
    assert "| nan | – | 1.0000 | – |" in card
    assert "| inf | – | 1.0000 | – |" in card
    assert "| new | – | 1.2500 | – |" in card  # no baseline at all
    assert "| ok | 2.0000 | 1.5000 | -25.00% |" in card  # defined: same digits as before
    assert "+0.00%" not in card and "nan%" not in card

    model = tmp_path / "model"  # the same from the files on disk (JSON NaN / Infinity)
    model.mkdir()
    (model / "steep.json").write_text(json.dumps(lineage))
    assert write_model_card(model, "m") == model / "README.md"
    assert (model / "README.md").read_text() == card


FORBIDDEN = ("eval", "train", "sweep", "studio", "launch", "cli")


def test_hub_imports_only_lower_layers() -> None:
    """hub may use datahub, data, model, artifacts, config, workspace, errors: not the
    commands and features above it (nor eval, which imports the hub)."""
    for path in Path(steep.hub.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                assert not (parts[0] == "steep" and len(parts) > 1 and parts[1] in FORBIDDEN), (
                    f"{path.name} imports {name}"
                )
