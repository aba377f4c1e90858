"""Speed and memory features must not change the loss: document masking, activation
checkpointing, torch.compile; plus the FLOPs count behind MFU and the fused-kernel guard."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steep.config import parse_config
from steep.plan.devices import peak_flops
from steep.train.flops import flops_per_token
from steep.train.forward import document_positions, lm_loss
from steep.train.kernels import KernelError
from steep.train.loop import train
from steep.train.parallel import apply_activation_checkpointing, compile_layers
from tests.conftest import TINY_LLAMA, tiny_config

SEP = 256


def _model(**over) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=257, **{**TINY_LLAMA, **over})
    return LlamaForCausalLM(cfg)


def test_document_positions_restart_after_each_separator():
    ids = torch.tensor([[5, 6, SEP, 7, 8, 9, SEP, SEP, 4], [SEP, 1, 2, 3, 4, 5, 6, 7, 8]])
    assert document_positions(ids, SEP).tolist() == [
        [0, 1, 2, 0, 1, 2, 3, 0, 0],
        [0, 0, 1, 2, 3, 4, 5, 6, 7],
    ]


def test_document_mask_isolates_packed_documents():
    """With masking, document B packed after A is predicted exactly as B on its own."""
    model = _model().eval()
    a, b = torch.randint(0, 256, (1, 20)), torch.randint(0, 256, (1, 15))
    packed = torch.cat([a, torch.tensor([[SEP]]), b], dim=1)
    with torch.no_grad():
        alone = model(input_ids=b, use_cache=False).logits[0]
        positions = document_positions(packed, SEP)
        masked = model(input_ids=packed, position_ids=positions, use_cache=False).logits
        unmasked = model(input_ids=packed, use_cache=False).logits
    assert torch.allclose(masked[0, 21:], alone, atol=1e-5)
    assert not torch.allclose(unmasked[0, 21:], alone, atol=1e-3)  # without it, A leaks in


def _loss_and_grads(model: torch.nn.Module, batch: torch.Tensor) -> tuple[float, list]:
    loss = lm_loss(model, batch, SEP)
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters()]


def _assert_same_training_signal(plain: torch.nn.Module, other: torch.nn.Module, tol: float):
    batch = torch.randint(0, 257, (2, 33))
    la, ga = _loss_and_grads(plain, batch)
    lb, gb = _loss_and_grads(other, batch)
    assert lb == pytest.approx(la, abs=tol)
    for x, y in zip(ga, gb, strict=True):
        assert torch.allclose(x, y, atol=tol)


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_activation_checkpointing_gives_same_loss_and_grads(mode):
    plain = _model(num_hidden_layers=4)
    wrapped = copy.deepcopy(plain)
    n = apply_activation_checkpointing(wrapped, mode, every=2)
    assert n == (4 if mode == "full" else 2)
    _assert_same_training_signal(plain, wrapped, 1e-6)


def test_compiled_layers_give_same_loss():
    plain = _model()
    compiled = copy.deepcopy(plain)
    compile_layers(compiled)
    _assert_same_training_signal(plain, compiled, 1e-5)


def test_flops_per_token_counts_matmuls_and_attention():
    model = _model(tie_word_embeddings=True)
    h, i, layers, heads, kv = 32, 64, 2, 4, 2
    hd = h // heads
    per_layer = h * heads * hd + 2 * h * kv * hd + heads * hd * h + 3 * h * i + 2 * h
    matmul = layers * per_layer + h + 257 * h  # + final norm + tied head, no embedding lookup
    assert flops_per_token(model, 64) == 6 * matmul + 12 * layers * heads * hd * 64


def test_peak_flops_by_device_name():
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_flops("NVIDIA H100 PCIe") == 756.0e12
    assert peak_flops("NVIDIA H200") == 989.4e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312.0e12
    assert peak_flops("Some Future Accelerator") is None


def test_run_with_every_feature_on_logs_mfu(tmp_path, corpora, tiny_model):
    """Document mask + selective AC + a given peak: the run learns and reports MFU."""
    raw = tiny_config(
        tmp_path,
        corpora,
        tiny_model,
        steps=8,
        document_mask="on",
        activation_checkpointing="selective",
        peak_tflops=1.0,
    )
    result = train(parse_config(raw))
    assert result.final["domain"] < result.baseline["domain"]
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    last = [r for r in map(json.loads, lines) if r["kind"] == "train"][-1]
    expected = last["tokens_per_s_per_device"] * flops_per_token(_model(), 64) / 1e12
    assert last["mfu"] == pytest.approx(expected, rel=1e-6)
    report = (result.run_dir / "report.md").read_text()
    records = [r for r in map(json.loads, lines) if r["kind"] == "train"][1:]
    mean_mfu = sum(r["mfu"] for r in records) / len(records)
    assert f"MFU {mean_mfu:.1%}" in report


def test_default_run_on_cpu_has_no_mfu(tmp_path, corpora, tiny_model):
    result = train(parse_config(tiny_config(tmp_path, corpora, tiny_model, steps=3)))
    lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
    train_rec = [r for r in map(json.loads, lines) if r["kind"] == "train"][-1]
    assert train_rec["mfu"] is None  # a CPU has no known bf16 peak: none rather than a guess
    # peak memory is this process's resident set: more than the model, less than the machine
    assert (
        0.05
        < train_rec["peak_mem_gib"]
        < os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    )
    report = (result.run_dir / "report.md").read_text()
    assert f"peak memory (rank 0): {train_rec['peak_mem_gib']:.2f} GiB" in report
    assert "MFU" not in report


def test_liger_refused_on_cpu_before_training(tmp_path, corpora, tiny_model):
    raw = tiny_config(tmp_path, corpora, tiny_model, fused_kernels="liger", device="cpu")
    with pytest.raises(KernelError, match="needs a CUDA device"):
        train(parse_config(raw))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_step_syncs_with_the_host_once_not_per_micro_batch(
    tmp_path, corpora, tiny_model, monkeypatch
) -> None:
    """#19 item 5: the loss is summed on the device; before, each micro-batch's .item()
    waited for the GPU to finish it."""
    calls = []
    real = torch.Tensor.item

    def counted(self):
        calls.append(1)
        return real(self)

    cfg = tiny_config(tmp_path, corpora, tiny_model, steps=3, global_batch_tokens=1024)
    cfg["eval"] = {"every_steps": 100, "max_windows": 1}
    monkeypatch.setattr(torch.Tensor, "item", counted)
    result = train(parse_config(cfg))  # 1024 / (2 x 64): 8 micro-batches a step
    assert len(calls) <= 3 * 2, len(calls)  # one for the loss, at most one more, per step
    assert result.final
