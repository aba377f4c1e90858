"""A real full disk under every command that writes (#29 "Done when"): each command runs on
a workspace in a small tmpfs filled to leave less room than it needs, at three points of
its output (early, half-way, near the end).

Each time it must fail in one line that says the disk is full and where, leave the
workspace exactly as it was (nothing half-published, no hidden leftovers), and, once
room is made, a rerun must write the same files a run on an empty disk writes.

A tmpfs is a real filesystem with a real ENOSPC; mounting one needs root (CAP_SYS_ADMIN).
Without it the tests are skipped with that reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from steep.cli import main
from tests.conftest import (
    WORDS_A,
    WORDS_B,
    make_tiny_model,
    synthetic_docs,
    tiny_config,
    write_jsonl,
)

FRACTIONS = (0.05, 0.5, 0.95)
DISK_MB = 96
SQLITE_LIVE = ("-wal", "-shm")


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mount = tmp_path_factory.mktemp("disk")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if made.returncode:
        pytest.skip(f"a small tmpfs could not be mounted (needs root): {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _used(disk: Path) -> int:
    st = os.statvfs(disk)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _fill(disk: Path, room: int) -> Path:
    """A file taking all free space but ``room`` bytes."""
    st = os.statvfs(disk)
    filler = disk / "filler"
    size = st.f_bavail * st.f_frsize - room
    with open(filler, "wb") as f:
        if size > 0:
            os.posix_fallocate(f.fileno(), 0, size)
    return filler


def _on_a_full_disk(
    disk: Path, room: int, argv: list[str], capsys: pytest.CaptureFixture
) -> tuple[int, str, str]:
    """``steep ARGV`` with ``room`` bytes free; the room is given back after. Whatever
    happens, it is never a traceback."""
    filler = _fill(disk, room)
    try:
        code = main(argv)
    finally:
        filler.unlink()
    out, err = capsys.readouterr()
    assert "Traceback" not in err, (argv, room, err)
    return code, out, err


def _last_line(err: str) -> str:
    """The last line of stderr as a terminal shows it: a progress bar left open by the
    failure shares it, and the error follows the bar's carriage return or cursor-up."""
    return re.split(r"\r|\x1b\[A", err.strip().splitlines()[-1])[-1]


def _tree(root: Path, hidden: bool = True) -> dict[str, str]:
    """Every file and folder under ``root`` with its content's hash (folders: 'dir').

    ``hidden=False`` leaves out what a user and steep's readers never see: dot-named
    work folders a rerun resumes from, lock files and folders with nothing visible in them.
    """
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.name.endswith(SQLITE_LIVE):
            continue  # SQLite's own journal beside a registry, removed at its next close
        if not hidden and any(part.startswith(".") for part in rel.parts):
            continue
        if path.is_dir():
            out[str(rel)] = "dir"
        elif path.is_file():
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        else:
            out[str(rel)] = "other"
    if not hidden:  # a folder is seen through what it holds
        files = [k for k, v in out.items() if v != "dir"]
        out = {
            k: v for k, v in out.items() if v != "dir" or any(f.startswith(k + "/") for f in files)
        }
    return out


def _names(tree: dict[str, str]) -> set[str]:
    """The paths with what differs between two runs made alike: a cache entry is named by
    its inputs' identity (which includes when the dataset version was made), a TensorBoard
    file by its host, time and pid."""
    named = (re.sub(r"events\.out\.tfevents\..*", "events", p) for p in tree)  # host, time
    return {re.sub(r"[0-9a-f]{16}", "#", path) for path in named}


# ---------------------------------------------------------------------------- the commands
# each: (workspace) -> argv, run with STEEP_HOME=workspace/home; built the same every time


def _docs(ws: Path, name: str, words: list[str], n: int, seed: int) -> Path:
    return write_jsonl(ws / "in" / f"{name}.jsonl", synthetic_docs(words, n, seed))


def _add(ws: Path, name: str, words: list[str], n: int = 120, seed: int = 1) -> None:
    path = _docs(ws, name, words, n, seed)
    assert main(["data", "add", name, str(path), "--no-langid", "--workers", "1"]) == 0


def data_add(ws: Path) -> list[str]:
    _add(ws, "other", WORDS_B)  # a dataset that stays as it was
    more = _docs(ws, "d", WORDS_A, 200, 5)
    return ["data", "add", "d", str(more), "--no-langid", "--workers", "1"]


def data_prepare(ws: Path) -> list[str]:
    _add(ws, "d", WORDS_A, 200)
    recipe = ws / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"steps": ["normalize", "exact_dedup", "minhash_dedup"]}))
    return ["data", "prepare", "d", "--recipe", str(recipe), "--workers", "1"]


def data_tokenize(ws: Path) -> list[str]:
    _add(ws, "d", WORDS_A, 200)
    base = make_tiny_model(ws / "base")
    return ["data", "tokenize", "d", "--base", str(base), "--workers", "1"]


def classifier_train(ws: Path) -> list[str]:
    _add(ws, "pos", WORDS_A, 80, 1)
    _add(ws, "neg", WORDS_B, 80, 2)
    return ["data", "classifier", "train", "--positive", "pos", "--negative", "neg",
            "--name", "c"]  # fmt: skip


def data_mine(ws: Path) -> list[str]:
    classifier_train_argv = classifier_train(ws)
    assert main(classifier_train_argv) == 0
    write_jsonl(
        ws / "in" / "crawl.jsonl",
        synthetic_docs(WORDS_A, 100, 7) + synthetic_docs(WORDS_B, 100, 8),
    )
    assert main(["data", "add", "crawl", str(ws / "in" / "crawl.jsonl"), "--no-langid",
                 "--workers", "1"]) == 0  # fmt: skip
    return ["data", "mine", "crawl", "--classifier", "c", "--workers", "1"]


def evaluate(ws: Path) -> list[str]:
    base = make_tiny_model(ws / "base", seed=0)
    model = make_tiny_model(ws / "model", seed=1)
    held = _docs(ws, "held", WORDS_A, 20, 9)
    return ["eval", str(model), "--baseline", str(base), "--sets", f"d={held}",
            "--seq-len", "64"]  # fmt: skip


def export_hf(ws: Path) -> list[str]:
    model = make_tiny_model(ws / "home" / "models" / "m")
    from steep.hub import Hub

    assert Hub().register_model(model, None) == "m"
    assert main(["models", "export", "m", str(ws / "first")]) == 0  # writes m's card
    shutil.rmtree(ws / "first")
    return ["models", "export", "m", str(ws / "exports" / "m")]


def tokenizer_extend(ws: Path) -> list[str]:
    from tests.test_vocab import tiny_lm, tiny_tokenizer, vi_docs

    tok, base = tiny_tokenizer(), ws / "base"
    tiny_lm(len(tok)).save_pretrained(base)
    tok.save_pretrained(base)
    corpus = write_jsonl(ws / "in" / "vi.jsonl", vi_docs(80))
    return ["tokenizer", "extend", str(base), "--corpus", str(corpus), "--add", "30",
            "-o", str(ws / "extended"), "--lang", "vi", "--eval-chars", "3000",
            "--seq-len", "64", "--base-max-lr", "1e-3"]  # fmt: skip


def models_merge(ws: Path) -> list[str]:
    from steep.config import parse_config
    from steep.train.loop import train

    base = make_tiny_model(ws / "base", seed=0)
    corpora = {
        "domain": write_jsonl(ws / "in" / "domain.jsonl", synthetic_docs(WORDS_A, 80, 1)),
        "general": write_jsonl(ws / "in" / "general.jsonl", synthetic_docs(WORDS_B, 80, 2)),
    }
    raw = tiny_config(ws, corpora, base, steps=2, warmup_steps=1)
    raw["eval"] = {"every_steps": 2, "max_windows": 2}
    raw["checkpoint"] = {"every_steps": 100}
    run = train(parse_config(raw)).run_dir
    return ["models", "merge", str(run), "--alphas", "0,0.5,1", "--max-regression", "1",
            "--save", "merged", "--out", str(ws / "curve")]  # fmt: skip


COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "data add": data_add,
    "data prepare": data_prepare,
    "data tokenize": data_tokenize,
    "data classifier train": classifier_train,
    "data mine": data_mine,
    "eval": evaluate,
    "models export": export_hf,
    "tokenizer extend": tokenizer_extend,
    "models merge": models_merge,
}


def _setup(disk: Path, monkeypatch: pytest.MonkeyPatch, make) -> tuple[Path, list]:
    """The command's workspace, made afresh at the same path (names hash paths)."""
    ws = disk / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    ws.mkdir()
    monkeypatch.setenv("STEEP_HOME", str(ws / "home"))
    return ws, make(ws)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_full_disk_changes_nothing_and_a_rerun_completes(
    command: str, disk: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    make = COMMANDS[command]
    ws, argv = _setup(disk, monkeypatch, make)
    before, used = _tree(ws), _used(disk)
    assert main(argv) == 0
    written = _used(disk) - used
    want = _tree(ws)
    new = {k: v for k, v in want.items() if before.get(k) != v}
    assert new, f"{command} wrote nothing"
    shutil.rmtree(ws)
    capsys.readouterr()
    failed = 0
    for fraction in FRACTIONS:
        ws, argv = _setup(disk, monkeypatch, make)
        before = _tree(ws, hidden=False)
        code, out, err = _on_a_full_disk(disk, int(written * fraction), argv, capsys)
        where = f"{command} with {fraction:.0%} of its {written:,} bytes free"
        if code == 0:  # only the Model Hub's index may fail without failing the command
            assert "warning: model hub: could not" in out, where
            assert "No space left on device" in out, where
            missing = _names(want) - _names(_tree(ws))  # the hub writes the card as it registers
            assert all(p.endswith("README.md") for p in missing), (where, missing)
        else:
            failed += 1
            last = _last_line(err)
            assert last.startswith(f"steep {command.split()[0]}: error:"), (where, err)
            assert "No space left on device" in last, (where, last)
            assert _tree(ws, hidden=False) == before, where
            assert main(argv) == 0, where
            assert _names(_tree(ws)) == _names(want), where
        shutil.rmtree(ws)
    assert failed, f"{command} never ran out of room: the fractions miss its writes"


def _lora_run(ws: Path) -> list[str]:
    """A LoRA run: its end merges the adapter into the model and saves both."""
    data = {
        "domain": _docs(ws, "domain", WORDS_A, 120, 1),
        "general": _docs(ws, "general", WORDS_B, 120, 2),
    }
    base = make_tiny_model(ws / "base")
    cfg = tiny_config(ws, data, base, steps=4, method="lora", lora={"rank": 4, "alpha": 8})
    cfg["checkpoint"]["every_steps"] = 2
    (ws / "run.yaml").write_text(yaml.safe_dump(cfg))
    return ["train", str(ws / "run.yaml")]


def _losses(run: Path) -> list[tuple]:
    rows = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return [(r["step"], round(r["loss"], 5)) for r in rows if r["kind"] == "train"]


def test_a_full_disk_under_a_lora_run_resumes_to_the_same_model(
    disk: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    ws, argv = _setup(disk, monkeypatch, _lora_run)
    used = _used(disk)
    assert main(argv) == 0
    written, want = _used(disk) - used, _tree(ws)
    losses = _losses(ws / "run")
    shutil.rmtree(ws)
    capsys.readouterr()
    failed = 0
    for fraction in FRACTIONS:
        ws, argv = _setup(disk, monkeypatch, _lora_run)
        code, out, err = _on_a_full_disk(disk, int(written * fraction), argv, capsys)
        where = f"train with {fraction:.0%} of its {written:,} bytes free"
        if code:
            failed += 1
            last = _last_line(err)
            assert last.startswith("steep train: error:"), (where, err)
            assert "No space left on device" in last, (where, last)
            if "--resume" in last:  # the run started: its checkpoints carry it on
                assert f"steep train --resume {ws / 'run'}" in last, (where, last)
                assert main(["train", "--resume", str(ws / "run")]) == 0, where
            else:  # it had not: nothing of it is left to be in the way
                assert not (ws / "run").exists(), (where, last, _tree(ws / "run"))
                assert main(argv) == 0, where
        else:
            assert "warning: model hub: could not" in out, where
        assert _losses(ws / "run") == losses, where
        missing = _names(want) - _names(_tree(ws))
        assert all(p.endswith("README.md") for p in missing), (where, missing)
        shutil.rmtree(ws)
    assert failed, "the run never ran out of room: the fractions miss its writes"
