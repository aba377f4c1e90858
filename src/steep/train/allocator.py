"""A caching malloc for CPU training: tcmalloc (or jemalloc) preloaded before steep starts.

Why: glibc hands every large freed block straight back to the kernel, so each training
step page-faults its activations, logits and gradients in again: 300-500k faults per step
for SmolLM2-135M at 2 x 512 tokens, about a quarter of the step on a 2-core VM. A caching
allocator keeps those pages; the same loop runs ~25-30% faster (BENCHMARKS.md). PyTorch
does not cache CPU memory itself, and malloc can only be swapped before the process starts,
so the training commands re-execute themselves once with ``LD_PRELOAD`` set.

``STEEP_CPU_ALLOCATOR`` picks: ``auto`` (default: tcmalloc, else jemalloc, else the system's;
only when torch sees no CUDA device), ``tcmalloc``, ``jemalloc``, ``system``, or a path.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from pathlib import Path

from steep.errors import SteepError

ENV = "STEEP_CPU_ALLOCATOR"
DONE = "STEEP_ALLOCATOR_REEXEC"  # set on the re-executed process: never loop
LIBRARIES = {"tcmalloc": ("tcmalloc_minimal", "tcmalloc"), "jemalloc": ("jemalloc",)}
INSTALL_HINT = (
    "apt-get install libtcmalloc-minimal4 (Debian/Ubuntu; libtcmalloc-minimal4t64 on newer "
    "releases), `make cpu-deps`, or conda install gperftools"
)


class AllocatorError(SteepError, ValueError):
    """STEEP_CPU_ALLOCATOR names an allocator this machine does not have."""


def find_library(name: str, prefixes: list[Path] | None = None) -> str | None:
    """The shared library for ``name`` (tcmalloc or jemalloc): a conda/venv copy first."""
    for prefix in prefixes if prefixes is not None else [Path(sys.prefix)]:
        for stem in LIBRARIES[name]:
            found = sorted((prefix / "lib").glob(f"lib{stem}.so*"))
            if found:
                return str(found[0])
    for stem in LIBRARIES[name]:
        if soname := ctypes.util.find_library(stem):  # the loader resolves a bare soname
            return soname
    return None


def resolve(setting: str, prefixes: list[Path] | None = None) -> str | None:
    """The library to preload for a ``STEEP_CPU_ALLOCATOR`` value; None for the system's."""
    if setting in ("", "system"):
        return None
    if setting == "auto":
        return find_library("tcmalloc", prefixes) or find_library("jemalloc", prefixes)
    if setting in LIBRARIES:
        lib = find_library(setting, prefixes)
        if lib is None:
            raise AllocatorError(
                f"{ENV}={setting}: no lib{setting} on this machine; {INSTALL_HINT}"
            )
        return lib
    if "/" in setting:
        if not Path(setting).is_file():
            raise AllocatorError(f"{ENV}={setting}: no such file")
        return setting
    raise AllocatorError(
        f"{ENV}={setting!r}: expected auto, tcmalloc, jemalloc, system or a path to a .so"
    )


def active(maps: Path = Path("/proc/self/maps")) -> str:
    """Which malloc this process runs on: tcmalloc, jemalloc or system."""
    try:
        text = maps.read_text()
    except OSError:
        return "system"
    for name in LIBRARIES:
        if f"lib{name}" in text:
            return name
    return "system"


def preload_env(lib: str, environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with ``lib`` first in LD_PRELOAD (keeping what was there) and the guard set."""
    existing = environ.get("LD_PRELOAD", "")
    env = {**environ, "LD_PRELOAD": ":".join(x for x in (lib, existing) if x), DONE: "1"}
    env.setdefault("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(2**40))  # no note per big tensor
    return env


def _may_have_gpu() -> bool:
    """A GPU driver is loaded (NVIDIA or ROCm): only then is importing torch to ask worth it."""
    return any(
        Path(p).exists() for p in ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")
    )


def reexec_with_allocator() -> None:
    """Restart this process's own command line on a caching malloc, when that applies.

    Keeps the PID (``os.execve``), so torchrun and the studio still track the process, and
    the interpreter's options (``sys.orig_argv``: torchrun's ``-u`` keeps logs unbuffered).
    """
    setting = os.environ.get(ENV, "auto").strip()
    if sys.platform != "linux" or os.environ.get(DONE) or active() != "system":
        return
    lib = resolve(setting)
    if lib is None:
        return
    if setting == "auto" and _may_have_gpu():
        import torch  # deferred: torch is slow to import and only this path needs it

        if torch.cuda.is_available():  # host malloc is not where a GPU run spends its time
            return
    sys.stdout.flush()
    sys.stderr.flush()
    env = preload_env(lib, dict(os.environ))
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
