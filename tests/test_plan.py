"""`steep plan` (#19 item 4): memory per device, FLOPs and time before any work; its
arithmetic on known shapes, its errors, the CLI, and one real measurement on CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from steep.cli import main
from steep.config import ConfigError, load_config, parse_config
from steep.plan.devices import find_device
from steep.plan.estimate import GIB, fit_problem, make_plan, resolve_device
from steep.plan.memory import chunk_positions, layer_activation_bytes
from steep.plan.shapes import from_hf_config, model_shape
from steep.train import forward
from steep.train.lora import apply_method

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "examples" / "smoke.yaml"
H100 = find_device("H100")


def _config(base: str = "meta-llama/Llama-3.1-8B", **train: Any) -> Any:
    return parse_config(
        {
            "model": {"base": base},
            "data": {"seq_len": 8192, "sources": [{"name": "d", "paths": ["x.jsonl"]}]},
            "train": {"steps": 1000, "global_batch_tokens": 8192 * 64, **train},
            "eval": {"batch_size": 1},
        }
    )


def test_chunk_rule_is_the_loss_rule() -> None:
    assert chunk_positions is forward.chunk_positions  # one rule, read by both


def test_llama_8b_full_does_not_fit_one_h100_and_the_plan_says_what_does() -> None:
    plan = make_plan(_config(), 1, H100)
    assert plan.params == pytest.approx(8.03e9, rel=0.001)  # Llama 3.1 8B
    mem = plan.memory
    # fp32 weights, gradients and AdamW's two moments: 16 bytes a parameter
    assert mem.weights + mem.gradients + mem.optimizer == pytest.approx(16 * plan.params)
    assert plan.fits is False and plan.peak_gib > 120
    assert mem.activations_full_ac < mem.activations_no_ac / 5
    fixes = [s for s in plan.suggestions if s.fits]
    assert fixes and all(s.peak_gib < plan.usable_gib for s in fixes)
    assert any("train.method=lora" in s.change for s in fixes)
    # FLOPs: 6 x matmul parameters + attention, per token; the step time at 40% MFU
    per_token = 6 * (plan.params - 128256 * 4096) + 12 * 32 * 4096 * 8192
    assert plan.flops_step == pytest.approx(per_token * 8192 * 64)
    assert plan.step_s == pytest.approx(plan.hw_flops_step / (989.4e12 * 0.4))


def test_llama_8b_fits_eight_h100_under_fsdp2() -> None:
    config = _config(activation_checkpointing="full")
    plan = make_plan(config, 8, H100)
    assert plan.sharded and plan.fits, plan.peak_gib
    assert plan.memory.weights == pytest.approx(4 * plan.params / 8)
    assert plan.chunk == 523  # FSDP2 chunks the loss too (train.loss_chunk auto)
    assert "whole logits" not in " ".join(plan.notes)
    assert make_plan(config, 1, H100).fits is False
    more = make_plan(_config(activation_checkpointing="full"), 1, H100).suggestions
    assert any(s.change.startswith("--gpus ") and s.fits for s in more)


def test_lora_needs_far_less_than_full() -> None:
    full = make_plan(_config(activation_checkpointing="full"), 1, H100)
    lora = make_plan(_config(activation_checkpointing="full", method="lora"), 1, H100)
    qlora = make_plan(_config(activation_checkpointing="full", method="qlora"), 1, H100)
    assert lora.fits and lora.peak_gib < 0.4 * full.peak_gib
    assert qlora.memory.weights < 0.6 * lora.memory.weights
    assert lora.trainable < 0.2 * lora.params  # rank 16 adapters + the embeddings
    assert lora.flops_step < full.flops_step  # no weight gradient for the frozen base


def test_unknown_gpu_asks_for_its_peak_and_memory() -> None:
    config = _config()
    with pytest.raises(ConfigError, match=r"--peak-tflops X --memory-gib Y"):
        resolve_device(config, "T4")
    device = resolve_device(config, "T4", peak_tflops=65, memory_gib=15)
    assert (device.name, device.peak_tflops, device.memory_gib) == ("T4", 65, 15)
    assert find_device("NVIDIA H100 80GB HBM3").name == "H100 SXM"
    assert find_device("NVIDIA A100-SXM4-40GB").memory_gib == 40
    assert find_device("NVIDIA L40S").name == "L40S"


def test_unknown_shape_says_what_to_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match=r"pass --model-config CONFIG.json") as exc:
        model_shape(_config("someone/unknown-7b").model)
    assert "\n" not in str(exc.value)
    cached = tmp_path / "hub" / "models--someone--unknown-7b" / "snapshots" / "abc"
    cached.mkdir(parents=True)
    cfg = {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 4, "intermediate_size": 128}  # fmt: skip
    (cached / "config.json").write_text(json.dumps(cfg))
    assert model_shape(_config("someone/unknown-7b").model).vocab == 1000


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_parameter_count_equals_the_models(tmp_path: Path, arch: str) -> None:
    sizes = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                 num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    sizes["tie_word_embeddings"] = False
    cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
    cfg_cls, model_cls = cls[arch]
    model = model_cls(cfg_cls(**sizes))
    model.config.save_pretrained(tmp_path)
    shape = model_shape(_config(str(tmp_path)).model)
    assert shape.params() == sum(p.numel() for p in model.parameters())
    tied = from_hf_config({**model.config.to_dict(), "tie_word_embeddings": True}, "t")
    assert tied.params() == shape.params() - 300 * 64


def _saved(layers: int, config: Any, seq: int) -> int:
    """Bytes of activations a tiny Llama saves for backward (saved-tensor hooks)."""
    torch.manual_seed(0)
    sizes = dict(hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=344, vocab_size=512, max_position_embeddings=seq)  # fmt: skip
    model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=layers, **sizes))
    if config.train.precision == "bf16":
        model = model.to(torch.bfloat16)
    adapted = apply_method(model, config, config.train.precision, sharded=False)
    model = adapted.model if adapted is not None else model
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if seq in t.shape and t.untyped_storage().data_ptr() not in params:  # not weights
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    autocast = config.train.precision == "bf16-autocast"
    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    with hooks, torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        forward.lm_loss(model, torch.randint(0, 512, (1, seq + 1)))
    return sum(saved.values())


@pytest.mark.parametrize(
    "train",
    [
        {"precision": "bf16-autocast"},
        {"precision": "fp32"},
        {"method": "lora"},
        {
            "method": "lora",
            "precision": "fp32",
            "lora": {"dropout": 0.1, "rank": 8, "target_modules": ["q_proj", "down_proj"]},
        },
    ],
)
def test_layer_activations_are_what_the_model_saves(train: dict[str, Any]) -> None:
    """The per-layer count is exact: the difference between a 2- and a 1-layer model."""
    seq = 40  # in no weight's shape
    cfg = parse_config(
        {
            "model": {"random_init": {}, "tokenizer": "bytes", "base_max_lr": 1e-3},
            "data": {"seq_len": seq, "sources": [{"name": "d", "paths": ["x.jsonl"]}]},
            "train": {"steps": 1, "global_batch_tokens": seq, **train},
        }
    )
    t = cfg.train
    measured = (_saved(2, cfg, seq) - _saved(1, cfg, seq)) / seq
    shape = from_hf_config({"vocab_size": 512, "hidden_size": 128, "num_hidden_layers": 1,
                            "num_attention_heads": 4, "num_key_value_heads": 2,
                            "intermediate_size": 344}, "t")  # fmt: skip
    lora = None if t.method == "full" else t.lora
    fp32_adapters = lora is not None and t.precision == "bf16"
    args = (shape, t.precision, seq, "sdpa", lora, fp32_adapters, True)
    assert layer_activation_bytes(*args) == measured


def test_cli_prints_the_plan_and_its_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(SMOKE), "--gpu", "H100", "--gpus", "2"]) == 0
    out = capsys.readouterr().out
    assert "memory per device" in out and "fits (" in out
    assert "2 x H100 SXM (989.4 TFLOP/s bf16, 79.6 GiB)" in out
    assert "tokens per day" in out and "40 steps" in out
    assert main(["plan", str(SMOKE), "--json", "--set", "train.micro_batch_size=8"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["device"]["kind"] == "cpu" and plan["fits"] is True
    assert plan["micro_batch_tokens"] == 8 * 128 and plan["grad_accum"] == 1
    assert main(["plan", str(SMOKE), "--gpu", "T4"]) == 2
    assert "--peak-tflops X --memory-gib Y" in capsys.readouterr().err


def test_launch_prints_the_plan(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["launch", str(SMOKE), "--gpus-per-node", "2", "--gpu", "A100"]
    assert main(argv) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("# plan: "))
    assert "per device on 2 x A100 80GB" in line and "fits" in line


def test_fit_problem_is_for_the_training_loop() -> None:
    smoke = load_config(SMOKE)
    assert fit_problem(smoke, 1, None) is None  # a tiny model in this machine's RAM
    problem = fit_problem(_config(), 1, "NVIDIA H100 80GB HBM3")
    assert problem is not None and "\n" not in problem
    assert "needs" in problem and "--set train.method=lora" in problem and "--force" in problem
    assert fit_problem(_config(), 1, "Some Future GPU") is None  # cannot tell: train
    assert fit_problem(_config(), 1, "Some Future GPU", memory_gib=40) is not None
    huge = _config(activation_checkpointing="full")
    assert fit_problem(huge, 16, "H100") is None


def test_fit_problem_asks_the_loaded_torch_for_the_training_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In the loop torch is loaded and knows the device; the plan itself never imports it."""
    cuda = SimpleNamespace(
        is_available=lambda: True,
        current_device=lambda: 0,
        get_device_properties=lambda i: SimpleNamespace(total_memory=40 * GIB),
        get_device_name=lambda i: "NVIDIA A100-PCIE-40GB",
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    problem = fit_problem(_config(), 1)
    assert problem is not None and "1 x A100 40GB gives 37.0 GiB usable" in problem


def test_studio_summary_shows_the_plan(tmp_path: Path) -> None:
    from steep.studio.forms import _plan

    summary: dict[str, Any] = {}
    assert _plan(load_config(SMOKE), 1, summary, tmp_path) == []
    assert "per device on 1 x cpu" in summary["plan"]
    errors = _plan(_config(device="cpu", precision="fp32"), 1, {}, tmp_path)
    assert errors and errors[0].startswith("plan: ") and "does not fit" in errors[0]


def test_prediction_is_within_15_percent_of_measured_peak_on_cpu() -> None:
    """One case of benchmarks/plan_vs_measured.py (BENCHMARKS.md has the table)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from plan_vs_measured import case, case_config, measure_in_subprocess
    finally:
        sys.path.pop(0)
    cfg = case_config(case(256, 2, 4, 2, 688, 8192, 256, micro=2, precision="fp32"))
    measured = measure_in_subprocess(cfg)
    plan = make_plan(parse_config(cfg), 1, find_device("cpu"), suggest=False)
    assert plan.memory.train_peak / measured == pytest.approx(1.0, abs=0.15)
    assert plan.memory.train_peak > 100 * 2**20  # a measurement well above the noise
    assert GIB == 2**30
