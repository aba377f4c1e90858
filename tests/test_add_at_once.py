"""Two ``steep data add NAME`` at once (#29 finding 11): the second is refused in one line
naming the first, whatever its input, and the first publishes ``NAME@1``. Before, the
second died with a FileNotFoundError traceback (the same input) or both published.

Deterministic: the first is held inside its publish (``tests/held_add.py``) while the
second runs, so which one wins is never left to the scheduler.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.held_add import steep_env, while_held


def _jsonl(path: Path, tag: str) -> Path:
    path.write_text(
        "".join(json.dumps({"text": f"{tag} doc {i} has words"}) + "\n" for i in range(5))
    )
    return path


@pytest.mark.parametrize("second_input", ["same", "other"])
def test_a_second_add_of_a_name_is_refused_naming_the_first(
    tmp_path: Path, _steep_home: Path, second_input: str
) -> None:
    a = _jsonl(tmp_path / "a.jsonl", "a")
    b = a if second_input == "same" else _jsonl(tmp_path / "b.jsonl", "b")
    args = ["data", "add", "shop", "--no-langid", "--workers", "1"]
    first, out, second = while_held(tmp_path / "hold", [*args, str(a)], [*args, str(b)])
    err = [x for x in second.stderr.splitlines() if x.strip()]
    assert second.returncode != 0 and len(err) == 1, second.stderr
    assert "Traceback" not in second.stderr
    assert f"pid {first.pid}" in err[0] and "'shop' is being added" in err[0]
    assert first.returncode == 0, out
    folder = _steep_home / "datasets" / "shop"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["v1"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".partial")]
    # after the first, the name is taken: the usual refusal
    again = subprocess.run(
        [sys.executable, "-m", "steep", *args, str(b)],
        env=steep_env(tmp_path / "hold"),
        capture_output=True,
        text=True,
    )
    assert again.returncode != 0 and "exists (latest shop@1)" in again.stderr
