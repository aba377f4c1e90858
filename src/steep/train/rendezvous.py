"""Rank 0 does the slow one-time work; the other ranks wait on a file, not in a collective.

Tokenizing a large source or converting a GGUF base can take hours on rank 0. A barrier
would make every other rank give up after ``train.dist_timeout_s`` (gloo's "Timed out
waiting 10000ms for recv"), which is meant for hung collectives, not for data work. Here
the waiting ranks poll a marker file in the run folder (which, like the token cache, all
ranks share) with their own bound, ``train.data_wait_s``, and print what rank 0 is doing
from the progress file it keeps up to date.

The marker carries an id that rank 0 broadcasts first, so a marker left by an earlier
attempt (a resumed run) is never mistaken for this one.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steep.artifacts.atomic import write_text
from steep.artifacts.fmt import clock, data_size
from steep.errors import DataError
from steep.train.parallel import Dist

POLL_S = 0.5
FIRST_PRINT_S = 5.0  # the first progress line; then one every PRINT_EVERY_S
PRINT_EVERY_S = 30.0
PROGRESS_EVERY_S = 2.0

Progress = Callable[[str, int, int], None]  # (what, bytes done, bytes in all)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(progress: dict[str, Any] | None, waited: float) -> str:
    """'rank 0 is tokenizing domain: 41% of 20.9 GB, ETA 1h12m' (or what is known)."""
    if not progress:
        return f"waiting for rank 0 to prepare the data ({clock(waited)} so far)"
    done, total = progress.get("done", 0), progress.get("total", 0)
    text = f"rank 0 is {progress.get('what', 'preparing the data')}"
    if total:
        text += f": {100 * done / total:.0f}% of {data_size(total)}"
        elapsed = time.time() - progress.get("started", time.time())
        if done and elapsed > 0:
            text += f", ETA {clock((total - done) * elapsed / done)}"
    return text


class Prepare:
    """``with Prepare(d, run_dir, "inputs", wait_s) as p:`` runs the block on rank 0 first;
    ``p.progress`` is the callback rank 0's work reports to."""

    def __init__(self, d: Dist, folder: Path, name: str, wait_s: float) -> None:
        self.d, self.wait_s = d, wait_s
        self.marker = Path(folder) / f".{name}.ready"
        self.progress_file = Path(folder) / f".{name}.progress"
        self._last = 0.0
        self._started: dict[str, float] = {}

    def progress(self, what: str, done: int, total: int) -> None:
        """Rank 0's work calls this as it goes; written at most every few seconds."""
        now = time.time()
        started = self._started.setdefault(what, now)
        if not self.d.enabled or (now - self._last < PROGRESS_EVERY_S and done < total):
            return
        self._last = now
        state = {"what": what, "done": done, "total": total, "started": started, "time": now}
        with contextlib.suppress(OSError):
            write_text(self.progress_file, json.dumps(state))

    def __enter__(self) -> Prepare:
        self.token = self.d.broadcast(secrets.token_hex(8) if self.d.is_main else None)
        self.began = time.time()
        if self.d.enabled and not self.d.is_main:
            self._wait()
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if not (self.d.enabled and self.d.is_main):
            return
        state = {"token": self.token, "ok": exc is None, "seconds": time.time() - self.began}
        if exc is not None:
            state["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        write_text(self.marker, json.dumps(state))
        self.progress_file.unlink(missing_ok=True)

    def _wait(self) -> None:
        start = time.time()
        last_print = start - PRINT_EVERY_S + FIRST_PRINT_S
        while True:
            state = _read(self.marker)
            if state and state.get("token") == self.token:
                if not state.get("ok"):
                    raise DataError(f"rank 0 failed while preparing the data: {state.get('error')}")
                return
            now = time.time()
            if now - start > self.wait_s:
                raise DataError(
                    f"rank {self.d.rank}: rank 0 did not finish preparing the data within "
                    f"train.data_wait_s={self.wait_s:g} s ({describe(_read(self.progress_file), now - start)}). "
                    "Pre-tokenize with `steep data tokenize --config RUN.yaml` before the job, "
                    "or raise train.data_wait_s"
                )
            if self.d.rank == 1 and now - last_print >= PRINT_EVERY_S:
                print(describe(_read(self.progress_file), now - start), flush=True)
                last_print = now
            time.sleep(POLL_S)
