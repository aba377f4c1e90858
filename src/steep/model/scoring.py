"""Log-likelihood of token sequences, batched: the one primitive held-out and task scoring share.

A request is a token sequence plus how many of its last tokens to score. Requests are
sorted by length and right-padded into batches, so padding never sits before a real
token and a causal model's scores do not depend on what else is in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Request:
    ids: Sequence[int]  # the whole sequence the model reads, prefix token included
    n_scored: int  # score the last n_scored tokens (each given everything before it)


@dataclass(frozen=True)
class Score:
    logprob: float  # sum of log-probabilities (nats) of the scored tokens
    greedy: bool  # every scored token was the model's argmax (lm-eval's is_greedy)


def prefix_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token put before every text so its first token is predicted too.

    BOS when the tokenizer has one, else EOS: the rule lm-evaluation-harness uses, so
    steep's bits per byte read the same as its rolling log-likelihood.
    """
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    raise ValueError(
        "the tokenizer has neither a BOS nor an EOS token: nothing to start a text with"
    )


def resolve_device(name: str) -> torch.device:
    """'auto' is the GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def score_requests(
    model: torch.nn.Module,
    requests: Sequence[Request],
    batch_size: int,
    device: torch.device,
    desc: str = "scoring",
) -> list[Score]:
    """Score every request; results come back in the order of ``requests``.

    Logits are upcast to fp32 before the log-softmax, as in training, because the small
    differences between a base and its adapted model are what is being measured.
    """
    for r in requests:
        if not 1 <= r.n_scored < len(r.ids):
            raise ValueError(f"cannot score {r.n_scored} of {len(r.ids)} tokens")
    was_training = model.training
    model.eval()
    order = sorted(range(len(requests)), key=lambda i: -len(requests[i].ids))
    out: list[Score | None] = [None] * len(requests)
    bar = tqdm(total=len(requests), desc=desc, unit="seq", leave=False, mininterval=1.0)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = len(requests[idx[0]].ids)  # longest first: the batch's first is its widest
        ids = torch.zeros(len(idx), width, dtype=torch.long)
        mask = torch.zeros(len(idx), width, dtype=torch.long)
        for row, i in enumerate(idx):
            seq = torch.as_tensor(list(requests[i].ids), dtype=torch.long)
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
        ).logits
        for row, i in enumerate(idx):
            n, k = len(requests[i].ids), requests[i].n_scored
            # position t predicts token t + 1: the scored tokens n-k..n-1 come from n-k-1..n-2
            row_logits = logits[row, n - k - 1 : n - 1].float()
            targets = ids[row, n - k : n].to(row_logits.device)
            logprobs = F.log_softmax(row_logits, dim=-1)
            picked = logprobs.gather(1, targets[:, None]).squeeze(1)
            greedy = bool((row_logits.argmax(-1) == targets).all())
            out[i] = Score(float(picked.double().sum()), greedy)
        bar.update(len(idx))
    bar.close()
    model.train(was_training)
    return [s for s in out if s is not None]
