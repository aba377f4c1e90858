"""Studio security (issue #18, findings 3-9), each against a real studio.

A real app through FastAPI's TestClient, or a live uvicorn server on a free 127.0.0.1
port where the finding needs real concurrent connections or the access log of a real
``steep studio`` process. Nothing is mocked.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")

import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from steep.cli.studio import resolve_token  # noqa: E402
from steep.errors import UsageError  # noqa: E402
from steep.studio.app import Settings, create_app  # noqa: E402
from steep.studio.auth import LOCAL_HOSTS, TokenRedactor, check_bind  # noqa: E402
from steep.studio.jobs import JobQueue  # noqa: E402
from steep.studio.safe_yaml import MAX_YAML_CHARS, StudioYAMLError, load_studio_yaml  # noqa: E402

TOKEN = "t0ken-for-tests-0123456789"
CHANGE = {"X-Steep-Request": "1"}
MIB = 1 << 20


def client(home: Path, **kw) -> TestClient:
    """A studio whose server errors come back as 500s (what a browser would see)."""
    return TestClient(
        create_app(Settings(home=home, run_jobs=False, **kw)), raise_server_exceptions=False
    )


@contextmanager
def live_server(settings: Settings) -> Iterator[tuple[str, int]]:
    """The studio served by uvicorn in a thread, on a free 127.0.0.1 port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


# --- finding 3: bodies are capped, studio YAML takes no aliases ------------------------------


def test_request_bodies_over_the_cap_are_refused(_steep_home):
    c = client(_steep_home, max_upload_bytes=4 * MIB)
    big = {"name": "x", "extra_yaml": "# " + "x" * (MIB + 10)}
    r = c.post("/api/config/resolve", json=big, headers=CHANGE)  # Content-Length says too much
    assert r.status_code == 413 and "1,048,576" in r.json()["error"]

    def chunks():  # no Content-Length: refused while it streams
        yield b'{"name": "x", "extra_yaml": "'
        for _ in range(20):
            yield b"y" * (64 << 10)
        yield b'"}'

    r = c.post(
        "/api/config/resolve",
        content=chunks(),
        headers={**CHANGE, "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and "request body" in r.json()["error"]
    ok = c.post("/api/config/resolve", json={"name": "x"}, headers=CHANGE)
    assert ok.status_code == 200  # small bodies pass

    up = c.post("/api/uploads", headers=CHANGE).json()["id"]  # uploads: their own limit
    body = b'{"text": "x"}\n' * (2 * MIB // 14)
    put = c.put(f"/api/uploads/{up}/two-mib.jsonl", content=body, headers=CHANGE)
    assert put.status_code == 200, put.text


def test_studio_yaml_refuses_anchors_aliases_depth_and_size():
    assert load_studio_yaml("train:\n  steps: 3\n", "extra YAML") == {"train": {"steps": 3}}
    assert load_studio_yaml("<<: {a: 1}\nb: 2\n", "extra YAML") == {"a": 1, "b": 2}
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 9):  # like the 402-byte bomb: 9^9 strings once expanded
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        levels.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    started = time.process_time()
    with pytest.raises(StudioYAMLError, match=r"line 1: anchors and aliases \(&a, \*a\)") as exc:
        load_studio_yaml("\n".join(levels), "extra YAML")
    assert time.process_time() - started < 1
    assert isinstance(exc.value, yaml.YAMLError)  # forms.py's except catches it
    assert exc.value.message.startswith("extra YAML: line 1: anchors")
    for text in ("a: 1\nb: &x 2\n", "a: *x\n", "a: !!str &x 2\n", "- &x {k: v}\n"):
        with pytest.raises(StudioYAMLError, match="anchors and aliases"):
            load_studio_yaml(text, "extra YAML")
    with pytest.raises(StudioYAMLError, match="nested over"):
        load_studio_yaml("[" * 5000 + "]" * 5000, "extra YAML")
    with pytest.raises(StudioYAMLError, match="characters is over"):
        load_studio_yaml("a: " + "x" * MAX_YAML_CHARS, "extra YAML")


def test_new_run_form_refuses_yaml_aliases(_steep_home):
    c = client(_steep_home)
    form = {"name": "bomb", "extra_yaml": "a: &a [x, x]\nb: [*a, *a]\n"}
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert any("anchors and aliases" in e for e in res["errors"]), res["errors"]


# --- finding 4: the upload limit holds under concurrent PUTs --------------------------------


def _stored(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def test_concurrent_puts_share_one_upload_budget(_steep_home):
    settings = Settings(home=_steep_home, run_jobs=False, max_upload_bytes=MIB)
    body = b'{"text": "x"}\n' * (7 * MIB // 8 // 14)  # 0.875 MiB each, six at once
    results: list[object] = []
    with live_server(settings) as (host, port):
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.request("POST", "/api/uploads", headers=CHANGE)
        up = json.loads(conn.getresponse().read())["id"]
        barrier = threading.Barrier(6)

        def put(i: int) -> None:
            conn = http.client.HTTPConnection(host, port, timeout=30)
            try:
                conn.putrequest("PUT", f"/api/uploads/{up}/part{i}.jsonl")
                conn.putheader("X-Steep-Request", "1")
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders()
                conn.send(body[:1000])  # every PUT is in the server before any ends
                barrier.wait(10)
                time.sleep(0.3)
                conn.send(body[1000:])
                results.append(conn.getresponse().status)
            except OSError as exc:  # refused early: the server may close while we send
                results.append(type(exc).__name__)
            finally:
                conn.close()

        threads = [threading.Thread(target=put, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    folder = _steep_home / "uploads" / up
    assert results.count(200) == 1, results
    assert all(r in (200, 413) or isinstance(r, str) for r in results), results
    assert _stored(folder) <= MIB and sorted(p.suffix for p in folder.iterdir()) == [".jsonl"]


def test_workspace_upload_limit_and_released_reservations(_steep_home):
    c = client(_steep_home, max_upload_bytes=4000, max_workspace_upload_bytes=6000)
    first, second = (c.post("/api/uploads", headers=CHANGE).json()["id"] for _ in range(2))

    def put(up: str, name: str, body) -> object:
        return c.put(f"/api/uploads/{up}/{name}", content=body, headers=CHANGE)

    def chunks(n: int):
        for _ in range(n):
            yield b"y" * 1000

    r = put(first, "over.jsonl", chunks(5))  # refused mid-stream: its reservation is freed
    assert r.status_code == 413 and "4,000 bytes per upload" in r.json()["error"]
    assert put(first, "a.jsonl", b"a" * 3500).status_code == 200
    assert put(second, "b.jsonl", b"b" * 2000).status_code == 200
    r = put(second, "c.jsonl", b"c" * 1000)  # 6,500 in the workspace's uploads
    assert r.status_code == 413 and "6,000 bytes" in r.json()["error"]
    assert "uploads" in r.json()["error"]
    r = put(second, "d.jsonl", chunks(1))
    assert r.status_code == 413 and "6,000 bytes" in r.json()["error"]
    assert put(second, "e.jsonl", b"e" * 500).status_code == 200  # exactly at the limit
    assert (
        _stored(_steep_home / "uploads" / first) + _stored(_steep_home / "uploads" / second) == 6000
    )


# --- finding 5: the token redirect stays on the studio ---------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "//evil.example/x",
        "/\\evil.example/x",
        "/%5Cevil.example/x",
        "/%09/evil.example/x",
        "///evil.example/x",
        "/%2F%2Fevil.example",
    ],
)
def test_token_redirect_is_a_same_origin_path(_steep_home, path):
    c = client(_steep_home, token=TOKEN)
    r = c.get(f"http://testserver{path}?token={TOKEN}&a=1", follow_redirects=False)
    assert r.status_code == 307
    location = r.headers["location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert "\\" not in location and "\t" not in location and TOKEN not in location
    ok = c.get(f"/runs/new?token={TOKEN}&a=1", follow_redirects=False)
    assert ok.headers["location"] == "/runs/new?a=1"


# --- finding 6: framing, headers and the Origin of changes ----------------------------------


def test_security_headers_on_every_answer(_steep_home):
    c = client(_steep_home, token=TOKEN)
    answers = [
        c.get("/datasets", headers={"X-Steep-Token": TOKEN}),
        c.get("/api/jobs", headers={"X-Steep-Token": TOKEN}),
        c.get("/static/studio.js", headers={"X-Steep-Token": TOKEN}),
        c.get("/api/jobs"),  # 401
        c.get("/nowhere", headers={"X-Steep-Token": TOKEN}),  # 404
    ]
    for r in answers:
        h = r.headers
        assert h["x-frame-options"] == "DENY", r.url
        assert h["x-content-type-options"] == "nosniff" and h["referrer-policy"] == "no-referrer"
        csp = dict(d.strip().split(" ", 1) for d in h["content-security-policy"].split(";"))
        assert csp["frame-ancestors"] == "'none'" and csp["script-src"] == "'self'"
        assert csp["default-src"] == "'self'" and "unsafe" not in csp["style-src"]
    page = answers[0].text
    assert 'data-page="datasets"' in page  # the page's script starts from studio.js


def test_changes_from_another_origin_are_refused(_steep_home):
    c = client(_steep_home)
    for origin in (
        "http://evil.example",
        "null",
        "http://testserver.evil.example",
        "https://testserver",
        "http://testserver:8080",
    ):
        r = c.post("/api/uploads", headers={**CHANGE, "Origin": origin})
        assert r.status_code == 403 and "origin" in r.json()["error"].lower(), origin
    assert (
        c.post("/api/uploads", headers={**CHANGE, "Origin": "http://testserver"}).status_code == 200
    )
    assert c.post("/api/uploads", headers=CHANGE).status_code == 200  # no Origin: curl, scripts
    assert c.get("/api/jobs", headers={"Origin": "http://evil.example"}).status_code == 200
    local = client(_steep_home, allowed_hosts=LOCAL_HOSTS)
    same = {**CHANGE, "Host": "[::1]:8700", "Origin": "http://[::1]:8700"}
    assert local.post("/api/uploads", headers=same).status_code == 200


# --- finding 7: tokens with entropy, kept out of ps and the logs ----------------------------


def test_tokens_need_real_entropy(_steep_home):
    for weak in (" " * 16, "a" * 20, "abcdefg" * 3, "0123456789abcdef\t", "abcd efgh ijkl mnop"):
        with pytest.raises(ValueError, match="16 characters, no whitespace, 8 distinct"):
            check_bind("0.0.0.0", weak)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ValueError, match="8 distinct"):
        create_app(Settings(home=_steep_home, token="x" * 32, run_jobs=False))


def test_token_from_file_env_or_flag(tmp_path, monkeypatch, capsys):
    def args(**kw) -> argparse.Namespace:
        return argparse.Namespace(**{"token": None, "token_file": None, **kw})

    monkeypatch.delenv("STEEP_STUDIO_TOKEN", raising=False)
    assert resolve_token(args()) is None
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    assert resolve_token(args(token_file=str(path))) == TOKEN
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("STEEP_STUDIO_TOKEN", TOKEN)
    assert resolve_token(args()) == TOKEN and capsys.readouterr().err == ""
    assert resolve_token(args(token=TOKEN)) == TOKEN
    assert "shows in `ps`" in capsys.readouterr().err  # the flag works, with a warning
    with pytest.raises(UsageError, match="--token-file"):
        resolve_token(args(token=TOKEN, token_file=str(path)))
    with pytest.raises(UsageError, match="nowhere"):
        resolve_token(args(token_file=str(tmp_path / "nowhere")))
    path.chmod(0o644)
    assert resolve_token(args(token_file=str(path))) == TOKEN
    assert "other users can read" in capsys.readouterr().err


def test_access_log_filter_redacts_the_token():
    record = logging.LogRecord(  # exactly as uvicorn's h11/httptools protocols log a request
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/runs?a=1&token={TOKEN}&b=2", "1.1", 307),
        None,
    )
    assert TokenRedactor().filter(record)
    line = record.getMessage()
    assert TOKEN not in line and "/runs?a=1&token=[redacted]&b=2" in line
    encoded = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "%s", (f"/?%74oken={TOKEN}",), None
    )
    TokenRedactor().filter(encoded)
    assert TOKEN not in encoded.getMessage()


def test_studio_access_log_never_shows_the_token(tmp_path, _steep_home):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STEEP_HOME": str(_steep_home)}
    env.pop("STEEP_STUDIO_TOKEN", None)
    cmd = [
        sys.executable,
        "-m",
        "steep",
        "studio",
        "--port",
        str(port),
        "--log-level",
        "info",
        "--token-file",
        str(token_file),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", f"/runs?token={TOKEN}")
                status = conn.getresponse().status
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "studio did not start"
                time.sleep(0.2)
        assert status == 307
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert "GET /runs?token=[redacted]" in out, out
    assert TOKEN not in out and "shows in `ps`" not in out


# --- finding 8: one Host, parsed strictly ----------------------------------------------------


def test_host_header_is_parsed_strictly(_steep_home):
    local = client(_steep_home, allowed_hosts=LOCAL_HOSTS)
    for good in ("127.0.0.1:8765", "localhost", "LOCALHOST:8700", "[::1]:8700", "[::1]"):
        assert local.get("/runs", headers={"Host": good}).status_code == 200, good
    bad = (
        "127.0.0.1:8765, evil.example",
        "127.0.0.1, evil.example",
        "evil.example@127.0.0.1",
        "127.0.0.1:abc",
        "127.0.0.1:",
        "127.0.0.1:99999",
        "::1",
        "[::1",
        "[evil]:80",
        "127.0.0.1 evil",
        "127.0.0.1:80:80",
        "",
        "evil.example:8700",
    )
    for host in bad:
        r = local.get("/runs", headers={"Host": host})
        assert r.status_code == 400 and "Host" in r.text, host
    anywhere = client(_steep_home)  # bound off 127.0.0.1: any name, still one host
    assert anywhere.get("/runs", headers={"Host": "studio.lan:8700"}).status_code == 200
    assert anywhere.get("/runs", headers={"Host": "a.example, b.example"}).status_code == 400


# --- finding 9: bad parameters are 4xx, never 500 --------------------------------------------


def test_bad_offsets_and_ids_are_client_errors(_steep_home):
    queue = JobQueue(_steep_home)
    job = queue.submit("j", "train: {}\n", _steep_home / "runs" / "j")
    job.run_dir.mkdir(parents=True)
    (job.run_dir / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 1.0}\n')
    job.log_path.write_text("hello\n")
    c = client(_steep_home)
    for url in (
        f"/api/jobs/{job.id}/log?offset=-1",
        f"/api/jobs/{job.id}/metrics?offset=-1",
        f"/api/jobs/{job.id}/metrics?inode=-1",
        "/api/runs/j/metrics?offset=-1",
        f"/api/jobs/{job.id}/log?offset={2**63}",
        f"/api/jobs/{job.id}/metrics?offset={2**63}",
    ):
        r = c.get(url)
        assert r.status_code == 422 and r.json()["error"], (url, r.status_code, r.text)
        assert "offset" in r.json()["error"] or "inode" in r.json()["error"]
    huge = 2**63
    for method, url in (
        ("GET", f"/api/jobs/{huge}"),
        ("GET", f"/api/jobs/{huge}/log"),
        ("GET", f"/api/jobs/{huge}/metrics"),
        ("POST", f"/api/jobs/{huge}/cancel"),
        ("GET", f"/runs/{huge}"),
        ("GET", f"/api/jobs/{2**64 + 5}"),
    ):
        r = c.request(method, url, headers=CHANGE)
        assert r.status_code in (404, 422), (url, r.status_code, r.text)
    assert c.get(f"/api/jobs/{job.id}/log?offset=0").json()["text"] == "hello\n"
    assert c.get("/api/runs/j/metrics?offset=0").json()["records"]
