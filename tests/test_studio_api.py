"""Studio API: access token, uploads, config validation, the job queue and live metrics.

Jobs here run a tiny Python command instead of ``steep train`` (the runner takes the
command as a parameter), so the queue, restart and dead-process logic is tested in
seconds; the browser test runs a real training job.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")

from fastapi.testclient import TestClient  # noqa: E402

from steep.studio.app import Settings, create_app  # noqa: E402
from steep.studio.auth import check_bind  # noqa: E402
from steep.studio.forms import force_no_remote_code  # noqa: E402
from steep.studio.jobs import JobQueue  # noqa: E402
from steep.studio.runner import Runner, alive  # noqa: E402
from tests.conftest import WORDS_A, make_tiny_model, synthetic_docs  # noqa: E402

TOKEN = "t0ken-for-tests-0123456789"
CHANGE = {"X-Steep-Request": "1"}


def client(home: Path, **kw) -> TestClient:
    settings = Settings(home=home, run_jobs=False, **kw)
    return TestClient(create_app(settings))


def sleeper(seconds: float = 60, code: int = 0):
    """A job command: print, sleep, exit with ``code``."""

    def command(job):
        script = f"import sys,time; print('hello from job', flush=True); time.sleep({seconds}); sys.exit({code})"
        return [sys.executable, "-c", script]

    return command


def waiter(go: Path):
    """A job command: print, then wait until ``go`` exists (at most 120 s), exit 0."""

    def command(job):
        script = (
            "import os,sys,time; print('hello from job', flush=True); end = time.time() + 120\n"
            f"while not os.path.exists({str(go)!r}) and time.time() < end: time.sleep(0.05)"
        )
        return [sys.executable, "-c", script]

    return command


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- security --------------------------------------------------------------------------------


def test_token_required_off_localhost(_steep_home, capsys):
    check_bind("127.0.0.1", None)
    with pytest.raises(ValueError, match="--token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ValueError, match="16 characters"):
        check_bind("0.0.0.0", "short")
    check_bind("0.0.0.0", TOKEN)

    from steep.cli import main

    assert main(["studio", "--host", "0.0.0.0", "--port", "1"]) == 2  # refuses before serving
    assert "--token" in capsys.readouterr().err

    c = client(_steep_home, token=TOKEN)
    assert c.get("/api/jobs").status_code == 401
    assert c.get("/datasets").status_code == 401
    assert c.get("/api/jobs", headers={"X-Steep-Token": "wrong" * 5}).status_code == 401
    assert c.get("/api/jobs", headers={"X-Steep-Token": TOKEN}).status_code == 200
    assert c.get("/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert c.get(f"/runs?token={'x' * 26}", follow_redirects=False).status_code == 401
    r = c.get(f"/runs?token={TOKEN}", follow_redirects=False)  # a link with the token
    assert r.status_code in (302, 303, 307) and r.headers["location"] == "/runs"
    assert "httponly" in r.headers["set-cookie"].lower()
    assert c.get("/runs").status_code == 200  # the cookie carries it from now on
    assert c.get("/static/studio.js").status_code == 200


def test_changes_need_the_csrf_header_and_known_host(_steep_home):
    c = client(_steep_home)
    assert c.post("/api/uploads").status_code == 403
    assert c.post("/api/uploads", headers=CHANGE).status_code == 200
    local = client(_steep_home, allowed_hosts=("127.0.0.1", "localhost"))
    assert local.get("/runs", headers={"Host": "evil.example:8700"}).status_code == 400
    assert local.get("/runs", headers={"Host": "localhost:8700"}).status_code == 200


def test_upload_refuses_traversal_symlinks_and_oversize(_steep_home, tmp_path):
    c = client(_steep_home, max_upload_bytes=4000)
    up = c.post("/api/uploads", headers=CHANGE).json()["id"]
    folder = _steep_home / "uploads" / up
    outside = tmp_path / "outside.jsonl"
    outside.write_text("keep me\n")

    def put(name: str, body: bytes = b'{"text": "x"}\n', **kw):
        return c.put(f"/api/uploads/{up}/{name}", content=body, headers=CHANGE, **kw)

    for bad in ("..%2Foutside.jsonl", "..%2F..%2Fx.jsonl", "%2Fetc%2Fx.jsonl", ".hidden.jsonl",
                "a..b.jsonl", "run.sh", "x%00.jsonl", "..", "%5C..%5Cx.jsonl"):  # fmt: skip
        r = put(bad)
        assert r.status_code in (400, 404, 405), (bad, r.status_code)  # 405: URL normalised
    escape = c.put("/api/uploads/..%2F..%2Fdatasets/x.jsonl", content=b"x", headers=CHANGE)
    assert escape.status_code in (400, 404)
    assert (
        c.put("/api/uploads/0123456789abcdef/x.jsonl", content=b"x", headers=CHANGE).status_code
        == 404
    )

    (folder / "evil.jsonl").symlink_to(outside)  # planted link: never written through
    assert put("evil.jsonl", b'{"text": "pwned"}\n').status_code == 409
    assert outside.read_text() == "keep me\n"

    link_id = "fedcba9876543210"  # an upload folder that is a link out of the workspace
    (_steep_home / "uploads" / link_id).symlink_to(tmp_path)
    r = c.put(f"/api/uploads/{link_id}/new.jsonl", content=b"x", headers=CHANGE)
    assert r.status_code == 400 and not (tmp_path / "new.jsonl").exists()

    assert put("big.jsonl", b"x" * 5000).status_code == 413  # Content-Length says too much

    def chunks():  # no Content-Length: refused while streaming
        for _ in range(10):
            yield b"y" * 1000

    assert put("streamed.jsonl", chunks()).status_code == 413
    assert put("ok.jsonl").status_code == 200
    assert sorted(p.name for p in folder.iterdir()) == ["evil.jsonl", "ok.jsonl"]  # no partials
    assert put("ok.jsonl").status_code == 409  # no overwrite


def test_upload_makes_a_dataset_listed_on_the_data_hub(_steep_home):
    c = client(_steep_home)
    up = c.post("/api/uploads", headers=CHANGE).json()["id"]
    body = "".join(json.dumps({"text": t}) + "\n" for t in synthetic_docs(WORDS_A, 30, 1))
    assert c.put(f"/api/uploads/{up}/docs.jsonl", content=body, headers=CHANGE).status_code == 200
    r = c.post(
        "/api/datasets", json={"name": "code", "upload": up, "langid": False}, headers=CHANGE
    )
    assert r.status_code == 200, r.text
    assert r.json()["ref"] == "code@1" and r.json()["documents"] == 30
    assert not (_steep_home / "uploads" / up).exists()
    assert "code" in c.get("/datasets").text
    again = c.post("/api/uploads", headers=CHANGE).json()["id"]
    c.put(f"/api/uploads/{again}/docs.jsonl", content=body, headers=CHANGE)
    r = c.post("/api/datasets", json={"name": "code", "upload": again}, headers=CHANGE)
    assert r.status_code == 400 and "exists" in r.json()["error"]


# --- config ----------------------------------------------------------------------------------


def test_config_errors_are_returned_and_block_launch(_steep_home, tmp_path):
    c = client(_steep_home)
    form = {
        "name": "bad",
        "base": str(_steep_home / "models" / "nowhere"),
        "sources": [{"dataset": "missing", "weight": 1}],
        "steps": 0,
        "global_batch_tokens": 1000,
        "seq_len": 64,
        "extra_yaml": "train:\n  shedule: wsd\n",
    }
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert not res["ok"]
    text = "\n".join(res["errors"])
    assert "train.steps" in text and "greater than or equal to 1" in text
    assert "unknown field 'train.shedule'" in text and "Did you mean 'schedule'" in text
    assert "shedule: wsd" in res["yaml"]  # the config as resolved so far is shown
    r = c.post("/api/jobs", json=form, headers=CHANGE)
    assert r.status_code == 422 and r.json()["errors"]
    assert c.get("/api/jobs").json() == []

    form.update(steps=10, global_batch_tokens=128, extra_yaml="")
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert any("no dataset named 'missing'" in e for e in res["errors"])
    form.update(sources=[], extra_yaml="data:\n  sources:\n  - {name: x, paths: [/etc/passwd]}\n")
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert any("outside the workspace" in e for e in res["errors"])
    form.update(gpus=2, cuda_visible_devices="0,1,2")
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert any("CUDA_VISIBLE_DEVICES lists 3" in e for e in res["errors"])


def test_valid_form_resolves_with_studio_policy(_steep_home):
    tiny_model = make_tiny_model(_steep_home / "models" / "tiny")  # studio jobs read the workspace
    c = client(_steep_home)
    up = c.post("/api/uploads", headers=CHANGE).json()["id"]
    body = "".join(json.dumps({"text": t}) + "\n" for t in synthetic_docs(WORDS_A, 20, 1))
    c.put(f"/api/uploads/{up}/d.jsonl", content=body, headers=CHANGE)
    c.post("/api/datasets", json={"name": "dom", "upload": up, "langid": False}, headers=CHANGE)
    form = {
        "name": "ok",
        "base": str(tiny_model),
        "base_max_lr": 1e-3,
        "sources": [{"dataset": "dom@1", "weight": 2, "role": "domain"}],
        "steps": 5,
        "global_batch_tokens": 128,
        "seq_len": 64,
        "lr_fraction": 0.5,
        "extra_yaml": "run:\n  out_dir: /tmp/elsewhere\n",
    }
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert res["ok"], res["errors"]
    assert res["summary"]["max_lr"] == pytest.approx(5e-4)
    assert "dataset: dom@1" in res["yaml"] and "device: cpu" in res["yaml"]
    assert str(_steep_home / "runs") in res["yaml"] and "/tmp/elsewhere" not in res["yaml"]
    assert any("out_dir" in w for w in res["warnings"])
    assert res["cuda_visible_devices"] == ""  # CPU: GPUs hidden from the job
    form["sources"][0]["length"] = {"min_tokens": 32, "upsample_tokens": 64, "upsample_times": 2}
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert res["ok"], res["errors"]
    assert (
        "length:\n      min_tokens: 32\n      upsample_tokens: 64\n      upsample_times: 2"
        in res["yaml"]
    )
    form["sources"][0]["length"] = {"upsample_times": 2}  # the schema's own check, by field
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert any("data.sources.0.length" in e and "upsample_tokens" in e for e in res["errors"])

    cfg = {"model": {"trust_remote_code": True, "x": [{"trust_remote_code": 1}]}}
    notes = force_no_remote_code(cfg, allowed=False)
    assert cfg == {"model": {"trust_remote_code": False, "x": [{"trust_remote_code": False}]}}
    assert len(notes) == 2 and "--trust-remote-code" in notes[0]
    kept = {"model": {"trust_remote_code": True}}
    assert force_no_remote_code(kept, allowed=True) == [] and kept["model"]["trust_remote_code"]


# --- jobs ------------------------------------------------------------------------------------


def _submit(queue: JobQueue, home: Path, n: int) -> list[int]:
    return [queue.submit(f"j{i}", "train: {}\n", home / "runs" / f"j{i}").id for i in range(n)]


def test_claims_are_atomic_across_studios(_steep_home):
    ids = _submit(JobQueue(_steep_home), _steep_home, 24)
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(owner: str) -> None:
        queue = JobQueue(_steep_home)  # each "studio" has its own connection
        while (job := queue.claim_next(owner)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"s{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == ids  # every job once: none lost, none twice


def _printed_hello(log: Path) -> bool:
    """The job's own output line, not the command line echoed above it (which quotes it)."""
    return "hello from job" in log.read_text().splitlines()


def test_restart_keeps_and_adopts_jobs_without_duplicates(_steep_home):
    queue = JobQueue(_steep_home)
    first, second = _submit(queue, _steep_home, 2)
    go = _steep_home / "go"  # the first job runs until the test has seen it adopted
    a = Runner(queue, max_jobs=1, command_for=waiter(go))
    a.tick()
    job = queue.get(first)
    assert job.status == "running" and queue.get(second).status == "queued"
    wait_for(lambda: _printed_hello(job.log_path), what="job output")
    pid = job.pid
    del a  # the studio stops (its runner never signalled anything)

    b = Runner(JobQueue(_steep_home), max_jobs=1, command_for=sleeper(0))
    b.tick()
    again = b.queue.get(first)
    assert again.status == "running" and again.pid == pid  # adopted, not started again
    assert b.queue.get(second).status == "queued"
    assert job.log_path.read_text().splitlines().count("hello from job") == 1
    go.touch()

    def finished(job_id: int) -> str | None:
        b.tick()
        status = b.queue.get(job_id).status
        return status if status in ("done", "failed") else None

    assert wait_for(lambda: finished(first), what="first job done") == "done"
    assert b.queue.get(first).exit_code == 0
    assert wait_for(lambda: finished(second), what="second job done") == "done"
    for j in (first, second):
        assert b.queue.get(j).log_path.read_text().splitlines().count("hello from job") == 1


def test_claimed_but_never_started_job_is_queued_again(_steep_home, monkeypatch):
    queue = JobQueue(_steep_home)
    (job_id,) = _submit(queue, _steep_home, 1)
    queue.claim_next("a studio that stopped right after claiming")
    import steep.studio.runner as runner_mod

    monkeypatch.setattr(runner_mod, "START_GRACE_S", 0.0)
    Runner(queue, max_jobs=0).tick()
    assert queue.get(job_id).status == "queued"


def test_dead_process_is_failed_with_its_log_kept(_steep_home):
    queue = JobQueue(_steep_home)
    (job_id,) = _submit(queue, _steep_home, 1)
    runner = Runner(queue, command_for=sleeper(60))
    runner.tick()
    job = queue.get(job_id)
    wait_for(lambda: _printed_hello(job.log_path), what="job output")
    child_pids = [int(p) for p in os.popen(f"pgrep -g {job.pid}").read().split()]
    os.kill(job.pid, signal.SIGKILL)  # the wrapper dies: no exit status is ever written
    wait_for(lambda: not alive(job.pid, job.pid_start), what="the wrapper's death")
    runner.tick()
    dead = queue.get(job_id)
    assert dead.status == "failed" and "died" in dead.error
    log = dead.log_path.read_text()
    assert "hello from job" in log.splitlines() and "job failed" in log
    wait_for(lambda: not any(alive(p, None) for p in child_pids if p != job.pid), what="orphans")


def test_exit_codes_and_cancel(_steep_home):
    queue = JobQueue(_steep_home)
    (bad,) = _submit(queue, _steep_home, 1)
    runner = Runner(queue, max_jobs=1, command_for=sleeper(0, 3))

    def settled(job_id: int) -> bool:
        runner.tick()
        return queue.get(job_id).status in ("done", "failed", "cancelled")

    wait_for(lambda: settled(bad), what="failing job")
    assert queue.get(bad).status == "failed" and queue.get(bad).exit_code == 3
    assert "code 3" in queue.get(bad).error
    runner.command_for = sleeper(60)
    (slow,) = _submit(queue, _steep_home, 1)
    runner.tick()
    assert queue.get(slow).status == "running"
    wait_for(lambda: "hello" in queue.get(slow).log_path.read_text(), what="slow job output")
    queue.request_cancel(slow)
    wait_for(lambda: settled(slow), what="cancel")
    assert queue.get(slow).status == "cancelled"
    (queued,) = _submit(queue, _steep_home, 1)
    c = client(_steep_home)
    assert c.post(f"/api/jobs/{queued}/cancel", headers=CHANGE).json()["status"] == "cancelled"
    assert c.post(f"/api/jobs/{queued}/cancel", headers=CHANGE).status_code == 409


def test_metrics_endpoint_returns_new_points_incrementally(_steep_home):
    queue = JobQueue(_steep_home)
    (job_id,) = _submit(queue, _steep_home, 1)
    run_dir = queue.get(job_id).run_dir
    run_dir.mkdir(parents=True)
    metrics = run_dir / "metrics.jsonl"
    c = client(_steep_home)
    url = f"/api/jobs/{job_id}/metrics"
    assert c.get(url).json()["records"] == []  # not started yet

    def rec(step: int) -> str:
        return json.dumps({"kind": "train", "step": step, "loss": 3.0 - step / 10, "lr": 1e-4})

    ev = {"kind": "eval", "step": 0, "sets": {"d": {"loss": 3.0, "rel_change": 0.0}}}
    metrics.write_text(json.dumps(ev) + "\n" + rec(1) + "\n")
    first = c.get(url).json()
    assert [r["kind"] for r in first["records"]] == ["eval", "train"]
    with open(metrics, "a") as f:
        f.write(rec(2) + "\n" + rec(3)[:10])  # the last line is still being written
    second = c.get(url, params={"offset": first["offset"], "inode": first["inode"]}).json()
    assert [r["step"] for r in second["records"]] == [2] and not second["reset"]
    with open(metrics, "a") as f:
        f.write(rec(3)[10:] + "\n")
    third = c.get(url, params={"offset": second["offset"], "inode": second["inode"]}).json()
    assert [r["step"] for r in third["records"]] == [3]
    same = c.get(url, params={"offset": third["offset"], "inode": third["inode"]}).json()
    assert same["records"] == []
    tmp = metrics.with_suffix(".tmp")  # a resume rewrites the file: the client starts over
    tmp.write_text(json.dumps(ev) + "\n")
    os.replace(tmp, metrics)
    fourth = c.get(url, params={"offset": third["offset"], "inode": third["inode"]}).json()
    assert fourth["reset"] and len(fourth["records"]) == 1


def test_model_download_streams_a_zip_of_regular_files(_steep_home, tmp_path):
    model = _steep_home / "models" / "mini"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "model.safetensors").write_bytes(os.urandom(3 << 20))
    (tmp_path / "secret.txt").write_text("not part of the model")
    (model / "link").symlink_to(tmp_path)
    (model / "file-link.txt").symlink_to(tmp_path / "secret.txt")
    c = client(_steep_home)
    assert "mini" in c.get("/models").text
    r = c.get("/api/models/mini/download")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    assert sorted(zf.namelist()) == ["mini/config.json", "mini/model.safetensors"]
    assert zf.read("mini/model.safetensors") == (model / "model.safetensors").read_bytes()
    assert c.get("/api/models/nope/download").status_code == 404


def test_data_hub_page_shows_the_funnel(_steep_home):
    version = _steep_home / "datasets" / "web" / "v2"
    version.mkdir(parents=True)
    funnel = [
        {"step": "gopher_quality", "docs_in": 100, "docs_out": 90, "dropped": {"short": 10}},
        {"step": "exact_dedup", "docs_in": 90, "docs_out": 80, "dropped": {"duplicate": 10}},
    ]
    manifest = {"documents": 80, "bytes": 9000, "languages": {"en": 80}, "funnel": funnel}
    (version / "manifest.json").write_text(json.dumps(manifest))
    page = client(_steep_home).get("/datasets").text
    assert 'data-ref="web@2"' in page and "100 &rarr; 80 documents" in page
    assert "exact_dedup" in page and "duplicate 10" in page and "88.9%" in page
