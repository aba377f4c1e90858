"""The loss taken from the hidden states a chunk at a time equals the whole-logits loss, in
value and in every gradient (#19 item 2); memory figures are in BENCHMARKS.md."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steep.train.forward import decoder_and_head, lm_loss, loss_line


def _model(seed: int = 0, vocab: int = 300, tie: bool = False) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        tie_word_embeddings=tie,
    )  # fmt: skip
    return LlamaForCausalLM(cfg)


def _grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("tie", [False, True], ids=["own head", "tied embeddings"])
@pytest.mark.parametrize("separator", [None, 5], ids=["packed", "document mask"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chunked_loss_and_gradients_equal_the_whole_logits(tie, separator, reduction) -> None:
    model = _model(tie=tie)
    windows = torch.randint(0, 300, (3, 41))
    windows[:, 10] = 5  # a document edge in every row
    whole = lm_loss(model, windows, separator, reduction)
    whole_grads = _grads(model, whole)
    chunked = lm_loss(model, windows, separator, reduction, chunk=7)  # 120 positions, 18 chunks
    chunked_grads = _grads(model, chunked)
    assert chunked.item() == pytest.approx(whole.item(), rel=1e-6)
    assert chunked_grads.keys() == whole_grads.keys()
    for name, g in whole_grads.items():
        torch.testing.assert_close(chunked_grads[name], g, rtol=1e-5, atol=1e-6, msg=name)


def test_a_head_that_is_not_a_plain_linear_layer_uses_the_whole_logits() -> None:
    model = _model()
    assert decoder_and_head(model) is not None
    model.config.final_logit_softcapping = 30.0  # Gemma 2: logits are post-processed
    assert decoder_and_head(model) is None
    assert loss_line(model, 4) == "loss: whole logits (the model post-processes its logits)"
    windows = torch.randint(0, 300, (2, 17))
    assert lm_loss(model, windows, chunk=4).item() == pytest.approx(lm_loss(model, windows).item())


def test_chunked_loss_under_bf16_autocast_matches_the_whole_path() -> None:
    model = _model()
    windows = torch.randint(0, 300, (2, 33))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        whole = lm_loss(model, windows)
        chunked = lm_loss(model, windows, chunk=8)
    assert chunked.dtype == torch.float32
    assert chunked.item() == pytest.approx(whole.item(), rel=1e-3)  # bf16 matmuls, fp32 loss


def test_auto_chunks_hold_a_fixed_logits_budget() -> None:
    from steep.train.forward import chunk_positions

    assert chunk_positions("auto", 128_256) == 523  # Llama 3: 256 MiB of fp32 logits
    assert chunk_positions("auto", 49_152) == 1365  # SmolLM2
    assert chunk_positions("auto", 257) == 261_123  # bytes: one chunk for any real batch
    assert chunk_positions(64, 128_256) == 64 and chunk_positions(None, 10) is None
