"""A user's mistake on the command line is one line, never a traceback (#28 item 6).

Every command that takes a file or folder is run here with one that is not there (or is
the wrong kind); ``steep.cli.main`` must return 2 with one ``steep CMD: error:`` line.
An exception escaping ``main`` is the traceback a user would see.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from steep.cli import main
from steep.workspace import HOME_ENV

MISSING = "no-such-file.yaml"
CASES = [
    ["data", "prepare", "web", "--recipe", "web"],  # a recipe's name instead of its path
    ["data", "prepare", "web", "--recipe", "."],  # a folder
    ["data", "add", "x", "no-such-file.jsonl"],
    ["data", "tokenize", "--config", MISSING],
    ["train", MISSING],
    ["validate", MISSING],
    ["plan", MISSING],
    ["launch", MISSING],
    ["sweep", MISSING, "--grid", "train.lr_fraction=0.1,0.2"],
    ["sweep", "--resume", "no-such-sweep"],
    ["studio", "--token-file", "no-such-token"],
    ["eval", "some-model"],  # nothing to evaluate
    ["eval", "some-model", "--prompts", "no-such-prompts.txt"],
]


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(a))
def test_a_wrong_path_is_one_line(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"steep {argv[0]}: error: ") and "Traceback" not in err


def test_an_unknown_recipe_is_one_line_listing_the_packaged_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """#30: a name that is neither a file nor a packaged recipe names the packaged ones."""
    monkeypatch.setenv(HOME_ENV, str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["data", "prepare", "web", "--recipe", "nope"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "recipe 'nope' not found" in err and "(docs, web)" in err
