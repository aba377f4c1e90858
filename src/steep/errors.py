"""One base for every error a user can fix: the CLI prints these as one line and exits 2.

Anything else that escapes a command is a bug in steep and keeps its traceback. A specific
error subclasses ``SteepError`` in the module that raises it; the ones that were
``ValueError`` before keep that base too, so library callers that catch it still do.
"""

from __future__ import annotations


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
