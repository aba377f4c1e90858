"""Dataset refs in the hub use the Data Hub catalog's spelling (``name@1``) wherever they
come from, and ``name@v1`` is still accepted as input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from steep.datahub.catalog import Catalog
from steep.hub import Hub, HubError


def _dataset(home: Path, name: str, version: int) -> Path:
    folder = home / "datasets" / name / f"v{version}"
    folder.mkdir(parents=True)
    manifest = {"name": name, "version": version, "documents": 10, "bytes": 100}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _run_with_model(home: Path, name: str, dataset: str, lineage_ref: str) -> Path:
    """A finished run as the folders show it: config naming ``dataset``, and a model whose
    steep.json records the source's dataset as ``lineage_ref``."""
    run = home / "runs" / name
    model = run / "model"
    model.mkdir(parents=True)
    (run / "config.yaml").write_text(
        "model:\n  base: random_init\ntrain:\n  steps: 2\n  lr_fraction: 0.1\n"
        f"data:\n  sources:\n  - {{name: d, dataset: '{dataset}', weight: 1}}\n"
    )
    (model / "config.json").write_text("{}")
    lineage = {
        "kind": "cpt",
        "run_dir": str(run),
        "base": {"source": "random_init"},
        "data": [{"name": "d", "weight": 1, "dataset": {"ref": lineage_ref}}],
    }
    (model / "steep.json").write_text(json.dumps(lineage))
    return model


def test_a_versioned_and_a_bare_dataset_name_give_the_catalogs_ref(_steep_home: Path) -> None:
    home = _steep_home
    version_dir = _dataset(home, "mydata", 1)
    pinned = _run_with_model(home, "pinned", "mydata@1", "mydata@1")
    latest = _run_with_model(home, "latest", "mydata", "mydata@v1")  # older spelling on disk
    assert Catalog(home / "datasets").get("mydata").ref == "mydata@1"

    hub = Hub()
    runs = {r["name"]: r for r in hub.runs()}
    assert runs["pinned"]["datasets"] == ["mydata@1"]
    assert runs["latest"]["datasets"] == ["mydata@1"]  # the bare name resolves to v1
    assert [s["ref"] for s in runs["latest"]["sources"]] == ["mydata@1"]

    found = hub.dataset("mydata@v1")  # the old spelling still finds it
    assert found["ref"] == "mydata@1" and found["version"] == 1
    assert hub.dataset("mydata@1") == found and hub.dataset("mydata") == found
    assert sorted(found["used_by"]) == ["latest", "pinned"]
    assert [d["ref"] for d in hub.datasets()] == ["mydata@1"]
    with pytest.raises(HubError, match="no dataset 'mydata@2'"):
        hub.dataset("mydata@2")

    sha = hashlib.sha256((version_dir / "manifest.json").read_bytes()).hexdigest()
    for model in (pinned, latest):
        card = (model / "README.md").read_text()
        assert f"| mydata@1 | manifest {sha[:16]} |" in card
        assert "mydata@v1" not in card


def test_register_dataset_returns_the_catalogs_ref(_steep_home: Path) -> None:
    version_dir = _dataset(_steep_home, "web", 3)
    hub = Hub()
    assert hub.register_dataset(version_dir) == "web@3"
    assert [d["ref"] for d in hub.datasets()] == ["web@3"]
    with pytest.raises(HubError, match="not a dataset version folder"):
        hub.register_dataset(version_dir.parent)


def test_a_new_version_published_by_the_catalog_is_listed(_steep_home: Path) -> None:
    """The catalog no longer calls the hub; the next query's sync finds the version."""
    hub = Hub()
    assert hub.datasets() == []
    catalog = Catalog(_steep_home / "datasets")
    staging = catalog.staging("fresh", "k1")
    version = catalog.publish("fresh", staging, {"documents": 3, "bytes": 30})
    assert version.ref == "fresh@1"
    assert [(d["ref"], d["documents"]) for d in hub.datasets()] == [("fresh@1", 3)]


def test_run_status_comes_from_the_run_folder(_steep_home: Path) -> None:
    """Training writes status.json; the hub reads it (training never imports the hub)."""
    import json
    import socket

    from steep.artifacts.runstatus import read_status, write_status
    from steep.hub import Hub
    from steep.workspace import STATUS_FILE, Workspace

    run = Workspace(_steep_home).runs / "r1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("run: {name: r1}\n")
    write_status(run, "running")
    assert read_status(run).state == "running"
    assert Hub().run("r1")["status"] == "running"  # this process: alive
    dead = {"state": "running", "pid": 2**22 + 12345, "host": socket.gethostname()}
    (run / STATUS_FILE).write_text(json.dumps(dead))
    row = Hub().run("r1")
    assert row["status"] == "failed" and "ended without finishing" in row["error"]
    write_status(run, "failed", "DataError: no documents")
    assert Hub().run("r1")["error"] == "DataError: no documents"
