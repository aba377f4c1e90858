"""Multiple-choice and cloze tasks from jsonl, scored by log-likelihood as lm-eval does.

One row per question::

    {"question": "The capital of France is", "choices": ["Paris", "Rome"], "answer": 0}

``answer`` is the index of the right choice or its text. ``style`` (optional, per row):

- ``cloze`` (default): each choice is scored as the continuation ``" " + choice`` of the
  question, as lm-eval's ARC or HellaSwag do;
- ``mc``: the choices are listed under the question as ``A. ...``, ``B. ...`` followed
  by ``Answer:``, and the letters are scored (MMLU style).

``acc`` picks the choice with the highest log-likelihood; ``acc_norm`` divides it by the
choice's length in characters first, lm-eval's normalisation, so long answers are not
penalised for having more tokens. Any malformed row stops the run before scoring and
names its file and line.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from steep.errors import SteepError
from steep.model.scoring import Request, prefix_token_id, score_requests

STYLES = ("cloze", "mc")


class TaskFileError(SteepError, ValueError):
    """A task file that cannot be scored; the message names the file and line."""


@dataclass
class Item:
    context: str  # the text the model reads before a choice
    continuations: list[str]  # what is scored, one per choice
    choices: list[str]  # the choices as written (their length normalises acc_norm)
    answer: int


@dataclass
class Task:
    name: str
    path: str
    items: list[Item]


def _choice_letters(n: int) -> list[str]:
    return list(string.ascii_uppercase[:n])


def _item(row: object, where: str) -> Item:
    """Validate one parsed row and turn it into the texts to score."""
    if not isinstance(row, dict):
        raise TaskFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise TaskFileError(f"{where}: 'question' must be a non-empty string")
    choices = row.get("choices")
    if (
        not isinstance(choices, list)
        or len(choices) < 2
        or not all(isinstance(c, str) and c.strip() for c in choices)
    ):
        raise TaskFileError(f"{where}: 'choices' must be a list of at least 2 non-empty strings")
    if len(choices) > 26:
        raise TaskFileError(f"{where}: at most 26 choices (A-Z), got {len(choices)}")
    answer = row.get("answer")
    if isinstance(answer, str):
        if answer not in choices:
            raise TaskFileError(f"{where}: 'answer' {answer!r} is not one of the choices")
        answer = choices.index(answer)
    elif not isinstance(answer, int) or isinstance(answer, bool) or not 0 <= answer < len(choices):
        raise TaskFileError(
            f"{where}: 'answer' must be a choice index 0..{len(choices) - 1} or a choice's text"
        )
    style = row.get("style", "cloze")
    if style not in STYLES:
        raise TaskFileError(f"{where}: 'style' must be one of {STYLES}, got {style!r}")
    if style == "mc":
        letters = _choice_letters(len(choices))
        listing = "\n".join(f"{letter}. {c}" for letter, c in zip(letters, choices, strict=True))
        return Item(f"{question}\n{listing}\nAnswer:", [f" {x}" for x in letters], letters, answer)
    return Item(question, [f" {c}" for c in choices], list(choices), answer)


def read_task(path: str | Path, name: str | None = None) -> Task:
    """Parse and check every row of a task file; raise on the first bad one."""
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(f"task file not found: {path}")
    items: list[Item] = []
    with open(path, encoding="utf-8") as f:
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TaskFileError(f"{where}: malformed JSON ({exc.msg})") from None
                items.append(_item(row, where))
        except UnicodeDecodeError as exc:
            raise TaskFileError(f"{path}: not UTF-8 ({exc.reason})") from None
    if not items:
        raise TaskFileError(f"task file {path} has no rows")
    return Task(name or path.stem, str(path), items)


def _encode_pair(
    tokenizer: PreTrainedTokenizerBase, context: str, continuation: str
) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation, split where the joint encoding splits.

    Encoding the two together keeps the tokenizer's own merges at the boundary; trailing
    spaces move from the context to the continuation first, as lm-eval does, so
    "Answer: " + "A" and "Answer:" + " A" score the same tokens.
    """
    stripped = context.rstrip()
    continuation = context[len(stripped) :] + continuation
    ctx = tokenizer(stripped, add_special_tokens=False)["input_ids"] if stripped else []
    whole = tokenizer(stripped + continuation, add_special_tokens=False)["input_ids"]
    cont = whole[len(ctx) :]
    if whole[: len(ctx)] != ctx or not cont:  # the merge crossed the boundary: encode apart
        cont = tokenizer(continuation, add_special_tokens=False)["input_ids"]
    return ctx, cont


def task_requests(
    task: Task, tokenizer: PreTrainedTokenizerBase, seq_len: int
) -> list[list[Request]]:
    """Per item, one request per choice; long contexts lose their start, never the choice."""
    prefix = prefix_token_id(tokenizer)
    out = []
    for item in task.items:
        reqs = []
        for cont_text in item.continuations:
            ctx, cont = _encode_pair(tokenizer, item.context, cont_text)
            if len(cont) > seq_len:
                raise TaskFileError(
                    f"task {task.name} ({task.path}): a choice has {len(cont)} tokens, more than "
                    f"seq_len = {seq_len}"
                )
            seq = [prefix, *ctx, *cont][-(seq_len + 1) :]
            reqs.append(Request(seq, len(cont)))
        out.append(reqs)
    return out


def evaluate_task(
    model: torch.nn.Module,
    task: Task,
    tokenizer: PreTrainedTokenizerBase,
    seq_len: int,
    batch_size: int,
    device: torch.device,
) -> dict[str, float]:
    """acc and acc_norm over the task's items (fractions in [0, 1])."""
    per_item = task_requests(task, tokenizer, seq_len)
    flat = [r for reqs in per_item for r in reqs]
    scores = iter(score_requests(model, flat, batch_size, device, desc=f"task {task.name}"))
    correct = correct_norm = 0
    for item, reqs in zip(task.items, per_item, strict=True):
        lls = [next(scores).logprob for _ in reqs]
        normed = [ll / len(c) for ll, c in zip(lls, item.choices, strict=True)]
        correct += int(max(range(len(lls)), key=lls.__getitem__) == item.answer)
        correct_norm += int(max(range(len(normed)), key=normed.__getitem__) == item.answer)
    n = len(task.items)
    return {"acc": correct / n, "acc_norm": correct_norm / n, "items": n}
