"""A step's micro-batches read one ahead in a thread, pinned for the GPU.

Why: reading windows from the memory-mapped shards and copying them into pinned memory is
host work; done in line it leaves the GPU idle between micro-batches. A one-thread pool
reads micro-batch i+1 while i computes; the main thread then queues a non-blocking copy.
The batches and their order are exactly the in-line ones (the draws are made before, in
the main thread), so losses and resumes do not change. Only this thread reads the training
windows during a step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch


class Prefetcher:
    """``batches(parts)`` yields ``load(part)`` for each part, on ``device``, one read ahead."""

    def __init__(self, load: Callable[[Any], np.ndarray], device: torch.device) -> None:
        self.load = load
        self.device = device
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="steep-prefetch")

    def _read(self, part: Any) -> torch.Tensor:
        batch = torch.from_numpy(self.load(part))
        return batch.pin_memory() if self.device.type == "cuda" else batch

    def batches(self, parts: Sequence[Any]) -> Iterator[torch.Tensor]:
        ahead: Future[torch.Tensor] | None = (
            self.pool.submit(self._read, parts[0]) if parts else None
        )
        for i in range(len(parts)):
            assert ahead is not None
            batch = ahead.result()  # a read that failed raises here, in the loop's thread
            ahead = self.pool.submit(self._read, parts[i + 1]) if i + 1 < len(parts) else None
            if self.device.type == "cuda":  # queued behind the work already on the stream
                batch = batch.to(self.device, non_blocking=True)
            yield batch

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
