"""Accelerators steep knows: dense bf16 peak and memory, found by name; torch-free.

The peak is the vendor's dense (no sparsity) bf16 tensor-core figure with fp32 accumulate,
the denominator of MFU (``steep.plan.flops.mfu``) and of ``steep plan``'s step time. The
memory is what the driver reports as total (nvidia-smi's MiB / 1024), a little below the
marketing GB: an "80 GB" H100 shows 79.6 GiB.

This is steep's one GPU table: the plan and MFU both read it. A name is matched on its
letters and digits only, upper-cased, so ``h100``, ``H100 SXM`` and torch's ``NVIDIA H100
80GB HBM3`` all find the H100 SXM; the table is ordered so the more specific entry (``H100
PCIe``, ``GH200``, ``A100 40GB``, ``L40S``, ``L40``) is tried before the general one
(``H100``, ``H200``, ``A100``, ``L40``, ``L4``), and each row lists the names torch and
nvidia-smi report for it, which a test finds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Device:
    name: str
    peak_tflops: float | None  # dense bf16; None: unknown (a CPU)
    memory_gib: float
    kind: str = "gpu"  # gpu | cpu


@dataclass(frozen=True)
class _Row:
    parts: tuple[str, ...]  # every part must be in the normalised name
    device: Device
    reported: tuple[str, ...]  # what torch and nvidia-smi call it (tests/test_devices.py)


# most specific first: "GH200" holds "H200", "L40" holds "L4", "A100" holds "A10"
_TABLE: list[_Row] = [
    _Row(("H100", "PCIE"), Device("H100 PCIe", 756.0, 79.6), ("NVIDIA H100 PCIe",)),
    _Row(("H100", "NVL"), Device("H100 NVL", 835.0, 93.0), ("NVIDIA H100 NVL",)),
    _Row(("H100",), Device("H100 SXM", 989.4, 79.6), ("NVIDIA H100 80GB HBM3",)),
    _Row(("GH200",), Device("GH200", 989.4, 94.5), ("NVIDIA GH200 480GB",)),
    _Row(("H200", "NVL"), Device("H200 NVL", 835.5, 140.4), ("NVIDIA H200 NVL",)),
    _Row(("H200",), Device("H200", 989.4, 140.4), ("NVIDIA H200",)),
    _Row(("B200",), Device("B200", 2250.0, 178.4), ("NVIDIA B200",)),
    _Row(
        ("A100", "40GB"),
        Device("A100 40GB", 312.0, 40.0),
        ("NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"),
    ),
    _Row(
        ("A100",),
        Device("A100 80GB", 312.0, 80.0),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"),
    ),
    _Row(("L40S",), Device("L40S", 362.05, 45.0), ("NVIDIA L40S",)),
    _Row(("L40",), Device("L40", 181.05, 45.0), ("NVIDIA L40",)),
    _Row(("L4",), Device("L4", 121.0, 22.5), ("NVIDIA L4",)),
    # AWS's A10 variant: 70 dense bf16 TFLOP/s
    _Row(("A10G",), Device("A10G", 70.0, 22.5), ("NVIDIA A10G",)),
    _Row(("A10",), Device("A10", 125.0, 22.5), ("NVIDIA A10",)),
    _Row(("4090",), Device("RTX 4090", 165.2, 24.0), ("NVIDIA GeForce RTX 4090",)),
    _Row(("MI300X",), Device("MI300X", 1307.4, 192.0), ("AMD Instinct MI300X",)),
    _Row(("MI250X",), Device("MI250X", 383.0, 128.0), ("AMD Instinct MI250X",)),
]
KNOWN = sorted({row.device.name for row in _TABLE} | {"cpu"})


def _letters(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def find_device(name: str) -> Device | None:
    """The device a name means (``H100``, ``NVIDIA A100-SXM4-40GB``, ``cpu``), else None."""
    key = _letters(name)
    if key == "CPU":
        return cpu_device()
    for row in _TABLE:
        if all(p in key for p in row.parts):
            return row.device
    return None


def peak_flops(name: str) -> float | None:
    """The dense bf16 peak of the device ``name`` means, in FLOP/s: MFU's denominator, the
    same figure ``steep plan`` divides by; None where unknown (a CPU, an unlisted GPU)."""
    device = find_device(name)
    return device.peak_tflops * 1e12 if device and device.peak_tflops else None


def host_memory_gib() -> float:
    """This machine's physical RAM (all of it, as a CPU run may fill it)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def available_memory_bytes() -> int:
    """RAM a new process can have now without swapping (the kernel's MemAvailable; all of
    it where /proc/meminfo is missing)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(host_memory_gib() * 2**30)


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
