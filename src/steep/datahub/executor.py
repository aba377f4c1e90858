"""Where Data Hub tasks run: the seam between "what to do per file" and "on which workers".

Every task is a plain picklable object handed to a module-level function, and results
come back as they finish, so a distributed engine (Ray, Dask, a Slurm array) can replace
``LocalExecutor`` by implementing the same ``run`` method; the pipeline never touches
processes itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    def run(
        self, fn: Callable[[T], R], tasks: Sequence[T], desc: str, docs_of: Callable[[R], int]
    ) -> Iterator[R]: ...


class LocalExecutor:
    """A process pool on this machine (``workers=1`` runs inline, handy for debugging)."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def run(
        self,
        fn: Callable[[T], R],
        tasks: Sequence[T],
        desc: str,
        docs_of: Callable[[R], int] = lambda _: 0,
    ) -> Iterator[R]:
        """Yield each task's result as it finishes, with a progress bar showing docs/s."""
        started, docs = time.perf_counter(), 0
        bar = tqdm(total=len(tasks), desc=desc, unit="file", dynamic_ncols=True)

        def done(result: Any) -> Any:
            nonlocal docs
            docs += docs_of(result)
            rate = docs / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(docs=f"{docs:,}", docs_s=f"{rate:,.0f}")
            bar.update(1)
            return result

        try:
            workers = min(self.workers, len(tasks))
            if workers <= 1:
                for task in tasks:
                    yield done(fn(task))
                return
            with ProcessPoolExecutor(max_workers=workers) as pool:
                pending = {pool.submit(fn, task) for task in tasks}
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        yield done(future.result())
        finally:
            bar.close()
