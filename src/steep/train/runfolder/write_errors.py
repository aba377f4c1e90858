"""A write to the run folder that fails (full disk, no permission, a quota) ends the run
with one line: what could not be written, where, what is intact and how to go on.

The checkpoint write has had this since the start (``train.checkpoint``); the rest of the
folder (metrics.jsonl, its truncation on resume, the final model, the lock) gave raw
tracebacks. Every failure here leaves the run resumable: nothing that a resume reads is
changed by a write that did not finish.
"""

from __future__ import annotations

from pathlib import Path

from steep.errors import SteepError, errno_words, os_error_code

CONTINUE = "free space (or fix the permission), then `steep train --resume {run}`"


class RunFolderError(SteepError):
    """The run folder could not be written."""


def _why(exc: BaseException) -> str:
    code = os_error_code(exc)  # an OSError's, or safetensors' Rust I/O error's
    if code is not None:
        return errno_words(code)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"


def folder_error(
    what: str, path: Path, exc: BaseException, run: Path, intact: str
) -> RunFolderError:
    """``could not <what> <path> (ENOSPC, No space left on device); <intact>: <how>``."""
    how = CONTINUE.format(run=run)
    return RunFolderError(f"could not {what} {path} ({_why(exc)}); {intact}: {how}")
