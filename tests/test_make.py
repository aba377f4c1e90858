"""What the README's two commands install (#28 item 2): `make demo` took every dev extra,
the llama.cpp compile among them, though the demo uses none of it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _planned(target: str, venv: Path) -> str:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _extras(commands: str) -> set[str]:
    return {e for group in re.findall(r'-e "\.\[([^\]]*)\]"', commands) for e in group.split(",")}


def test_make_demo_installs_only_what_the_demo_needs(tmp_path: Path) -> None:
    demo = _planned("demo", tmp_path / "venv")
    assert _extras(demo) == {"demo"}
    heavy = ("llama-cpp-python", "ray", "wandb", "mlflow", "lm-eval", "peft", "selenium")
    assert not any(name in demo for name in heavy)
    assert "steep demo" in demo


def test_make_test_adds_the_dev_extras_on_top(tmp_path: Path) -> None:
    test = _planned("test", tmp_path / "venv")
    assert _extras(test) == {"demo", "dev"} and "pytest" in test


def test_make_test_hands_out_the_slowest_files_first(tmp_path: Path) -> None:
    """xdist keeps the collection order (tests/conftest.py puts the slow files first); its
    default would put the files with the fewest tests last, the slowest ones here."""
    from tests.conftest import SLOW_FILES_FIRST

    test = _planned("test", tmp_path / "venv")
    assert "--dist loadfile --no-loadscope-reorder" in test
    missing = [name for name in SLOW_FILES_FIRST if not (ROOT / "tests" / name).is_file()]
    assert not missing, f"renamed or removed: {missing}"
