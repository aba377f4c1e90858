"""A run folder that does not lie or hide (#16): what a saved model, a leftover or a
resume leaves behind."""

from __future__ import annotations

import os
import stat

import pytest

from steep.config import parse_config
from steep.train.loop import train
from tests.conftest import tiny_config


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_a_saved_model_has_the_umask_s_permissions(tmp_path, corpora, tiny_model, mask):
    """Before: model/ was 0700 and model.safetensors 0600 whatever the umask (mkdtemp and
    safetensors' temp file), so the studio's user or a serving process could not read it."""
    old = os.umask(mask)
    try:
        result = train(parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=1)))
    finally:
        os.umask(old)
    model = result.model_dir
    assert stat.S_IMODE(model.stat().st_mode) == 0o777 & ~mask
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in model.iterdir() if p.is_file()}
    assert modes and set(modes.values()) == {0o666 & ~mask}, modes


def _records(run, kind):
    import json

    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_a_killed_run_s_leftovers_go_at_its_next_start(tmp_path, corpora, tiny_model, capsys):
    import shutil

    from steep.train.loop import resume_run

    run = train(parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=4))).run_dir
    weights = (run / "model" / "model.safetensors").read_bytes()
    (run / ".model.k1ll3d").mkdir()  # a save killed half way: model-sized for a real model
    (run / ".model.k1ll3d" / "model.safetensors").write_bytes(b"\0" * 4096)
    (run / "metrics.jsonl.tmp").write_text("{}\n")  # a resume's truncation, killed
    (run / "checkpoints" / ".step_0000008.tmp").mkdir()
    shutil.move(run / "model", run / ".model.old")  # a save killed between its renames
    capsys.readouterr()
    resume_run(run)
    out = capsys.readouterr().out
    assert (
        "removed what a killed run left: .model.k1ll3d, .step_0000008.tmp, metrics.jsonl.tmp" in out
    )
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [".lock"]
    assert not list((run / "checkpoints").glob(".*"))
    # .model.old was the last good model: put back, then replaced by the resumed run's save
    assert (run / "model" / "model.safetensors").read_bytes() == weights


def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_0(
    tmp_path, corpora, tiny_model, capsys
):
    """Before: --resume said there was no checkpoint, a fresh start that the folder
    already held a run: a dead end."""
    import shutil

    from steep.train.loop import resume_run

    cfg = tiny_config(tmp_path, corpora, tiny_model, steps=4)
    run = train(parse_config(cfg)).run_dir
    full = [(r["step"], r["loss"]) for r in _records(run, "train")]
    shutil.rmtree(run / "checkpoints")  # as if killed at step 3, before the first one
    shutil.rmtree(run / "model")
    capsys.readouterr()
    resume_run(run)
    assert "has no checkpoint yet: starting it again from step 0" in capsys.readouterr().out
    assert [(r["step"], r["loss"]) for r in _records(run, "train")] == full
    assert [e["step"] for e in _records(run, "eval")] == [0, 4]  # one step-0 baseline
    assert (run / "model" / "model.safetensors").exists()


@pytest.mark.parametrize("damage", ["truncated shard", "unreadable rng"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(
    tmp_path, corpora, tiny_model, capsys, damage
):
    """Before: a truncated shard of the newest checkpoint stopped the resume with a
    zip-reader error, though the checkpoint before it was whole."""
    from steep.train.loop import resume_run

    cfg = tiny_config(tmp_path, corpora, tiny_model, steps=8)
    run = train(parse_config(cfg)).run_dir
    full = [(r["step"], r["loss"]) for r in _records(run, "train")]
    newest = run / "checkpoints" / "step_0000008"
    if damage == "truncated shard":
        (shard,) = newest.glob("*.distcp")
        shard.write_bytes(shard.read_bytes()[:1000])
    else:  # same size, unreadable: only loading it finds out
        rng = newest / "rng_rank0.pt"
        rng.write_bytes(b"\0" * rng.stat().st_size)
    capsys.readouterr()
    resume_run(run)
    err = capsys.readouterr().err
    assert f"checkpoint {newest}" in err and ("damaged" in err or "cannot be loaded" in err)
    assert [(r["step"], r["loss"]) for r in _records(run, "train")] == full  # from step 4


def test_a_resume_on_changed_data_is_refused_unless_asked_and_then_recorded(
    tmp_path, corpora, tiny_model, capsys
):
    """Before: steep re-tokenized silently and went on, the held-out sets moved under the
    step-0 baseline and steep.json named only the new file."""
    import json
    import shutil

    from steep.cli import main
    from steep.train.loop import resume_run
    from steep.train.runfolder.drift import DataChangedError

    cfg = tiny_config(tmp_path, corpora, tiny_model, steps=8)
    run = train(parse_config(cfg)).run_dir
    shutil.rmtree(run / "checkpoints" / "step_0000008")  # as if killed after step 4
    metrics = (run / "metrics.jsonl").read_bytes()
    with open(corpora["domain"], "a", encoding="utf-8") as f:  # the data changes meanwhile
        f.write(json.dumps({"text": "a new document about something else " * 20}) + "\n")

    with pytest.raises(
        DataChangedError,
        match=r"the data changed since checkpoint step_0000004: 'domain': .*domain.jsonl sha256 \w+ -> \w+",
    ):
        resume_run(run)
    assert (run / "metrics.jsonl").read_bytes() == metrics  # nothing written
    assert main(["train", "--resume", str(run)]) == 2  # one line for the CLI user
    assert "--allow-data-change" in capsys.readouterr().err

    resume_run(run, allow_data_change=True)
    lineage = json.loads((run / "model" / "steep.json").read_text())
    (change,) = lineage["data_changes"]
    assert change["step"] == 4 and change["changed"][0].startswith("'domain': ")
    assert change["before"]["domain"]["cache"] != change["after"]["domain"]["cache"]
    assert lineage["metrics"]["baseline"] == change["baseline"]  # measured again, on new sets
    assert (
        lineage["data"][0]["files"][0]["sha256"]
        == change["after"]["domain"]["files"][str(corpora["domain"])]
    )


def test_a_failed_start_leaves_no_run_folder_and_a_failed_run_keeps_its_own(
    tmp_path, corpora, tiny_model, monkeypatch
):
    """Before (#17 finding 10): a config training refused at once (here: a source too small
    for the steps asked) still left a run folder holding only config.yaml and status.json."""
    from steep.artifacts.runstatus import read_status
    from steep.errors import DataError

    raw = tiny_config(tmp_path, corpora, tiny_model, steps=100_000)
    run = tmp_path / "run"
    with pytest.raises(DataError, match="training tokens"):
        train(parse_config(raw), run_dir=run)
    assert not run.exists()

    # a folder the user made is theirs: it stays, empty of steep's files but status.json
    run.mkdir()
    with pytest.raises(DataError):
        train(parse_config(raw), run_dir=run)
    assert read_status(run).state == "failed"

    # once records are written the run is a run: it fails, and keeps its folder and status
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("steep.train.finish.save_hf", full_disk)
    later = tmp_path / "later"
    with pytest.raises(Exception, match="No space left"):
        train(parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=1)), run_dir=later)
    assert (later / "metrics.jsonl").is_file()
    assert read_status(later).state == "failed"


def test_status_json_says_what_the_run_does_before_its_first_step(
    tmp_path, corpora, tiny_model, monkeypatch
):
    """The studio's run page reads this phase line (#18 usability 3)."""
    import steep.train.runfolder.state as runstate

    seen = []
    real = runstate.write_status

    def record(run_dir, state, error=None, phase=None):
        seen.append((state, phase["what"] if phase else None, bool(phase and phase["total"])))
        real(run_dir, state, error, phase)

    monkeypatch.setattr(runstate, "write_status", record)
    train(parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=3)))
    phases = [what for state, what, _ in seen if state == "running"]
    assert phases[:3] == [None, "loading the base model", "reading the data"]
    assert any(what.startswith("tokenizing") and sized for _, what, sized in seen if what)
    assert phases[-3:] == ["evaluating the base (step 0)", "the first step", None]
    # the step-0 eval says how far it is (#28: the demo's was silent for minutes)
    assert any(what == "evaluating the base (step 0)" and sized for _, what, sized in seen)
    assert seen[-1][0] == "done"


def test_a_killed_adapter_save_s_folder_goes_at_the_next_start(
    tmp_path, corpora, tiny_model, capsys
):
    """Before (#29.5): a SIGKILL during a LoRA run's adapter save left ``.adapter.*`` for
    good: leftovers knew only ``.model.*``. A save killed between its two renames leaves
    ``.adapter.old``, the last good adapter, which is put back."""
    from steep.train.loop import resume_run

    run = train(parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=4))).run_dir
    (run / ".adapter.k1ll3d").mkdir()
    (run / ".adapter.k1ll3d" / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    (run / ".adapter.old").mkdir()  # the previous adapter, moved aside, adapter/ missing
    (run / ".adapter.old" / "adapter_config.json").write_text("{}")
    capsys.readouterr()
    resume_run(run)
    assert "removed what a killed run left: .adapter.k1ll3d" in capsys.readouterr().out
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == [".lock"]
    assert (run / "adapter" / "adapter_config.json").read_text() == "{}"


def test_every_aside_folder_a_run_writes_is_a_leftover_at_its_next_start(tmp_path):
    """The prefix each writer builds its folder under is the one leftovers clears: one
    definition (artifacts.atomic.aside_dir), for every folder a run writes whole."""
    from steep.artifacts.atomic import aside_dir
    from steep.train.runfolder.leftovers import RUN_FOLDERS, clear_leftovers

    assert {"model", "adapter"} <= set(RUN_FOLDERS)
    made = sorted(aside_dir(tmp_path / name).name for name in RUN_FOLDERS)
    assert sorted(clear_leftovers(tmp_path)) == made
    assert not list(tmp_path.iterdir())
