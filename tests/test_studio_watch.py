"""Watching a run in the studio (#30 findings 8 and 12): the rendered report, the metrics
as CSV, checkpoint steps and the TensorBoard command for the charts, and one date and size
format on the Runs list. Run folders are written by hand, as tests/test_studio_compare.py
does, so these take a second; tests/test_studio_browser_watch.py drives the page."""

from __future__ import annotations

import csv
import io
import json
import struct
import zlib
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")

from fastapi.testclient import TestClient  # noqa: E402

from steep.artifacts.fmt import data_size, timestamp  # noqa: E402
from steep.artifacts.metrics import eval_record  # noqa: E402
from steep.artifacts.runstatus import write_status  # noqa: E402
from steep.studio.app import Settings, create_app  # noqa: E402
from steep.studio.jobs import JobQueue  # noqa: E402


def _png() -> bytes:
    """A real 1x1 PNG, so a browser shows it (a plot as the report links it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


PNG = _png()
REPORT = "# steep run watched\n\n| set | change |\n|---|---:|\n| domain | -10.0% |\n\n![loss](plots/loss.png)\n"


def write_run(home: Path, name: str = "watched") -> Path:
    """A finished run with evals, a phase event, two checkpoints, a report and TensorBoard."""
    run = home / "runs" / name
    (run / "plots").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"run": {"name": name}}))
    base = {"domain": 3.0, "general": 2.0}
    lines = [eval_record(0, 0, base, base)]
    for step in range(1, 5):
        lines.append({"kind": "train", "step": step, "tokens": 100 * step, "loss": 3.0 - step / 10})
    lines.insert(3, {"kind": "event", "event": "phase", "step": 2, "phase": "anneal"})
    lines.insert(4, {"kind": "event", "event": "mixture_change", "step": 3, "changed": ["w"]})
    budget = {"action": "replay", "reason": "general +2% > 1%", "regression": 0.02}
    lines.append({"kind": "event", "event": "forgetting_budget", "step": 4, **budget})
    lines.append(eval_record(4, 400, {"domain": 2.7, "general": 2.1}, base))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    for step in (2, 4):
        (run / "checkpoints" / f"step_{step}").mkdir(parents=True)
    (run / "checkpoints" / ".step_6").mkdir()  # being written: not a checkpoint yet
    (run / "tensorboard").mkdir()
    (run / "report.md").write_text(REPORT)
    (run / "plots" / "loss.png").write_bytes(PNG)
    write_status(run, "done")
    return run


@pytest.fixture
def client(_steep_home: Path) -> TestClient:
    write_run(_steep_home)
    return TestClient(create_app(Settings(home=_steep_home, run_jobs=False)))


def test_the_report_renders_with_its_plots(client: TestClient) -> None:
    page = client.get("/runs/r/watched/report")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert "<h1>steep run watched</h1>" in html and "<table>" in html  # markdown, not text
    src = '<img src="/api/runs/watched/files/plots/loss.png"'
    assert src in html and 'href="/runs/r/watched"' in html  # back to the run
    assert client.get("/api/runs/watched/files/plots/loss.png").content == PNG  # it loads
    missing = client.get("/runs/r/nope/report")
    assert missing.status_code == 404


def test_a_job_report_and_a_run_without_one(client: TestClient, _steep_home: Path) -> None:
    run = _steep_home / "runs" / "watched"
    job = JobQueue(_steep_home).submit("watched", "run: {name: watched}\n", run)
    html = client.get(f"/runs/{job.id}/report").text
    assert f'<img src="/api/jobs/{job.id}/files/plots/loss.png"' in html
    (run / "report.md").unlink()
    page = client.get(f"/runs/{job.id}/report")
    assert page.status_code == 404 and "no report yet" in page.text


def test_metrics_download_as_csv(client: TestClient, _steep_home: Path) -> None:
    r = client.get("/api/runs/watched/metrics.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="watched-metrics.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["step"] for row in rows] == ["0", "1", "2", "3", "4"]
    assert rows[0]["eval_loss:domain"] == "3.0" and rows[0]["loss"] == ""  # step 0: eval only
    assert float(rows[4]["loss"]) == pytest.approx(2.6) and rows[4]["tokens"] == "400"
    assert rows[4]["eval_loss:general"] == "2.1"
    job = JobQueue(_steep_home).submit("watched", "{}\n", _steep_home / "runs" / "watched")
    assert client.get(f"/api/jobs/{job.id}/metrics.csv").text == r.text


def test_markers_and_tensorboard_come_with_the_metrics(client: TestClient, _steep_home) -> None:
    m = client.get("/api/runs/watched/metrics").json()
    assert m["checkpoints"] == [2, 4]  # the charts mark them; .step_6 is still being written
    assert any(r.get("event") == "phase" for r in m["records"])
    tb = _steep_home / "runs" / "watched" / "tensorboard"
    assert m["files"]["tensorboard_command"] == f"tensorboard --logdir {tb}"


def test_one_date_and_size_format(client: TestClient, _steep_home: Path) -> None:
    job = JobQueue(_steep_home).submit("j", "{}\n", _steep_home / "runs" / "elsewhere")
    body = client.get("/api/runs").json()
    assert body["jobs"][0]["created_text"] == timestamp(job.created)
    assert body["jobs"][0]["created_text"].endswith(" UTC")
    run = body["runs"][0]
    assert run["created_text"] == timestamp(run["created"]) and run["created_text"][4] == "-"
    assert timestamp("2026-12-07T23:56:13+01:00") == "2026-12-07 22:56 UTC"
    assert timestamp(1796684173.0) == timestamp("2026-12-07T22:56:13Z")
    assert "2026-12-07T" not in client.get("/compare").text  # the picker's dates too
    assert data_size(425_800) == "425.8 KB"
    # the run page's phase line: the size as the CLI's rendezvous line writes it
    run_dir = _steep_home / "runs" / "watched"
    phase = {"what": "tokenizing", "done": 1, "total": 425_800, "started": 1.0, "time": 2.0}
    write_status(run_dir, "running", phase=phase)
    watched = JobQueue(_steep_home).submit("w", "{}\n", run_dir)
    assert client.get(f"/api/jobs/{watched.id}/metrics").json()["phase_size"] == "425.8 KB"


def test_data_hub_pages_write_sizes_and_dates_as_the_cli(_steep_home: Path) -> None:
    """The Data Hub's sizes by fmt.data_size (decimal, as ``steep data list``), not Jinja's
    KiB, and its dates by fmt.timestamp, as the Runs list and Compare write them."""
    from steep.datahub.catalog import Catalog
    from steep.studio import uploads
    from tests.test_studio_data_pages import make_dataset

    make_dataset(_steep_home)
    manifest = Catalog().get("notes@1").manifest
    upload = uploads.upload_dir(_steep_home, uploads.new_upload(_steep_home))
    (upload / "big.jsonl").write_bytes(b"x" * 425_800)
    c = TestClient(create_app(Settings(home=_steep_home, run_jobs=False)))
    listing, page = c.get("/datasets").text, c.get("/datasets/notes").text
    size = data_size(manifest["bytes"])
    assert f">{size}<" in listing and f"{size} of text" in page
    assert ">425.8 KB<" in listing and "KiB" not in listing
    assert timestamp(manifest["created"]) in listing and timestamp(manifest["created"]) in page
