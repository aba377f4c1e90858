"""The embeddings-only warm stage: train new-token rows first, then the whole model.

Why: after a vocabulary extension the new rows are only a guess (the mean of their
sub-tokens); full CPT from step 0 lets their large early gradients flow into every layer.
Chinese-LLaMA first trained the embeddings alone, then everything. With
``train.embedding_warmup_steps: K`` steps ``0..K-1`` update only the input and output
embeddings: only the rows a vocabulary extension added when the base's steep.json names
them (``vocab_extension.first_new_id``), else every row. From step K on, all weights train.

The stage is a pure function of the step, so resuming is exact: ``set_step`` is called
before a checkpoint is loaded (frozen weights have no optimizer state yet, and the state
being loaded must match) and before every step. Frozen weights get ``requires_grad=False``,
so their gradients are neither computed nor stepped (AdamW skips a parameter without a
gradient; its moments start when the stage ends). Old rows are held exactly: their gradient
is zeroed and, for the stage, the weight decay of their parameter group is 0, so AdamW's
update of those rows is exactly zero.
"""

from __future__ import annotations

from typing import Any

import torch

from steep.artifacts.lineage import parse_lineage
from steep.config import RunConfig
from steep.train.forward import embedding_weights


class EmbeddingWarmup:
    """Freezes all but the embeddings (or their new rows) for the first ``steps`` steps."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        steps: int,
        first_new_id: int | None = None,
    ) -> None:
        self.steps = steps
        self.first_new_id = first_new_id
        self.embeddings = embeddings = embedding_weights(model)
        ids = {id(p) for p in embeddings}
        self.frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        self.optimizer = optimizer
        # group index -> its weight decay; by index, because loading a checkpoint replaces
        # the optimizer's group dicts (with the decay they had when it was written)
        self.weight_decay = {
            i: g["weight_decay"]
            for i, g in enumerate(optimizer.param_groups)
            if any(id(p) in ids for p in g["params"])
        }
        self.active: bool | None = None

    @classmethod
    def from_config(
        cls,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        config: RunConfig,
        base_info: dict[str, Any],
    ) -> EmbeddingWarmup:
        return cls(model, optimizer, config.train.embedding_warmup_steps, first_new_id(base_info))

    def describe(self) -> str:
        rows = f"rows {self.first_new_id}+" if self.first_new_id is not None else "all rows"
        return f"steps 0-{self.steps - 1} train only the embeddings ({rows}), then all weights"

    def set_step(self, step: int) -> None:
        """Put the model and optimizer in the stage that ``step`` belongs to."""
        active = step < self.steps
        if active != self.active:
            self.active = active
            for p in self.frozen:
                p.requires_grad_(not active)
        masked = active and self.first_new_id is not None
        for i, decay in self.weight_decay.items():
            self.optimizer.param_groups[i]["weight_decay"] = 0.0 if masked else decay

    def mask_grads(self) -> None:
        """Zero the gradient of old rows (before clipping and the optimizer step)."""
        if not self.active or self.first_new_id is None:
            return
        for p in self.embeddings:
            if p.grad is None:
                continue
            mask = torch.zeros(p.shape[0], 1, dtype=p.grad.dtype, device=p.grad.device)
            mask[self.first_new_id :] = 1
            if hasattr(p.grad, "device_mesh"):  # a DTensor under FSDP2: shard the mask alike
                # deferred: only on the distributed / FSDP path
                from torch.distributed.tensor import distribute_tensor

                mask = distribute_tensor(mask, p.grad.device_mesh, p.grad.placements)
            p.grad.mul_(mask)


def first_new_id(base_info: dict[str, Any]) -> int | None:
    """The first embedding row a vocabulary extension added to the base (its steep.json)."""
    lineage = parse_lineage(base_info.get("lineage") or {}, "the base's steep.json")
    return (lineage.vocab_extension or {}).get("first_new_id")
