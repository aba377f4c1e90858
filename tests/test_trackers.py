"""W&B and MLflow beside metrics.jsonl, with the real libraries: W&B offline (its run
folder read back), MLflow on a local file store (read back with MlflowClient)."""

import importlib.util
import json
import math
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from steep.artifacts.metrics import eval_record
from steep.config import parse_config
from steep.config.tracking import MlflowSection, TrackSection
from steep.errors import ConfigError
from steep.train.loop import resume_run, train
from steep.train.track import Tracker
from steep.train.trackers import (
    check_trackers,
    file_store_note,
    file_store_uri,
    flat_metrics,
    mlflow_store,
    open_trackers,
)
from tests import held_steep
from tests.conftest import tiny_config

wandb_pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
mlflow_tracking = pytest.importorskip("mlflow.tracking")


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().split("\n")[:-1]
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _wandb_records(path: Path) -> list:
    """The records of a ``.wandb`` file: W&B's framing (a LevelDB-style log of 32 KiB
    blocks after a 7-byte ':W&B' header), each record W&B's own protobuf ``Record``."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if n == 0 and kind == 0:
            pos += left
            continue
        buf += data[pos + 7 : pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # FULL or LAST: a whole record
            rec = wandb_pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
            buf = b""
    return out


def _wandb_history(folder: Path) -> tuple[str, dict[int, dict]]:
    """(run id, {step: {key: value}}) of one offline run folder."""
    (path,) = folder.glob("*.wandb")
    run_id, rows = None, {}
    for rec in _wandb_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run_id = rec.run.run_id
        elif kind == "history":
            row = {
                i.nested_key[0] if i.nested_key else i.key: json.loads(i.value_json)
                for i in rec.history.item
            }
            rows.setdefault(row["_step"], {}).update(row)
    return run_id, rows


def _tracked_config(tmp_path, corpora, tiny_model, steps: int) -> dict:
    raw = tiny_config(tmp_path, corpora, tiny_model, steps=steps)
    raw["checkpoint"] = {"every_steps": 5, "keep_last": 2}
    raw["eval"]["every_steps"] = 6
    raw["track"] = {
        "wandb": {"mode": "offline", "project": "p", "tags": ["t1"]},
        "mlflow": {"tracking_uri": (tmp_path / "mlruns").as_uri(), "experiment": "e"},
    }
    return raw


def test_sigkill_resume_continues_the_same_tracker_runs(tmp_path, corpora, tiny_model):
    """A CLI run killed past a checkpoint, resumed: the same W&B and MLflow runs, each step
    once; at the end both hold the records of metrics.jsonl, the config and the results."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    steps = 24
    raw = _tracked_config(tmp_path, corpora, tiny_model, steps)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    run_dir = Path(raw["run"]["out_dir"])
    gates = tmp_path / "gates"
    held_steep.hold(gates, 14)  # the run cannot get past step 14 before the kill
    killed = subprocess.Popen(
        held_steep.argv("train", str(tmp_path / "c.yaml")),
        env={**env, held_steep.ENV: str(gates)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a signal to its group (W&B's service) never reaches pytest
    )

    def past_a_checkpoint() -> bool:  # past the checkpoint at step 10, before the one at 15
        done = (run_dir / "metrics.jsonl").exists() and len(_records(run_dir, "train"))
        return done >= 12 or held_steep.is_held(gates, 14)

    held_steep.wait_until("step 12", past_a_checkpoint, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    before = {r["step"] for r in _records(run_dir, "train")}
    assert 12 <= max(before) <= 14 < steps
    ids = json.loads((run_dir / "trackers.json").read_text())

    resume_run(run_dir)

    assert json.loads((run_dir / "trackers.json").read_text()) == ids  # the same runs
    trains, evals = _records(run_dir, "train"), _records(run_dir, "eval")
    assert [r["step"] for r in trains] == list(range(1, steps + 1))

    # MLflow: one run, each step once (MLflow keeps every value of a re-logged step)
    client = mlflow_tracking.MlflowClient(tracking_uri=raw["track"]["mlflow"]["tracking_uri"])
    run_id = ids["mlflow"]["id"]
    (exp,) = [e for e in client.search_experiments() if e.name == "e"]
    assert [r.info.run_id for r in client.search_runs([exp.experiment_id])] == [run_id]
    history = client.get_metric_history(run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, steps + 1))
    by_step = {m.step: m.value for m in history}
    for r in trains:  # a deterministic resume: the killed run's values are the same
        assert by_step[r["step"]] == pytest.approx(r["loss"], abs=1e-5)
    ev = {m.step: m.value for m in client.get_metric_history(run_id, "eval/domain/loss")}
    assert ev == pytest.approx({e["step"]: e["sets"]["domain"]["loss"] for e in evals}, abs=1e-5)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.steps"] == str(steps)
    assert json.loads(run.data.params["data.sources"])[0]["name"] == "domain"
    top = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.md", "config.yaml", "plots", "model"} <= top
    assert [a.path for a in client.list_artifacts(run_id, "model")] == ["model/steep.json"]
    assert client.list_artifacts(run_id, "plots")

    # W&B: two offline folders (killed, resumed) of one run id; synced, they are one run
    folders = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 2
    (first_id, first), (second_id, second) = map(_wandb_history, folders)
    assert second_id == ids["wandb"]["id"]  # the killed run's file may lack its run record
    assert [f.name.rsplit("-", 1)[1] for f in folders] == [second_id, second_id]
    resumed_train = {step for step, row in second.items() if "train/loss" in row}
    assert resumed_train == set(range(max(before) + 1, steps + 1))  # appended, not re-sent
    # W&B writes asynchronously (its service buffers the .wandb file): what a SIGKILL'd run
    # had not flushed is lost from W&B, never from metrics.jsonl or MLflow; what is there is right
    assert {s for s, row in first.items() if "train/loss" in row} <= before
    for r in trains:
        got = (second.get(r["step"]) or first.get(r["step"]) or {}).get("train/loss")
        assert got is None or got == pytest.approx(r["loss"], abs=1e-5)
    assert second[steps]["eval/domain/loss"] == pytest.approx(evals[-1]["sets"]["domain"]["loss"])
    files = folders[1] / "files"
    assert (files / "report.md").is_file() and (files / "model" / "steep.json").is_file()
    assert list((files / "plots").glob("*.png"))


def test_failing_tracker_warns_once_and_training_finishes(
    tmp_path, corpora, tiny_model, capfd, monkeypatch
):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    raw = tiny_config(tmp_path, corpora, tiny_model, steps=6)
    raw["track"] = {"mlflow": {"tracking_uri": "http://127.0.0.1:9", "experiment": "e"}}
    result = train(parse_config(raw))
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if "MLflow" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: MLflow failed to start"), err
    assert [r["step"] for r in _records(result.run_dir, "train")] == list(range(1, 7))
    assert json.loads((result.run_dir / "status.json").read_text())["state"] == "done"


def test_missing_library_is_refused_in_one_line(tmp_path, corpora, tiny_model, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"pip install 'steep\[wandb\]'"):
        check_trackers(TrackSection(wandb={"mode": "offline"}))
    check_trackers(TrackSection(mlflow={}))  # installed: fine
    raw = tiny_config(tmp_path, corpora, tiny_model, steps=2)
    raw["track"] = {"wandb": {"mode": "offline"}}
    with pytest.raises(ConfigError, match=r"track.wandb needs wandb"):
        train(parse_config(raw))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before any work


def test_track_section_is_strict():
    with pytest.raises(ConfigError, match="projct"):
        parse_config({**_minimal(), "track": {"wandb": {"projct": "p"}}})
    with pytest.raises(ConfigError, match="mode"):
        parse_config({**_minimal(), "track": {"wandb": {"mode": "sometimes"}}})


def _minimal() -> dict:
    return {
        "model": {"base": "x", "base_max_lr": 1e-3},
        "data": {"seq_len": 64, "sources": [{"name": "d", "paths": ["a.txt"]}]},
        "train": {"steps": 1, "global_batch_tokens": 64, "micro_batch_size": 1},
    }


def _tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {k: {e.step: e.value for e in acc.Scalars(k)} for k in acc.Tags()["scalars"]}


def test_one_record_gives_the_same_scalars_to_tensorboard_wandb_and_mlflow(tmp_path):
    """One path out (#28 item 10): the same keys and values in TensorBoard's event file,
    W&B's offline run and MLflow's store, the eval change as a fraction everywhere."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    raw = {**_minimal(), "track": {
        "wandb": {"mode": "offline", "project": "p"},
        "mlflow": {"tracking_uri": (tmp_path / "mlruns").as_uri(), "experiment": "e"},
    }}  # fmt: skip
    train = {"kind": "train", "step": 3, "tokens": 192, "loss": 2.5, "lr": 1e-3,
             "grad_norm": 0.75, "tokens_per_s": 1000.0, "tokens_per_s_per_device": 500.0,
             "mfu": 0.25, "peak_mem_gib": 1.5, "tokens_by_source": {"domain": 150, "general": 42}}  # fmt: skip
    evals = eval_record(3, 192, {"domain": 2.0, "general": 3.0}, {"domain": 2.5, "general": 3.0})
    tracker = Tracker(run_dir, config=parse_config(raw))
    tracker.log(train)
    tracker.log(evals)
    tracker.close()
    tracker.finish(run_dir)

    want = {**flat_metrics(train), **flat_metrics(evals)}
    assert want["eval/domain/rel_change"] == pytest.approx(-0.2)  # a fraction, not percent
    assert "eval/domain/rel_change_pct" not in want and want["train/loss"] == 2.5
    assert want["tokens/general"] == 42 and want["eval/general/ppl"] == pytest.approx(math.e**3)

    board = _tensorboard_scalars(run_dir / "tensorboard")
    assert set(board) == set(want)
    assert {k: v[3] for k, v in board.items()} == pytest.approx(want)

    (folder,) = (run_dir / "wandb").glob("offline-run-*")
    _, rows = _wandb_history(folder)
    logged = {k: v for k, v in rows[3].items() if not k.startswith("_")}
    assert logged == pytest.approx(want)

    client = mlflow_tracking.MlflowClient(tracking_uri=raw["track"]["mlflow"]["tracking_uri"])
    run_id = json.loads((run_dir / "trackers.json").read_text())["mlflow"]["id"]
    metrics = client.get_run(run_id).data.metrics
    assert metrics == pytest.approx(want)


def test_a_file_store_run_says_how_to_read_it(tmp_path, capsys):
    """MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE=true: the run's log says
    so with the command, and that command's setting is what MlflowClient needs (#28 item 5)."""
    uri = (tmp_path / "mlruns").as_uri()
    (backend,) = open_trackers(
        TrackSection(mlflow={"tracking_uri": uri, "experiment": "e"}), tmp_path, {}, False
    )
    backend.close()
    out = capsys.readouterr().out
    assert file_store_note(uri) in out
    assert f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {uri}" in out
    read = "from mlflow.tracking import MlflowClient; import sys; " + (
        "print([e.name for e in MlflowClient(sys.argv[1]).search_experiments()])"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ALLOW_FILE_STORE"}
    refused = subprocess.run([sys.executable, "-c", read, uri], env=env, capture_output=True)
    assert refused.returncode != 0 and b"MLFLOW_ALLOW_FILE_STORE" in refused.stderr
    env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    done = subprocess.run([sys.executable, "-c", read, uri], env=env, capture_output=True)
    assert done.returncode == 0 and "'e'" in done.stdout.decode(), done.stderr


def test_which_stores_are_file_stores(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert file_store_uri("file:///srv/mlruns") == "file:///srv/mlruns"
    assert file_store_uri(str(tmp_path / "m")) == (tmp_path / "m").as_uri()
    for other in ("http://host:5000", "sqlite:////srv/m.db", "databricks", None):
        assert file_store_uri(other) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///srv/env")
    assert mlflow_store(MlflowSection()) == "file:///srv/env"
    assert mlflow_store(MlflowSection(tracking_uri="http://h")) == "http://h"


@pytest.mark.skipif(
    importlib.util.find_spec("sqlalchemy") is not None, reason="the full mlflow is installed"
)
def test_a_sqlite_store_without_the_full_mlflow_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"sqlite: store needs the full mlflow \(pip install"):
        check_trackers(TrackSection(mlflow={"tracking_uri": "sqlite:////srv/m.db"}))
