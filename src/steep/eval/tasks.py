"""Multiple-choice and cloze tasks from jsonl, scored by log-likelihood as lm-eval does.

One row per question::

    {"question": "The capital of France is", "choices": ["Paris", "Rome"], "answer": 0}

``answer`` is the index of the right choice or its text. ``style`` (optional, per row):

- ``cloze`` (default): each choice is scored as the continuation ``" " + choice`` of the
  question, as lm-eval's ARC or HellaSwag do;
- ``mc``: the choices are listed under the question as ``A. ...``, ``B. ...`` followed
  by ``Answer:``, and the letters are scored (MMLU style).

The tokens are the ones lm-evaluation-harness 0.4.13's ``hf`` model builds by default
(``add_bos_token`` unset): the context and ``context + continuation`` are each encoded
with the tokenizer's own special tokens, the continuation is what the whole adds to the
context, and trailing spaces of the context move to the continuation first. So the
prefix is whatever the tokenizer adds by itself: nothing for SmolLM2 (it has a BOS,
``<|im_start|>``, but does not add it), ``<s>`` for Llama 2. A context that already
starts with the BOS text gets no second one. :func:`prefix_rule` says which applied, and
each task's result carries it as ``prefix``.

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


def _prefix_text(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The text of lm-eval's prefix token (BOS, else EOS), or None without either."""
    try:
        return tokenizer.decode(prefix_token_id(tokenizer))
    except ValueError:
        return None


def _encode(tokenizer: PreTrainedTokenizerBase, text: str, prefix_text: str | None) -> list[int]:
    """lm-eval's ``HFLM.tok_encode`` with ``add_bos_token`` unset.

    The tokenizer adds its own special tokens, except to a text that already starts with
    the prefix token's text.
    """
    starts = prefix_text is not None and text.startswith(prefix_text)
    return list(tokenizer.encode(text, add_special_tokens=not starts))


def prefix_rule(tokenizer: PreTrainedTokenizerBase) -> str:
    """What the tokenizer puts around each text, in words (written with each result)."""
    bare = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a")
    at = next((i for i in range(len(full)) if full[i : i + len(bare)] == bare), len(full))
    head, tail = full[:at], full[at + len(bare) :]
    why = "lm-eval 0.4.13 default, add_bos_token unset"
    if not head:
        rule = f"none ({why}: this tokenizer adds no BOS)"
    else:
        rule = f"{''.join(tokenizer.convert_ids_to_tokens(head))} ({why}: added by the tokenizer)"
    if tail:
        rule += f"; after each text: {''.join(tokenizer.convert_ids_to_tokens(tail))}"
    return rule


def _encode_pair(
    tokenizer: PreTrainedTokenizerBase, context: str, continuation: str, prefix_text: str | None
) -> tuple[list[int], list[int]]:
    """Token ids of context and continuation, split as lm-eval's ``_encode_pair`` splits.

    Trailing spaces move from the context to the continuation, so "Answer: " + "A" and
    "Answer:" + " A" score the same tokens; the continuation is the joint encoding past
    the context's own length, even where a merge crosses the boundary.
    """
    stripped = context.rstrip()
    continuation = context[len(stripped) :] + continuation
    whole = _encode(tokenizer, stripped + continuation, prefix_text)
    ctx = _encode(tokenizer, stripped, prefix_text)
    return ctx, whole[len(ctx) :]


def task_requests(
    task: Task, tokenizer: PreTrainedTokenizerBase, seq_len: int
) -> list[list[Request]]:
    """Per item, one request per choice; long contexts lose their start, never the choice."""
    prefix_text = _prefix_text(tokenizer)
    where = f"task {task.name} ({task.path})"
    out = []
    for item in task.items:
        reqs = []
        for cont_text in item.continuations:
            ctx, cont = _encode_pair(tokenizer, item.context, cont_text, prefix_text)
            if not ctx or not cont:  # lm-eval stops on an assertion here
                raise TaskFileError(
                    f"{where}: {item.context!r} + {cont_text!r} leaves no tokens to "
                    f"{'read' if cont else 'score'}"
                )
            if len(cont) > seq_len:
                raise TaskFileError(
                    f"{where}: a choice has {len(cont)} tokens, more than seq_len = {seq_len}"
                )
            seq = [*ctx, *cont][-(seq_len + 1) :]
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
) -> dict[str, float | str]:
    """acc and acc_norm over the task's items (fractions in [0, 1]), and the prefix rule."""
    per_item = task_requests(task, tokenizer, seq_len)
    rule = prefix_rule(tokenizer)
    print(f"task {task.name}: scored as lm-eval's hf model does; prefix: {rule}", flush=True)
    flat = [r for reqs in per_item for r in reqs]
    scores = iter(score_requests(model, flat, batch_size, device, desc=f"task {task.name}"))
    correct = correct_norm = 0
    for item, reqs in zip(task.items, per_item, strict=True):
        lls = [next(scores).logprob for _ in reqs]
        normed = [ll / len(c) for ll, c in zip(lls, item.choices, strict=True)]
        correct += int(max(range(len(lls)), key=lls.__getitem__) == item.answer)
        correct_norm += int(max(range(len(normed)), key=normed.__getitem__) == item.answer)
    n = len(task.items)
    return {"acc": correct / n, "acc_norm": correct_norm / n, "items": n, "prefix": rule}
