"""The Data Hub in the studio (#30): a dataset's own page (its versions as ``steep data
show`` describes them: funnel, drops with examples, languages, a preview), Prepare with a
packaged recipe as a child job that publishes the next version, and unused uploads listed
with a way to delete them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from steep.data.executor import LocalExecutor
from steep.datahub.ingest import add_dataset
from steep.datahub.pipeline import prepare
from tests.conftest import WORDS_B, synthetic_docs, write_jsonl

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")

from fastapi.testclient import TestClient  # noqa: E402

from steep.studio.app import Settings, create_app  # noqa: E402
from steep.studio.prepare_job import PrepareJobs, progress_line  # noqa: E402

CHANGE = {"X-Steep-Request": "1"}
INLINE = LocalExecutor(1)


def make_dataset(home: Path, name: str = "notes") -> list[str]:
    """``name@1``: prose documents, one of them twice (for a dedup step to drop)."""
    texts = synthetic_docs(WORDS_B, 12, seed=3)
    write_jsonl(home.parent / f"{name}.jsonl", [*texts, texts[0]])
    add_dataset(name, [str(home.parent / f"{name}.jsonl")], langid=False, executor=INLINE)
    return texts


def client(home: Path) -> TestClient:
    return TestClient(create_app(Settings(home=home, run_jobs=False)))


def test_a_dataset_has_a_page_with_funnel_drops_and_documents(_steep_home: Path) -> None:
    texts = make_dataset(_steep_home)
    prepare("notes@1", [("exact_dedup", {})], executor=INLINE)
    c = client(_steep_home)
    assert 'href="/datasets/notes#notes@2"' in c.get("/datasets").text  # the name is a link
    page = c.get("/datasets/notes").text
    assert page.index('id="notes@2"') < page.index('id="notes@1"')  # newest first
    assert "exact_dedup" in page and "13" in page and "12" in page  # the funnel: in, out
    assert "exact duplicate" in page or "duplicate" in page  # the drop reason ...
    assert texts[0][:40] in page  # ... with its example, and the documents' preview
    assert 'value="docs"' in page and 'value="web"' in page  # the recipe picker
    assert c.get("/datasets/nope").status_code == 404


def test_prepare_runs_the_command_as_a_child_job(
    _steep_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import steep.datahub.pipeline as pipeline

    make_dataset(_steep_home)

    def not_here(*args, **kwargs):
        raise AssertionError("prepare ran inside the studio's process")

    monkeypatch.setattr(pipeline, "prepare", not_here)
    c = client(_steep_home)
    bad = c.post("/api/datasets/notes/prepare", json={"recipe": "nope"}, headers=CHANGE)
    assert bad.status_code == 400 and "docs, web" in bad.json()["error"]
    missing = c.post("/api/datasets/other/prepare", json={"recipe": "docs"}, headers=CHANGE)
    assert missing.status_code == 404 and "no dataset named 'other'" in missing.json()["error"]

    job = c.post(
        "/api/datasets/notes/prepare", json={"recipe": "docs", "version": 1}, headers=CHANGE
    ).json()
    assert job["status"] == "running" and job["ref"] == "notes@1"
    deadline = time.time() + 180
    while job["status"] == "running" and time.time() < deadline:
        time.sleep(0.5)
        job = c.get(f"/api/prepare/{job['id']}").json()
    assert job["status"] == "done", job
    assert job["result"] == "notes@2"
    page = c.get("/datasets/notes").text
    assert 'id="notes@2"' in page and "with recipe <strong>docs</strong>" in page
    assert "gopher_repetition" in page  # the new version's funnel
    assert c.get("/api/prepare/ffffffffffff").status_code == 404


def test_a_failed_prepare_is_its_one_line_error(_steep_home: Path) -> None:
    """A recipe that keeps nothing: the job fails with the command's own one line."""
    write_jsonl(_steep_home.parent / "short.jsonl", ["too short to keep", "also too short"])
    add_dataset("short", [str(_steep_home.parent / "short.jsonl")], langid=False, executor=INLINE)
    c = client(_steep_home)
    job = c.post("/api/datasets/short/prepare", json={"recipe": "docs"}, headers=CHANGE).json()
    deadline = time.time() + 180
    while job["status"] == "running" and time.time() < deadline:
        time.sleep(0.5)
        job = c.get(f"/api/prepare/{job['id']}").json()
    assert job["status"] == "failed" and "nothing was published" in job["error"], job
    assert "\n" not in job["error"] and "Traceback" not in job["error"]
    assert "nothing was published" in c.get("/datasets/short").text


def test_unused_uploads_are_listed_and_can_be_deleted(_steep_home: Path) -> None:
    c = client(_steep_home)
    up = c.post("/api/uploads", headers=CHANGE).json()["id"]
    assert c.put(
        f"/api/uploads/{up}/a.jsonl", content=b'{"text": "x"}\n', headers=CHANGE
    ).is_success
    page = c.get("/datasets").text
    assert f'data-upload="{up}"' in page and "a.jsonl" in page and "delete-upload" in page
    assert c.delete(f"/api/uploads/{up}", headers=CHANGE).is_success
    assert f'data-upload="{up}"' not in c.get("/datasets").text
    assert c.get("/api/uploads").json() == []


def test_a_job_shows_its_progress_and_one_that_lost_its_studio_is_stopped(
    _steep_home: Path,
) -> None:
    """The state a page polls: the progress bar's last redraw while the child runs; a job
    whose studio ended (no exit.json, no thread here) is not left 'running' forever."""
    log = _steep_home / "log.txt"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"exact_dedup: scanning 1 shards\nstage 1/2:   0%|\rstage 1/2:  50%| 1/2\r")
    assert progress_line(log) == "stage 1/2:  50%| 1/2"
    jobs = PrepareJobs(_steep_home)
    folder = jobs.root / "0123456789ab"
    folder.mkdir(parents=True)
    record = {"id": folder.name, "ref": "notes@1", "name": "notes", "recipe": "web", "started": 1}
    (folder / "job.json").write_text(json.dumps(record))
    job = jobs.for_dataset("notes")[0]
    assert job["status"] == "failed" and "stopped" in job["error"]
