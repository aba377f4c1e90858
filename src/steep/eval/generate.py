"""Completions of the same prompts, so base and adapted model read side by side.

Greedy (no sampling) by default, so a sample changes only when the model does: two runs
of the same comparison show the same text. A temperature above 0 samples instead (the
studio's generate box, ``--temperature``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from steep.errors import SteepError
from steep.model.scoring import prefix_token_id


class PromptFileError(SteepError, ValueError):
    """A prompt file that cannot be read; the message names the file and line."""


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from ``.jsonl`` (a ``prompt`` field per line) or text (one prompt per line).

    In a text file, ``\\n`` inside a line stands for a newline, so a prompt can span lines.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"prompt file not found: {path}")
    prompts = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise PromptFileError(f"{path}: not UTF-8 ({exc.reason})") from None
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson", ".json")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not is_jsonl:
            prompts.append(line.replace("\\n", "\n"))
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PromptFileError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from None
        prompt = row.get("prompt") if isinstance(row, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise PromptFileError(f"{path}:{lineno}: needs a non-empty string 'prompt'")
        prompts.append(prompt)
    if not prompts:
        raise PromptFileError(f"prompt file {path} has no prompts")
    return prompts


@torch.no_grad()
def complete(
    model: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    device: torch.device,
    temperature: float = 0.0,
) -> list[str]:
    """The continuation of each prompt (the prompt itself not repeated): greedy at
    ``temperature`` 0, else sampled at that temperature.

    One prompt at a time: a handful of prompts does not need batching, and unbatched
    generation needs no pad token, which many base tokenizers lack.
    """
    was_training = model.training
    model.eval()
    prefix = prefix_token_id(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix
    room = getattr(model.config, "max_position_embeddings", None)
    out = []
    for prompt in tqdm(prompts, desc="samples", unit="prompt", leave=False, mininterval=1.0):
        ids = [prefix, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
        if room and len(ids) + max_new_tokens > room:  # keep the end of a long prompt
            ids = ids[-max(room - max_new_tokens, 1) :]
        input_ids = torch.tensor([ids], device=device)
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            **({"temperature": temperature} if temperature > 0 else {}),
            pad_token_id=pad,
        )
        out.append(tokenizer.decode(generated[0, len(ids) :], skip_special_tokens=True))
    model.train(was_training)
    return out
