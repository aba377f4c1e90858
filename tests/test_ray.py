"""The Data Hub on Ray: `--executor ray` gives what the local pool gives, on a real local
Ray instance (ray.init with 2 CPUs; no mocks). Skipped, with the reason, without Ray."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from steep.cli import main
from steep.datahub.catalog import Catalog
from steep.workspace import Workspace
from tests.conftest import write_jsonl

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'steep[ray]')")

RECIPE = "web"  # a packaged recipe, by name
# fields that differ between two publications of the same content
VOLATILE = {"created", "name", "argv", "parent"}


@pytest.fixture(scope="module", autouse=True)
def _ray_instance():
    yield
    if ray.is_initialized():
        ray.shutdown()


def _corpus(root: Path) -> list[str]:
    """Real English prose (Python's own help topics), with exact and near copies planted."""
    from pydoc_data.topics import topics

    docs = [text for _, text in sorted(topics.items()) if len(text) > 2000][:40]
    near = [d.replace(" the ", " a ", 2) for d in docs[:8]]  # MinHash finds these
    files = []
    for i in range(4):  # several files: several tasks
        chunk = (docs + docs[:5] + near)[i::4]
        files.append(str(write_jsonl(root / f"part{i}.jsonl", chunk)))
    return files


def _strip(manifest: dict) -> dict:
    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if k not in VOLATILE}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return clean(manifest)


def _digest(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_ray_gives_the_local_pool_s_datasets(tmp_path: Path, _steep_home: Path) -> None:
    files = _corpus(tmp_path / "in")
    engines = {"loc": ["--executor", "local"], "ray": ["--executor", "ray"]}
    for name, engine in engines.items():
        engine = [*engine, "--workers", "2"]
        assert main(["data", "add", name, *files, *engine]) == 0
        assert main(["data", "prepare", name, "--recipe", str(RECIPE), *engine]) == 0
    assert ray.is_initialized()  # the ray runs really went through Ray
    catalog = Catalog(Workspace(_steep_home).datasets)
    for version in (1, 2):
        loc, on_ray = catalog.get(f"loc@{version}"), catalog.get(f"ray@{version}")
        assert _strip(on_ray.manifest) == _strip(loc.manifest)
        assert on_ray.manifest["parent"] == (None if version == 1 else "ray@1")
        assert _digest(on_ray.shards) == _digest(loc.shards)
        assert _digest(on_ray.exclusions) == _digest(loc.exclusions)
    funnel = {s["step"]: s for s in catalog.get("ray@2").manifest["funnel"]}
    assert funnel["exact_dedup"]["docs_in"] > funnel["exact_dedup"]["docs_out"]  # it did work
    assert funnel["minhash_dedup"]["docs_in"] > funnel["minhash_dedup"]["docs_out"]


@pytest.mark.parametrize("listening", [False, True], ids=["nothing-listens", "silent"])
def test_a_ray_address_that_does_not_answer_is_one_line_and_writes_nothing(
    tmp_path: Path, listening: bool
) -> None:
    """Nothing listens at the address; or something accepts and never answers (a hung
    head, another service), where ray.init alone waits for minutes: one line naming it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        if listening:
            s.listen(8)  # accepts (the kernel does), never reads or writes
        else:
            s.close()
        home = tmp_path / "home"
        data = write_jsonl(tmp_path / "d.jsonl", ["one document"])
        cmd = [sys.executable, "-m", "steep", "data", "add", "d", str(data), "--executor", "ray"]
        proc = subprocess.run(
            [*cmd, "--ray-address", f"127.0.0.1:{port}"],
            env={**os.environ, "STEEP_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"steep data: error: cannot reach the Ray cluster at 127.0.0.1:{port}")
    assert ("did not answer within" in last) == listening
    assert not (home / "datasets").exists()


def test_a_worker_killed_mid_unit_is_retried_with_no_duplicates(
    tmp_path: Path, _steep_home: Path
) -> None:
    """SIGKILL the Ray worker while it ingests a unit: Ray runs the task again, and the
    dataset equals the one an undisturbed local run makes (no document twice or lost)."""
    import contextlib
    import signal
    import threading
    import time

    from steep.data.executor import LocalExecutor, RayExecutor
    from steep.datahub.ingest import add_dataset

    big = tmp_path / "big.jsonl"
    with open(big, "w", encoding="utf-8") as f:  # a few seconds of ingest in one unit
        for i in range(150_000):
            f.write(json.dumps({"text": f"document number {i} about rivers and kings"}) + "\n")
    reference = add_dataset("ref", [str(big)], langid=False, executor=LocalExecutor(1))
    executor = RayExecutor(num_cpus=2)
    killed: list[int] = []
    staging = Workspace(_steep_home).datasets / "retried"

    def shard() -> str:
        """'half': the unit's shard is being written (row groups in it); 'done', or 'no'."""
        if list(staging.glob(".partial-*/shards/*.parquet")):
            return "done"
        parts = list(staging.glob(".partial-*/shards/.*.tmp"))
        return "half" if parts and parts[0].stat().st_size > 4096 else "no"

    def killer() -> None:
        """Find the worker running the unit; stop it (SIGSTOP) each time it is looked at,
        so what is seen stays true until the SIGKILL: it dies with its shard half written."""
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            for proc in Path("/proc").iterdir():
                try:
                    cmd = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if proc.name.isdigit() and cmd.startswith(b"ray::ingest_unit"):
                    pid = int(proc.name)
                    with contextlib.suppress(ProcessLookupError):  # it moved on: look again
                        while time.time() < deadline:
                            os.kill(pid, signal.SIGSTOP)
                            if shard() == "half":
                                os.kill(pid, signal.SIGKILL)
                                killed.append(pid)
                                return
                            if shard() == "done":  # too late (the assert says so)
                                os.kill(pid, signal.SIGCONT)
                                return
                            os.kill(pid, signal.SIGCONT)
                            time.sleep(0.02)
            time.sleep(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    retried = add_dataset("retried", [str(big)], langid=False, executor=executor)
    thread.join()
    assert killed, "no Ray worker was seen half-way through the unit"
    assert retried.manifest["documents"] == reference.manifest["documents"] == 150_000
    assert _digest(retried.shards) == _digest(reference.shards)
    assert _digest(retried.exclusions) == _digest(reference.exclusions)


def test_ray_tokenizes_as_the_job_does(tmp_path: Path, _steep_home: Path) -> None:
    """Tokenizing on Ray (units as Ray tasks) writes the shards tokenizing in one process
    writes, file by file; and `steep data tokenize --executor ray` serves a dataset."""
    from steep.data.executor import RayExecutor
    from steep.data.tokenize import tokenize_source
    from steep.model.io import byte_tokenizer

    files = _corpus(tmp_path / "in")
    kw = {"heldout_fraction": 0.2, "unit_bytes": 8_000}
    here = tokenize_source("c", files, byte_tokenizer(), tmp_path / "a", **kw)
    on_ray = tokenize_source(
        "c", files, byte_tokenizer(), tmp_path / "b", executor=RayExecutor(num_cpus=2), **kw
    )
    assert here.info["units"] > len(files)  # big files were cut
    assert on_ray.info["splits"] == here.info["splits"]
    shards = [e["path"] for s in ("train", "heldout") for e in here.info["splits"][s]["shards"]]
    for sub in shards:
        assert _digest(sorted((on_ray.dir / sub).iterdir())) == _digest(
            sorted((here.dir / sub).iterdir())
        )

    assert main(["data", "add", "t", *files, "--executor", "ray", "--no-langid"]) == 0
    args = ["data", "tokenize", "t", "--base", "bytes", "--executor", "ray", "--unit-mb", "0.01"]
    assert main(args) == 0
    (made,) = Workspace(_steep_home).token_cache.glob("t-v1-*")
    info = json.loads((made / "source.json").read_text())
    assert info["version"] == 2 and len(info["splits"]["train"]["shards"]) > 1
