"""Where Data Hub tasks run: the seam between "what to do per file" and "on which workers".

Every task is a plain picklable object handed to a module-level function, and results
come back as they finish, so a distributed engine (Ray, Dask, a Slurm array) can replace
``LocalExecutor`` by implementing the same ``run`` method; the pipeline never touches
processes itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

from steep.errors import SteepError

T = TypeVar("T")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WAIT_S = 0.5  # how often Ray results are collected
R = TypeVar("R")


class Executor(Protocol):
    def run(
        self, fn: Callable[[T], R], tasks: Sequence[T], desc: str, docs_of: Callable[[R], int]
    ) -> Iterator[R]: ...


class ExecutorError(SteepError):
    """The engine the Data Hub was asked to run on cannot be used (and why)."""


class Placement:
    """Which host ran each unit of each stage: on a cluster, where to look when a unit's
    output is odd, and the proof that the work was spread. A unit a rerun took from an
    earlier run's done-marker ran nowhere this time: it stays ``None``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.stages: dict[str, list[str | None]] = {}

    def start(self, stage: str, units: int) -> None:
        self.stages[stage] = [None] * units

    def ran(self, stage: str, index: int, host: str) -> None:
        self.stages[stage][index] = host

    def record(self, only: Collection[str] | None = None) -> dict[str, Any]:
        """The JSON a dataset version keeps beside its manifest (``placement.json``); ``only``
        the stages of one output, where one executor served several (``tokenize --config``)."""
        stages = {}
        for stage, hosts in self.stages.items():
            if only is not None and stage not in only:
                continue
            counts = Counter(h for h in hosts if h is not None)
            stages[stage] = {"units": len(hosts), "hosts": dict(sorted(counts.items())),
                             "unit_hosts": hosts}  # fmt: skip
        return {"executor": self.kind, "stages": stages}

    def line(self) -> str:
        """One line for the end of a command: hosts and how many units each ran."""
        counts: Counter[str] = Counter()
        for hosts in self.stages.values():
            counts.update(h for h in hosts if h is not None)
        where = ", ".join(f"{host} {n}" for host, n in sorted(counts.items())) or "nothing run"
        return f"units ran on ({self.kind}): {where}"


def _on_host(fn: Callable[[T], R], task: T) -> tuple[str, R]:
    """A Ray task's body: the unit's result with the name of the host that made it."""
    return socket.gethostname(), fn(task)


def _progress(tasks: Sequence[Any], desc: str, docs_of: Callable[[Any], int]) -> tuple[Any, Any]:
    """A bar over tasks showing documents/s, and the callback that advances it."""
    started, docs = time.perf_counter(), 0
    bar = tqdm(total=len(tasks), desc=desc, unit="task", dynamic_ncols=True)

    def done(result: Any) -> Any:
        nonlocal docs
        docs += docs_of(result)
        rate = docs / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(docs=f"{docs:,}", docs_s=f"{rate:,.0f}")
        bar.update(1)
        return result

    return bar, done


def _die_with_parent(parent: int) -> None:
    """Pool worker initializer: end this worker when the steep that started it dies.

    A SIGKILLed parent (the OOM killer, a job scheduler) runs no cleanup, and its pool's
    workers would go on writing ``.partial-*`` files, then idle forever: one per core.
    Linux sends the signal when the thread that forked the worker ends (the pool is
    started by the thread that iterates ``run``: the command's main thread). Elsewhere
    there is no such signal, and this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # cannot arm it (a seccomp sandbox): run as before rather than fail
    if os.getppid() != parent:  # the parent died before prctl: no signal will come
        os.kill(os.getpid(), signal.SIGKILL)


class LocalExecutor:
    """A process pool on this machine (``workers=1`` runs inline, handy for debugging)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1
        self.placement = Placement("local")

    def run(
        self,
        fn: Callable[[T], R],
        tasks: Sequence[T],
        desc: str,
        docs_of: Callable[[R], int] = lambda _: 0,
    ) -> Iterator[R]:
        """Yield each task's result as it finishes, with a progress bar showing docs/s."""
        bar, done = _progress(tasks, desc, docs_of)
        host = socket.gethostname()
        self.placement.start(desc, len(tasks))
        try:
            workers = min(self.workers, len(tasks))
            if workers <= 1:
                for index, task in enumerate(tasks):
                    result = fn(task)
                    self.placement.ran(desc, index, host)
                    yield done(result)
                return
            with ProcessPoolExecutor(
                max_workers=workers, initializer=_die_with_parent, initargs=(os.getpid(),)
            ) as pool:
                # as_completed, not wait(FIRST_COMPLETED) in a loop: that rescans every
                # pending future per result, quadratic in the tens of thousands of units
                futures = {pool.submit(fn, task): i for i, task in enumerate(tasks)}
                for future in as_completed(futures):
                    result = future.result()
                    self.placement.ran(desc, futures[future], host)
                    yield done(result)
        finally:
            bar.close()


class RayExecutor:
    """Every task as a Ray task, on a running cluster (``address``: ``auto`` or HOST:PORT,
    default ``$RAY_ADDRESS``) or, with no address, on a Ray instance started here.

    Ray Core tasks, nothing home-made: Ray places them on the cluster's CPUs and runs a
    task again when its worker dies (``max_retries``). Tasks write their outputs under a
    temporary name and rename them when whole, so a retried task leaves one copy. The
    connection is made here, before any work, so an address that does not answer fails
    with its name and nothing written. Workers must import steep: on a real cluster, install
    it on every node (or pass a Ray runtime_env through ``RAY_RUNTIME_ENV``-style tooling).
    """

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None, max_retries: int = 3
    ) -> None:
        try:
            import ray  # optional: pip install 'steep[ray]'
        except ImportError:
            raise ExecutorError(
                "--executor ray needs Ray: pip install 'steep[ray]' (or pip install ray)"
            ) from None
        self.ray, self.max_retries = ray, max_retries
        self.placement = Placement("ray")
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        if ray.is_initialized():
            return
        where = self.address or "a new local Ray instance"
        if self.address and self.address != "auto":
            _probe(self.address)  # Ray itself retries a dead address for minutes
        try:
            if self.address:
                ray.init(address=self.address, log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(num_cpus=num_cpus, log_to_driver=False, logging_level="ERROR")
        except Exception as exc:  # ConnectionError, RuntimeError, timeouts: one clear line
            raise ExecutorError(
                f"cannot use Ray at {where}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
            ) from None

    def run(
        self,
        fn: Callable[[T], R],
        tasks: Sequence[T],
        desc: str,
        docs_of: Callable[[R], int] = lambda _: 0,
    ) -> Iterator[R]:
        """Yield each task's result as it finishes, like ``LocalExecutor.run``."""
        ray = self.ray
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries)(_on_host).options(
            name=getattr(fn, "__name__", "unit")  # Ray's task list and ps show the unit's job
        )
        bar, done = _progress(tasks, desc, docs_of)
        self.placement.start(desc, len(tasks))
        index = {remote.remote(fn, task): i for i, task in enumerate(tasks)}
        pending = list(index)
        try:
            while pending:
                # every task finished so far, in one call (one wait per result would rescan
                # the whole pending list each time: quadratic in the number of units)
                ready, pending = ray.wait(pending, num_returns=len(pending), timeout=WAIT_S)
                for ref in ready:
                    host, result = ray.get(ref)
                    self.placement.ran(desc, index[ref], host)
                    yield done(result)
        except ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None  # the task's own error, not Ray's wrapper
        finally:
            for ref in pending:
                ray.cancel(ref)
            bar.close()


# a gRPC client's first bytes (HTTP/2's preface and an empty SETTINGS frame): a Ray head's
# GCS, a gRPC server, answers them with its own SETTINGS frame at once
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_H2_SETTINGS = 4  # the frame type byte of the answer


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once, naming it, when nothing at a Ray HOST:PORT answers as a gRPC server
    (no listener; or one that accepts and stays silent, where ``ray.init`` waits for
    minutes). A TLS cluster (``RAY_USE_TLS``) is only checked for a listener."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--ray-address {address!r}: expected auto or HOST:PORT")
    answer = b""
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as s:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return
            s.sendall(_H2_HELLO)
            answer = s.recv(9)
    except TimeoutError:
        why = f"it accepted a connection but did not answer within {timeout_s:g} s"
    except OSError as exc:
        why = exc.strerror or str(exc)
    else:
        if len(answer) > 3 and answer[3] == _H2_SETTINGS:
            return
        why = "what answers there is not a Ray head (no gRPC)"
    raise ExecutorError(
        f"cannot reach the Ray cluster at {address}: {why}. Is it running "
        "(`ray start --head` prints its address), and is the port open from here?"
    )


def make_executor(
    kind: str = "local", workers: int | None = None, ray_address: str | None = None
) -> Executor:
    """The executor a command asked for: ``local`` (a process pool) or ``ray``."""
    if kind == "ray":
        return RayExecutor(ray_address, num_cpus=workers)
    if ray_address:
        raise ExecutorError("--ray-address needs --executor ray")
    return LocalExecutor(workers)
