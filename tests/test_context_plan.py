"""Long sequences in `steep plan` and `train.context_parallel` (#35 part 3): one sequence's
activations and logits, the longest seq_len that fits, the GPUs context parallelism would
need, the context check in the plan, and the refusal of context parallelism with its reason."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from transformers.masking_utils import find_packed_sequence_indices

from steep.cli import main
from steep.config import parse_config
from steep.config.context import CONTEXT_PARALLEL_REASON
from steep.plan.devices import find_device
from steep.plan.estimate import make_plan
from steep.plan.longctx import STEP
from steep.train.preflight import PreflightError, preflight

H100 = find_device("H100")
SMOL = "HuggingFaceTB/SmolLM2-1.7B"  # steep's table: 8,192 positions


def _config(seq: int = 32768, **more: Any) -> dict[str, Any]:
    return {
        "model": {"base": SMOL, "rope_scaling": {"rope_type": "yarn", "factor": 4}},
        "data": {"seq_len": seq, "sources": [{"name": "d", "paths": ["x.jsonl"]}]},
        "train": {"steps": 100, "global_batch_tokens": seq * 32, **more},
        "eval": {"batch_size": 1},
    }


def test_the_plan_shows_one_sequence_and_the_base_s_context() -> None:
    plan = make_plan(parse_config(_config(activation_checkpointing="full")), 8, H100)
    c = plan.context
    assert (c.base_positions, c.covered, c.problem) == (8192, 32768, None)
    assert c.longest_fit == 32768 and c.cp_needed is None and plan.fits
    assert c.activations_full_ac == pytest.approx(plan.memory.activations_full_ac)
    assert c.logits_whole == 12 * 32768 * 49152 and c.logits_chunked < c.logits_whole / 20


def test_the_longest_fit_and_the_context_parallel_degree_are_the_plan_s_own() -> None:
    """Without checkpointing 32k does not fit an H100: the longest seq_len that does is
    the plan's own boundary, and k GPUs per sequence is the plan at seq/k."""
    cfg = parse_config(_config())
    c = make_plan(cfg, 8, H100).context
    assert c.longest_fit is not None and c.longest_fit < 32768
    at = lambda seq, gpus=8: make_plan(parse_config(_config(seq)), gpus, H100)  # noqa: E731
    assert at(c.longest_fit).fits and not at(c.longest_fit + STEP).fits
    assert c.cp_needed == 2 and at(32768 // 2).fits  # seq/2 on the same 8 GPUs


def test_the_plan_names_the_factor_steep_train_would_need(capsys, tmp_path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(
        f"model: {{base: {SMOL}}}\n"
        "data: {seq_len: 20000, sources: [{name: d, paths: [x.jsonl]}]}\n"
        "train: {steps: 10, global_batch_tokens: 160000, activation_checkpointing: full}\n"
    )
    assert main(["plan", str(path), "--gpus", "8", "--gpu", "H100"]) == 0
    out = capsys.readouterr().out
    assert "context   seq_len 20,000 (the base knows 8,192" in out
    assert "steep train refuses this: data.seq_len=20000 is above the base's" in out
    assert "factor of at least 2.45" in out


def test_context_parallel_is_refused_with_its_reason() -> None:
    cfg = parse_config(_config(context_parallel=2, activation_checkpointing="full"))
    with pytest.raises(PreflightError) as err:
        preflight(cfg, world_size=8, check_data=False)
    (line,) = str(err.value).splitlines()
    assert line.startswith("train.context_parallel=2: not available in steep: torch's")
    assert CONTEXT_PARALLEL_REASON in line


def test_transformers_reads_load_balanced_shards_as_packed_documents() -> None:
    """The reason's transformers fact: torch's load balancer gives rank 0 of 2 the first and
    the last quarter of a causal sequence; transformers 5 sees a jump in its position_ids,
    takes it for packed documents and builds the explicit mask CP's SDPA refuses. A
    contiguous shard (no load balancing) keeps is_causal. When this fails, revisit the
    refusal (docs/context-extension.md)."""
    positions = torch.arange(16).view(1, 16)
    head_tail = torch.cat([positions[:, :4], positions[:, 12:]], dim=1)
    assert find_packed_sequence_indices(head_tail) is not None
    assert find_packed_sequence_indices(positions[:, 4:8]) is None


def test_torch_context_parallel_has_no_cpu_kernel() -> None:
    """The reason's torch fact: on CPU (gloo) torch's context_parallel has no ring for the
    CPU SDPA kernel, so steep refuses it there rather than fail inside the first step."""
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.experimental import context_parallel

    if dist.is_initialized():
        pytest.skip("a process group is already up in this process")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        q, k, v = (torch.randn(1, 2, 8, 4) for _ in range(3))
        cp = context_parallel(mesh, buffers=[q, k, v], buffer_seq_dims=[2, 2, 2])
        with cp, pytest.raises(NotImplementedError, match="for_cpu"):
            F.scaled_dot_product_attention(q, k, v, is_causal=True)
    finally:
        dist.destroy_process_group()
