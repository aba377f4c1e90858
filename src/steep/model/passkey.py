"""Passkey retrieval: a number hidden in filler text, asked for at the end (offline, synthetic).

A prompt of exactly ``length`` tokens: an instruction, filler, the key at a chosen depth
(0 = just after the instruction, 1 = just before the question), more filler, the
question, and the key's tokens as the answer. Only a model that reads back across the
whole span can name the key: the filler holds no hint of it.

Scoring is one forward pass per prompt through ``steep.model.scoring.score_requests``:

- **accuracy** is exact match of greedy decoding. Greedy decoding writes the key exactly
  when each of its tokens is the argmax given the ones before it, which is what the
  scorer's ``greedy`` flag says; so this is the generation result without generating.
- **key loss** is the mean negative log-likelihood (nats per key token) of the right
  digits. It moves before accuracy does, so a small model or a short run that does not yet
  retrieve still shows whether the key got nearer (chance for a digit is ln 10 = 2.30).

Lengths past the model's positions are named and skipped, never run: past its trained
context a RoPE model returns garbage, and a zero there would read as a finding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from steep.errors import UsageError
from steep.model.scoring import Request, prefix_token_id, score_requests

INTRO = "Remember the pass key.\n"
FILLER = "The river runs past the mill. Birds rest on the old wall. A cart goes up the hill. "
NEEDLE = "The pass key is {key}. "
QUESTION = "\nWhat is the pass key? The pass key is"
ANSWER = " {key}"
KEY_DIGITS = 5


@dataclass(frozen=True)
class Prompt:
    length: int
    depth: float
    key: str
    request: Request


def split_lengths(lengths: Sequence[int], max_positions: int | None) -> tuple[list[int], list[int]]:
    """(lengths that fit the model, lengths past its positions: said, not run)."""
    if not max_positions:
        return list(lengths), []
    return [n for n in lengths if n <= max_positions], [n for n in lengths if n > max_positions]


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def make_prompt(tokenizer: PreTrainedTokenizerBase, length: int, depth: float, key: str) -> Prompt:
    """A prompt of exactly ``length`` tokens (prefix and answer included) with ``key`` at
    ``depth`` of the filler; each piece is tokenized alone, so the lengths are exact."""
    prefix = [prefix_token_id(tokenizer)]
    intro, needle = _ids(tokenizer, INTRO), _ids(tokenizer, NEEDLE.format(key=key))
    question, answer = _ids(tokenizer, QUESTION), _ids(tokenizer, ANSWER.format(key=key))
    fixed = len(prefix) + len(intro) + len(needle) + len(question) + len(answer)
    room = length - fixed
    if room < 0:
        raise UsageError(f"passkey length {length}: a prompt needs at least {fixed} tokens")
    unit = _ids(tokenizer, FILLER)
    filler = (unit * (room // len(unit) + 1))[:room]
    cut = round(depth * room)
    ids = [*prefix, *intro, *filler[:cut], *needle, *filler[cut:], *question, *answer]
    return Prompt(length, depth, key, Request(ids, len(answer)))


def make_prompts(
    tokenizer: PreTrainedTokenizerBase,
    lengths: Sequence[int],
    depths: Sequence[float],
    trials: int,
    seed: int = 0,
) -> list[Prompt]:
    """``trials`` prompts per length x depth, each with its own key (seeded: the same keys
    for every model compared)."""
    out = []
    for length in lengths:
        for depth in depths:
            rng = np.random.default_rng([seed, length, round(depth * 1000)])
            for _ in range(trials):
                key = str(int(rng.integers(10 ** (KEY_DIGITS - 1), 10**KEY_DIGITS)))
                out.append(make_prompt(tokenizer, length, depth, key))
    return out


def passkey_text(tokenizer: PreTrainedTokenizerBase, length: int, depth: float, key: str) -> str:
    """One prompt with its answer as text: training data that teaches the task (benchmarks)."""
    ids = make_prompt(tokenizer, length, depth, key).request.ids[1:]
    return tokenizer.decode(ids)


def score_passkey(
    model: torch.nn.Module,
    prompts: Sequence[Prompt],
    batch_size: int,
    device: torch.device,
) -> dict[str, dict[str, dict[str, float]]]:
    """``{length: {depth: {"accuracy", "key_loss", "trials"}}}`` (keys as strings, for JSON)."""
    scores = score_requests(model, [p.request for p in prompts], batch_size, device, "passkey")
    cells: dict[tuple[int, float], list[tuple[bool, float]]] = {}
    for p, s in zip(prompts, scores, strict=True):
        cells.setdefault((p.length, p.depth), []).append(
            (s.greedy, -s.logprob / p.request.n_scored)
        )
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (length, depth), rows in cells.items():
        out.setdefault(str(length), {})[f"{depth:g}"] = {
            "accuracy": sum(g for g, _ in rows) / len(rows),
            "key_loss": math.fsum(loss for _, loss in rows) / len(rows),
            "trials": len(rows),
        }
    return out


def passkey_block(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    lengths: Sequence[int],
    depths: Sequence[float],
    trials: int,
    max_positions: int | None,
    batch_size: int,
    device: torch.device,
) -> dict[str, object]:
    """The passkey result of one model: the grid, the lengths skipped and why."""
    run, skipped = split_lengths(lengths, max_positions)
    prompts = make_prompts(tokenizer, run, depths, trials)
    grid = score_passkey(model, prompts, batch_size, device) if prompts else {}
    return {
        "grid": grid,
        "depths": list(depths),
        "trials": trials,
        "skipped": skipped,
        "max_positions": max_positions,
        "mean_accuracy": {
            n: float(np.mean([c["accuracy"] for c in row.values()])) for n, row in grid.items()
        },  # fmt: skip
    }
