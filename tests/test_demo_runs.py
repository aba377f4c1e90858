"""The demos on a CPU without native bf16, and what a finished demo leaves (#28 items 2, 3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from steep.config import load_config
from steep.demos import runs
from steep.demos.demo import DEMO_CONFIG


@pytest.mark.parametrize("native", [True, False])
def test_the_demo_trains_in_fp32_where_bf16_is_emulated(native, monkeypatch, capsys) -> None:
    monkeypatch.setattr(runs, "native_bf16", lambda: native)
    monkeypatch.setenv("STEEP_HOME", "/tmp/unused-home")
    config = load_config(DEMO_CONFIG, runs.cpu_precision())
    assert config.train.precision == ("bf16-autocast" if native else "fp32")
    assert ("no native bf16" in capsys.readouterr().out) is not native
    # the user's own --set comes after, and wins
    again = load_config(DEMO_CONFIG, [*runs.cpu_precision(), "train.precision=bf16-autocast"])
    assert again.train.precision == "bf16-autocast"


def test_a_finished_demo_keeps_its_model_not_its_checkpoints(tmp_path: Path, capsys) -> None:
    run = tmp_path / "demo-1"
    step = run / "checkpoints" / "step_0000048"
    step.mkdir(parents=True)
    (step / "__0_0.distcp").write_bytes(b"x" * 3_000_000)
    (run / "model").mkdir()
    (run / "model" / "model.safetensors").write_bytes(b"w")
    runs.drop_checkpoints(run)
    assert not (run / "checkpoints").exists() and (run / "model" / "model.safetensors").exists()
    assert "checkpoints (3.0 MB)" in capsys.readouterr().out
    runs.drop_checkpoints(run)  # none left: nothing to do, no error
