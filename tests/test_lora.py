"""LoRA CPT (#19 item 1) and the low-memory optimizer (item 3) on a tiny random Llama.

The claims: a LoRA run trains only adapters and embeddings, saves a merged plain HF model
whose logits equal the adapter's on the same base, checkpoints only what trains and resumes
exactly; 8-bit AdamW trains and resumes exactly; what cannot run says so before any work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from steep.config import parse_config
from steep.errors import ConfigError
from steep.hub.card import write_model_card
from steep.model.io import byte_tokenizer
from steep.train.checkpoint import checkpoint_dirs
from steep.train.loop import train
from steep.train.lora import MethodError, apply_method
from steep.train.optim import build_optimizer
from tests.conftest import TINY_LLAMA, resume_matches, tiny_config

LORA = {"method": "lora", "lora": {"rank": 4, "alpha": 8}, "lr_fraction": 1.0}


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def _wide_model(path: Path) -> Path:
    """Wide enough that torchao keeps 8-bit moments for the layers (tensors >= 4,096), with
    two weight shapes only: torchao compiles its step once per shape (seconds each on CPU)."""
    tok = byte_tokenizer()
    torch.manual_seed(0)
    shape = {**TINY_LLAMA, "hidden_size": 64, "intermediate_size": 64, "num_key_value_heads": 4}
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **shape)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_lora_run_saves_merged_model_and_adapter_and_resumes(tmp_path, corpora, tiny_model):
    raw = tiny_config(tmp_path, corpora, tiny_model, steps=8, **LORA)
    result = train(parse_config(raw))
    run = result.run_dir
    assert result.final["domain"] < result.baseline["domain"]  # the adapters learnt

    merged = AutoModelForCausalLM.from_pretrained(run / "model").eval()
    assert not any("lora" in k for k in merged.state_dict())  # a plain HF model
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model), run / "adapter"
    ).eval()
    ids = torch.randint(0, 256, (2, 24))
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapter(ids).logits, atol=1e-5)
        assert not torch.allclose(merged(ids).logits, base(ids).logits, atol=1e-3)
    ms, bs = merged.state_dict(), base.state_dict()
    assert torch.equal(ms["model.norm.weight"], bs["model.norm.weight"])  # frozen
    emb = "model.embed_tokens.weight"
    assert not torch.equal(ms[emb], bs[emb])  # embeddings train beside the adapters
    saved = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any("embed_tokens" in k for k in saved) and any("lora_A" in k for k in saved)
    assert "rank 4" in (run / "adapter" / "README.md").read_text()

    lineage = json.loads((run / "model" / "steep.json").read_text())
    method = lineage["method"]
    assert method["name"] == "lora" and method["rank"] == 4 and method["adapter"] == "adapter"
    assert {"q_proj", "down_proj"} <= set(method["target_modules"])
    assert 0 < method["trainable_params"] < method["total_params"]
    assert method["embedding_lr_ratio"] == 0.1
    card = write_model_card(run / "model", "t").read_text()
    assert "Method: **lora**, rank 4" in card and "`adapter/`" in card

    # checkpoints hold what trains, not the frozen base
    ckpt = checkpoint_dirs(run / "checkpoints")[-1]
    keys = dcp.FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
    assert any("lora_A" in k for k in keys)
    assert not any("base_layer" in k or "norm" in k for k in keys)
    resume_matches(run, tmp_path)


def test_embedding_lr_and_frozen_embeddings(tiny_model, tmp_path, corpora):
    def groups(train: dict) -> tuple[list[list[torch.Tensor]], list[float], torch.nn.Module]:
        cfg = parse_config(tiny_config(tmp_path, corpora, tiny_model, **train))
        model = AutoModelForCausalLM.from_pretrained(tiny_model)
        adapted = apply_method(model, cfg, "fp32", sharded=False)
        model = adapted.model if adapted else model
        opt, scales = build_optimizer(model, cfg, 1e-3)
        return [g["params"] for g in opt.param_groups], scales, model

    params, scales, model = groups(LORA)  # adapters, embeddings (norms are frozen)
    assert scales == [1.0, 0.1]
    assert params[1] == [model.get_input_embeddings().weight]  # tied: one matrix
    frozen = {**LORA, "lora": {"rank": 4, "embeddings": "freeze"}}
    params, scales, model = groups(frozen)
    assert scales == [1.0] and not model.get_input_embeddings().weight.requires_grad
    params, scales, _ = groups({"embedding_lr_ratio": 0.5})  # full training may set it too
    assert scales == [1.0, 1.0, 0.5]
    params, scales, _ = groups({})  # full, ratio 1: the two groups runs always had
    assert scales == [1.0, 1.0]


def test_lora_on_names_the_model_lacks_says_which_exist(tmp_path, corpora, tiny_model):
    raw = tiny_config(
        tmp_path, corpora, tiny_model, method="lora", lora={"target_modules": ["qkv"]}
    )
    with pytest.raises(ConfigError, match="no linear layer named qkv.*q_proj"):
        train(parse_config(raw))
    assert not (tmp_path / "run").exists()  # refused before its first record: no folder


def test_frozen_embeddings_refused_on_an_extended_vocabulary(tmp_path, corpora, tiny_model):
    cfg = parse_config(
        tiny_config(tmp_path, corpora, tiny_model, method="lora", lora={"embeddings": "freeze"})
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with pytest.raises(ConfigError, match="rows 250\\+ .*never learn"):
        apply_method(model, cfg, "fp32", sharded=False, first_new_id=250)


def test_qlora_and_offload_refused_on_cpu(tmp_path, corpora, tiny_model):
    raw = tiny_config(tmp_path, corpora, tiny_model, method="qlora", device="cpu")
    with pytest.raises(MethodError, match="needs a CUDA device.*use train.method=lora"):
        train(parse_config(raw))
    raw = tiny_config(tmp_path, corpora, tiny_model, offload="cpu", device="cpu")
    with pytest.raises(ConfigError, match="offload=cpu.*set train.offload=none"):
        train(parse_config(raw))
    assert not (tmp_path / "run").exists()


def test_adamw8bit_trains_and_resumes_exactly(tmp_path, corpora):
    # torchao compiles its step per weight shape (seconds each on 2 cores): eager here, the
    # same arithmetic; a real run compiles it
    torch.compiler.set_stance("force_eager")
    try:
        _train_8bit(tmp_path, corpora)
    finally:
        torch.compiler.set_stance("default")


def _train_8bit(tmp_path: Path, corpora: dict[str, Path]) -> None:
    base = _wide_model(tmp_path / "wide")
    raw = tiny_config(tmp_path, corpora, base, steps=4, optimizer="adamw8bit")
    raw["checkpoint"]["every_steps"] = 2
    cfg = parse_config(raw)
    model = AutoModelForCausalLM.from_pretrained(base)
    opt, _ = build_optimizer(model, cfg, 1e-3)
    model(torch.randint(0, 256, (1, 8)), labels=torch.randint(0, 256, (1, 8))).loss.backward()
    opt.step()
    moments = opt.state[model.model.layers[0].mlp.down_proj.weight]["exp_avg"]
    assert type(moments).__name__ == "OptimState8bit"  # 1 byte a value and a scale a block
    result = train(cfg)
    assert result.final["domain"] < result.baseline["domain"]
    resume_matches(result.run_dir, tmp_path)
