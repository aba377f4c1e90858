"""Where and in what precision the loop runs: device, threads, autocast, seeding.

Kept out of the loop so the loop reads the same on CPU and CUDA. The default precision is
bf16 autocast over fp32 weights: bf16 matmuls for speed, fp32 master weights because
updates at CPT learning rates (~1e-5 relative) vanish below bf16's 8-bit mantissa.
"""

from __future__ import annotations

import contextlib
import os
import random
import resource
import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
import torch

from steep.config import TrainSection
from steep.errors import ConfigError
from steep.train import allocator


@dataclass
class Runtime:
    device: torch.device
    precision: str
    allocator: str = "system"  # the malloc under this process (steep.train.allocator)

    @classmethod
    def from_config(cls, cfg: TrainSection, local_rank: int = 0) -> Runtime:
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "train.device=cuda but torch sees no CUDA device (is this the CPU build of "
                "torch? see README: 'GPU install')"
            )
        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
        if device.type == "cpu":  # torchrun's ranks on one machine share its cores
            per_machine = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
            torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // per_machine))
        if cfg.precision == "bf16":
            warnings.warn(
                "train.precision=bf16 stores weights in bf16: small CPT updates are rounded "
                "away. Prefer bf16-autocast (fp32 weights).",
                stacklevel=2,
            )
        return cls(device=device, precision=cfg.precision, allocator=allocator.active())

    def describe(self) -> str:
        """One line for the run's log: where it runs, and on CPU how to make it faster."""
        if self.device.type != "cpu":
            return f"device {self.device}, {self.precision}"
        line = f"device cpu, {torch.get_num_threads()} threads, {self.precision}, malloc {self.allocator}"
        if self.allocator == "system" and os.environ.get(allocator.ENV, "auto") == "auto":
            line += (
                " (a caching malloc makes CPU training ~25% faster: "
                f"{allocator.INSTALL_HINT}; steep train picks it up)"
            )
        if self.precision != "fp32" and not native_bf16():
            line += (
                "\nwarning: this CPU has no native bf16 (AVX512-BF16 or AMX): torch emulates "
                "it, ~13x slower here than train.precision: fp32 (BENCHMARKS.md)"
            )
        return line

    @property
    def weight_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def autocast(self) -> AbstractContextManager:
        if self.precision == "bf16-autocast":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def native_bf16() -> bool:
    """Does this CPU do bf16 in hardware? Without AVX512-BF16 or AMX, torch emulates bf16
    matmuls: a step of the recipe model took 7.0 s under bf16 autocast vs 0.54 s in fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return True  # not Linux: nothing to say
    return not flags or "avx512_bf16" in flags or "amx_bf16" in flags


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory of this rank so far: CUDA tensors on a GPU, the process's RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
