"""Accelerators steep knows: dense bf16 peak and memory, found by name; torch-free.

The peak is the vendor's dense (no sparsity) bf16 tensor-core figure with fp32 accumulate,
the denominator of MFU (``steep.train.flops``) and of ``steep plan``'s step time. The
memory is what the driver reports as total (nvidia-smi's MiB / 1024), a little below the
marketing GB: an "80 GB" H100 shows 79.6 GiB.

A name is matched on its letters and digits only, upper-cased, so ``h100``, ``H100 SXM``
and torch's ``NVIDIA H100 80GB HBM3`` all find the H100 SXM; the table is ordered so the
more specific entry (``H100 PCIe``, ``A100 40GB``, ``L40S``) is tried before the general one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Device:
    name: str
    peak_tflops: float | None  # dense bf16; None: unknown (a CPU)
    memory_gib: float
    kind: str = "gpu"  # gpu | cpu


# (every part must be in the normalised name, the device), most specific first
_TABLE: list[tuple[tuple[str, ...], Device]] = [
    (("H100", "PCIE"), Device("H100 PCIe", 756.0, 79.6)),
    (("H100", "NVL"), Device("H100 NVL", 835.0, 93.0)),
    (("H100",), Device("H100 SXM", 989.4, 79.6)),
    (("H200",), Device("H200", 989.4, 140.4)),
    (("GH200",), Device("GH200", 989.4, 94.5)),
    (("B200",), Device("B200", 2250.0, 178.4)),
    (("A100", "40GB"), Device("A100 40GB", 312.0, 40.0)),
    (("A100",), Device("A100 80GB", 312.0, 80.0)),
    (("L40S",), Device("L40S", 362.05, 45.0)),
    (("L40",), Device("L40", 181.05, 45.0)),
    (("L4",), Device("L4", 121.0, 22.5)),
    (("A10G",), Device("A10G", 70.0, 22.5)),  # AWS's A10 variant: 70 dense bf16 TFLOP/s
    (("A10",), Device("A10", 125.0, 22.5)),
    (("RTX", "4090"), Device("RTX 4090", 165.2, 24.0)),
    (("4090",), Device("RTX 4090", 165.2, 24.0)),
    (("MI300X",), Device("MI300X", 1307.4, 192.0)),
    (("MI250X",), Device("MI250X", 383.0, 128.0)),
]
KNOWN = sorted({d.name for _, d in _TABLE} | {"cpu"})


def _letters(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def find_device(name: str) -> Device | None:
    """The device a name means (``H100``, ``NVIDIA A100-SXM4-40GB``, ``cpu``), else None."""
    key = _letters(name)
    if key == "CPU":
        return cpu_device()
    for parts, device in _TABLE:
        if all(p in key for p in parts):
            return device
    return None


def host_memory_gib() -> float:
    """This machine's physical RAM (all of it, as a CPU run may fill it)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def cpu_device() -> Device:
    return Device("cpu", None, round(host_memory_gib(), 1), kind="cpu")


@cache  # a GPU does not come or go while a studio runs
def local_gpu() -> tuple[str, float] | None:
    """(name, memory GiB) of this machine's first NVIDIA GPU from nvidia-smi, or None:
    asking torch would cost seconds of import for a command that must be instant."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    query = ["--query-gpu=name,memory.total", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run([smi, *query], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    first = out.stdout.strip().splitlines()[:1] if out.returncode == 0 else []
    if not first or "," not in first[0]:
        return None
    name, _, mib = first[0].rpartition(",")
    try:
        return name.strip(), float(mib) / 1024
    except ValueError:
        return None
