"""Several processes, one model: torchrun's environment, FSDP2, activation checkpointing, compile.

steep uses PyTorch's own stack rather than a framework on top of it: ``torchrun`` starts
one process per device and sets RANK / WORLD_SIZE / LOCAL_RANK; ``fully_shard`` (FSDP2)
shards every decoder layer and the root, keeping fp32 master weights and reducing gradients
in fp32 while computing in bf16 (``MixedPrecisionPolicy``). A single process uses none of
this and trains the plain module, so the one-device path stays the simplest one.

Order matters and follows torchtitan: activation checkpointing wraps layers first, then
``torch.compile`` compiles each layer, then FSDP shards them.
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from steep.config import ConfigError, RunConfig
from steep.train.forward import CHUNKED_LOSS, chunked_loss, inner_model


@dataclass(frozen=True)
class Dist:
    """Where this process stands in the job; world 1 means no process group at all."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's value on every rank (a run directory name, say)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum over ranks, in float64 so a 2-rank mean equals the 1-rank one."""
        if not self.enabled:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()


def init_distributed(config: RunConfig) -> Dist:
    """Join torchrun's process group if launched by it; check the batch splits evenly."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    config.batch_split(world).check()  # the same whole micro-batches on every rank
    cuda = config.train.device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # A rank that dies leaves the others waiting in a collective: the timeout turns that
        # hang into an error (torchrun's agent also tears the group down when a worker exits).
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            timeout=timedelta(seconds=config.train.dist_timeout_s),
        )
    return Dist(rank=rank, world=world, local_rank=local_rank)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The repeated transformer blocks of an HF causal LM (``model.model.layers`` for Llama)."""
    inner = getattr(inner_model(model), "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ConfigError(
            f"{type(model).__name__} has no model.layers: steep shards and checkpoints "
            "decoder-only HF models (Llama, Mistral, Qwen2, Gemma, OLMo, SmolLM...)"
        )
    return layers


def check_offload(config: RunConfig, d: Dist, device: torch.device) -> None:
    """``train.offload: cpu`` is FSDP2's: it needs torchrun's ranks and a CUDA device."""
    if config.train.offload == "none":
        return
    if device.type != "cuda":
        raise ConfigError(
            f"train.offload=cpu moves weights and optimizer state from the GPU to host "
            f"memory; this run is on {device.type}, where they are there already: "
            "set train.offload=none"
        )
    if not d.enabled:
        raise ConfigError(
            "train.offload=cpu is FSDP2's offload, and one process is not sharded: launch "
            "with torchrun on 2 or more GPUs (steep launch --gpus N)"
        )


def apply_activation_checkpointing(model: torch.nn.Module, mode: str, every: int) -> int:
    """Recompute layer activations in backward to save memory; returns layers wrapped.

    ``full`` wraps every decoder layer, ``selective`` every ``every``-th one (torchtitan's
    layer-selective mode): a middle ground between memory and ~30% extra compute.
    """
    if mode == "none":
        return 0
    # deferred: only on the distributed / FSDP path
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    layers = decoder_layers(model)
    wrapped = 0
    for i, layer in enumerate(layers):
        if mode == "full" or i % every == every - 1:
            layers[i] = checkpoint_wrapper(layer, preserve_rng_state=False)
            wrapped += 1
    return wrapped


def compile_layers(model: torch.nn.Module) -> None:
    """Compile each decoder layer: same code for every layer, so it compiles once and reuses."""
    layers = decoder_layers(model)
    for i, layer in enumerate(layers):
        layers[i] = torch.compile(layer)


def shard_model(
    model: torch.nn.Module, precision: str, device: torch.device, offload: bool = False
) -> None:
    """FSDP2 over the default process group: each layer, then the root (embeddings, head).

    ``offload``: parameters, gradients and optimizer state live in pinned host memory; each
    layer's shard is copied in for its forward and backward, and AdamW steps on the CPU.
    """
    from torch.distributed.fsdp import (  # deferred: only on the distributed / FSDP path
        CPUOffloadPolicy,
        MixedPrecisionPolicy,
        OffloadPolicy,
        fully_shard,
        register_fsdp_forward_method,
    )

    if precision == "bf16-autocast":  # fp32 master weights, bf16 compute, fp32 reduction
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    else:
        mp = MixedPrecisionPolicy()
    policy = CPUOffloadPolicy() if offload else OffloadPolicy()
    layers = decoder_layers(model)
    for i, layer in enumerate(layers):
        # the last layer's parameters are needed right away by backward: keep them gathered
        last = i == len(layers) - 1
        fully_shard(layer, mp_policy=mp, reshard_after_forward=not last, offload_policy=policy)
    fully_shard(model, mp_policy=mp, offload_policy=policy)
    # The chunked loss calls the decoder and the head's weight, not the root's forward: as
    # a forward method of the root, FSDP2 gathers the root's own parameters (embeddings,
    # final norm, head) around it and hooks their gradients' reduction into backward.
    setattr(model, CHUNKED_LOSS, types.MethodType(chunked_loss, model))
    register_fsdp_forward_method(model, CHUNKED_LOSS)


def full_state_dict(
    model: torch.nn.Module, d: Dist, trainable_only: bool = False
) -> dict[str, torch.Tensor]:
    """The whole unsharded state dict with HF's names (wrapper prefixes removed), on CPU;
    ``trainable_only``: the tensors that train (LoRA's adapters and embeddings).

    Under FSDP a collective: every rank must call it; only rank 0 gets the tensors.
    """
    from torch.distributed.checkpoint.state_dict import (  # deferred: only on the distributed / FSDP path
        StateDictOptions,
        get_model_state_dict,
    )

    options = StateDictOptions(
        full_state_dict=d.enabled, cpu_offload=d.enabled, ignore_frozen_params=trainable_only
    )
    return get_model_state_dict(model, options=options)


def set_gradient_sync(model: torch.nn.Module, sync: bool) -> None:
    """Skip the reduce-scatter on all but the last micro-batch of a step (FSDP2 only)."""
    setter = getattr(model, "set_requires_gradient_sync", None)
    if setter is not None:
        setter(sync)


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
