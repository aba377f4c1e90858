"""One base for every error a user can fix: the CLI prints these as one line and exits 2.

Anything else that escapes a command is a bug in steep and keeps its traceback. A specific
error subclasses ``SteepError`` in the module that raises it; the ones that were
``ValueError`` before keep that base too, so library callers that catch it still do.
"""

from __future__ import annotations

import errno
import os
import re
import shutil


class SteepError(Exception):
    """Something the user asked for that cannot be done; the message says what and where."""


class ConfigError(SteepError, ValueError):
    """A config that cannot run; the message names the field and what is allowed."""


class MissingInputError(SteepError, FileNotFoundError):
    """A file or folder the user named (data, run, classifier, model) does not exist."""


class AlreadyExistsError(SteepError, FileExistsError):
    """The user asked to create something where something already is."""


class DataError(SteepError, ValueError):
    """Data that cannot be used as given (empty, too short, unreadable); says which file."""


class UsageError(SteepError, ValueError):
    """Command-line arguments that do not fit together."""


# errnos of a write that no fix in steep can avoid: the user frees space or raises a quota
OUT_OF_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\]")
_RUST_OS_ERROR = re.compile(r"os error (\d+)|Os \{ code: (\d+)")


def os_error_code(exc: BaseException) -> int | None:
    """The errno behind ``exc``: an ``OSError``'s own, or the one a Rust library
    (safetensors, tokenizers) prints in its message."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list):
        for *_, why in exc.args[0]:  # copytree's (src, dst, "[Errno 28] ...") per file
            found = _ERRNO_TEXT.search(str(why))
            if found:
                return int(found.group(1))
    rust = _RUST_OS_ERROR.search(str(exc))
    return int(rust.group(1) or rust.group(2)) if rust else None


def errno_words(code: int) -> str:
    """``"ENOSPC, No space left on device"``: the name a user searches for, and its meaning."""
    return f"{errno.errorcode.get(code, code)}, {os.strerror(code)}"


def out_of_room(exc: BaseException) -> str | None:
    """``"ENOSPC, No space left on device"`` when ``exc`` (or an error it was raised from
    or while handling) is a full disk or quota, else None: such a failure is the
    machine's state, not a bug, and gets one line instead of a traceback."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = os_error_code(exc)
        if code in OUT_OF_ROOM:
            return errno_words(code)
        exc = exc.__cause__ or exc.__context__
    return None
