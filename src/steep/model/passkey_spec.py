"""What ``--passkey`` and its siblings accept, torch-free: the CLI's flags and the studio's
eval field are built from this one table, and both parse with the same functions."""

from __future__ import annotations

from typing import Any

from steep.errors import UsageError

DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_TRIALS = 5
MIN_LENGTH = 128  # room for the instruction, the key and the question


def parse_lengths(text: str, flag: str = "--passkey") -> list[int]:
    """``1024,4096`` -> [1024, 4096]; a one-line error naming the flag otherwise."""
    try:
        lengths = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(
            f"{flag} {text!r}: give prompt lengths in tokens, e.g. 1024,4096"
        ) from None
    if not lengths or min(lengths) < MIN_LENGTH:
        raise UsageError(
            f"{flag} {text!r}: give lengths of at least {MIN_LENGTH} tokens, e.g. 1024,4096"
        )
    return sorted(set(lengths))


def parse_depths(text: str, flag: str = "--passkey-depths") -> list[float]:
    try:
        depths = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{flag} {text!r}: give depths between 0 and 1, e.g. 0,0.5,1") from None
    if not depths or any(not 0 <= d <= 1 for d in depths):
        raise UsageError(f"{flag} {text!r}: give depths between 0 and 1, e.g. 0,0.5,1")
    return sorted(set(depths))


LONG_CONTEXT_FLAGS: dict[str, dict[str, Any]] = {
    "--passkey": {
        "metavar": "LENGTHS",
        "help": "passkey retrieval at these prompt lengths in tokens, e.g. 1024,4096 "
        "(a number hidden in filler at several depths; lengths past the model's positions "
        "are named and skipped)",
    },
    "--passkey-depths": {
        "metavar": "DEPTHS",
        "default": ",".join(f"{d:g}" for d in DEFAULT_DEPTHS),
        "help": "where the key sits, 0 (start) to 1 (just before the question)",
    },
    "--passkey-trials": {"type": int, "default": DEFAULT_TRIALS, "help": "keys per length x depth"},
    "--position-loss": {
        "action": "store_true",
        "help": "mean loss by position over whole windows of --seq-len cut from single "
        "documents of the --sets (falling with position: the long context is used)",
    },
    "--position-windows": {"type": int, "default": 64, "help": "windows per set for it"},
}
