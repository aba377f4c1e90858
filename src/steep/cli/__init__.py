"""Command line: ``steep COMMAND ...``; one table of commands, one module per group.

Errors a user can fix (``steep.errors.SteepError``: bad config, missing data, unknown base
LR) print one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from steep.errors import SteepError, out_of_room
from steep.workspace import HOME_ENV, steep_home

# command group -> module with add_parsers(sub); the order is the order of `steep --help`
COMMANDS: dict[str, str] = {
    "train validate demo": "steep.cli.train",
    "plan": "steep.cli.plan",
    "sweep": "steep.cli.sweep",
    "launch": "steep.cli.launch",
    "data": "steep.cli.data",
    "eval": "steep.cli.eval",
    "models": "steep.cli.models",
    "studio": "steep.cli.studio",
    "tokenizer": "steep.cli.tokenizer",
}
TRAINING_COMMANDS = ("train", "demo", "sweep")  # restarted on a caching malloc on CPU


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="steep", description="continued pretraining of open LLMs")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault(HOME_ENV, str(steep_home()))
    args = build_parser().parse_args(argv)
    try:
        if argv is None and args.command in TRAINING_COMMANDS:  # not when embedded (tests)
            from steep.train.allocator import reexec_with_allocator  # deferred: imports torch

            reexec_with_allocator()
        return args.func(args)
    except SteepError as exc:
        print(f"steep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        full = out_of_room(exc)
        if full is None:
            raise  # a bug: its traceback stays
        print(f"steep {args.command}: error: {full_disk_line(exc, full)}", file=sys.stderr)
        return 2


def full_disk_line(exc: BaseException, why: str) -> str:
    """A full disk or quota in one line: every writing command builds its output aside
    and publishes it whole, so what was there before is untouched (tests/test_faults_disk.py)."""
    where = getattr(exc, "filename", None)
    at = f" writing {where}" if where else ""
    return f"out of disk space{at} ({why}); nothing was changed: free space, then run it again"


if __name__ == "__main__":
    sys.exit(main())
