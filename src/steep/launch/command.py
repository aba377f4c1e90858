"""The one builder of a ``steep train`` command line, and its shell quoting.

``steep launch`` (torchrun, Slurm), ``steep sweep`` and the studio runner all start training
through these argv lists, so a flag added to ``steep train`` is passed the same way by all.
"""

from __future__ import annotations

import shlex


class ShellVar(str):
    """An argument the shell must expand on the node (``$NODE_RANK``): quoted with "", not ''."""


def shell_join(cmd: list[str]) -> str:
    """Quote for a POSIX shell; ShellVar arguments stay expandable."""
    return " ".join(f'"{a}"' if isinstance(a, ShellVar) else shlex.quote(a) for a in cmd)
