"""The caching malloc under CPU training: which library, how it is preloaded, and that
`steep train` really runs on it (or says how to get it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from steep.train import allocator
from tests.conftest import tiny_config


def test_a_library_in_the_environment_prefix_wins(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    lib = tmp_path / "lib" / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"")  # only its presence is looked at here; loading is tested below
    assert allocator.resolve("auto", [tmp_path]) == str(lib)
    assert allocator.resolve("tcmalloc", [tmp_path]) == str(lib)
    assert allocator.resolve("system", [tmp_path]) is None
    assert allocator.resolve(str(lib)) == str(lib)


def test_bad_settings_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(allocator.AllocatorError, match="expected auto, tcmalloc"):
        allocator.resolve("hoard")
    with pytest.raises(allocator.AllocatorError, match="no such file"):
        allocator.resolve(str(tmp_path / "libnothing.so"))


def test_preload_keeps_what_the_user_preloaded_and_marks_the_restart() -> None:
    env = allocator.preload_env("libtcmalloc_minimal.so.4", {"LD_PRELOAD": "libmine.so", "A": "1"})
    assert env["LD_PRELOAD"] == "libtcmalloc_minimal.so.4:libmine.so"
    assert env[allocator.DONE] == "1" and env["A"] == "1"
    assert allocator.preload_env("x.so", {})["LD_PRELOAD"] == "x.so"


def test_active_reads_the_process_map(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libjemalloc.so.2\n")
    assert allocator.active(maps) == "jemalloc"
    maps.write_text("7f00-7f01 r-xp 0 08:01 1 /usr/lib/libc.so.6\n")
    assert allocator.active(maps) == "system"
    assert allocator.active(tmp_path / "missing") == "system"


def _train(tmp_path: Path, corpora: dict[str, Path], base: Path, setting: str):
    cfg = tiny_config(tmp_path, corpora, base, steps=2, warmup_steps=1)
    cfg["eval"] = {"every_steps": 100, "max_windows": 2, "batch_size": 2}
    path = tmp_path / f"{setting}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.DONE)}
    env[allocator.ENV] = setting
    cmd = [sys.executable, "-m", "steep", "train", str(path), "--out", str(tmp_path / setting)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_steep_train_restarts_on_a_caching_malloc(
    tmp_path: Path, corpora: dict[str, Path], tiny_model: Path
) -> None:
    lib = allocator.resolve("auto")
    if lib is None:
        pytest.skip("no tcmalloc or jemalloc on this machine (make cpu-deps installs tcmalloc)")
    name = "tcmalloc" if "tcmalloc" in lib else "jemalloc"
    done = _train(tmp_path, corpora, tiny_model, "auto")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"malloc {name}" in done.stdout  # read from the process's own memory map
    plain = _train(tmp_path, corpora, tiny_model, "system")
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "malloc system" in plain.stdout and "faster" not in plain.stdout


def test_an_unknown_allocator_stops_before_training(
    tmp_path: Path, corpora: dict[str, Path], tiny_model: Path
) -> None:
    done = _train(tmp_path, corpora, tiny_model, "hoard")
    assert done.returncode == 2
    assert "STEEP_CPU_ALLOCATOR='hoard'" in done.stderr
    assert not (tmp_path / "hoard").exists()


def test_bf16_on_a_cpu_without_it_warns_and_fp32_does_not(monkeypatch):
    """A CPU without AVX512-BF16 or AMX emulates bf16: 13x slower than fp32 here."""
    from steep.config import TrainSection
    from steep.train import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda: False)
    bf16 = runtime.Runtime.from_config(
        TrainSection(steps=1, global_batch_tokens=8, device="cpu"), 0
    )
    assert "no native bf16" in bf16.describe() and "fp32" in bf16.describe()
    fp32 = runtime.Runtime.from_config(
        TrainSection(steps=1, global_batch_tokens=8, device="cpu", precision="fp32"), 0
    )
    assert "no native bf16" not in fp32.describe()
    monkeypatch.setattr(runtime, "native_bf16", lambda: True)
    assert "no native bf16" not in bf16.describe()
