"""What every command shares: quiet libraries, argument types."""

from __future__ import annotations

import argparse
import os


def quiet_libraries() -> None:
    """transformers' own warnings and tokenizers' fork warning would bury steep's output."""
    import transformers  # deferred: commands that never load a model start without it

    transformers.logging.set_verbosity_error()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def fraction(text: str) -> float:
    """'1%' or '0.01' -> 0.01, for --max-regression."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction or a percent, got {text!r}"
        ) from None
    return value


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value
