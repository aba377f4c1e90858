"""Context extension (#35 part 1): ``model.rope_scaling`` / ``model.rope_theta`` in the
config, applied when the base loads, saved in config.json; ``data.seq_len`` past the base's
context accepted when the scaling covers it, refused naming the factor that would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, GPT2Config, GPT2LMHeadModel
from transformers.modeling_rope_utils import RopeParameters

from steep.config import ModelSection, load_config, parse_config
from steep.config.context import ROPE_KEYS
from steep.errors import ConfigError
from steep.model.io import byte_tokenizer, load_base
from steep.model.rope import positions_of
from steep.train.preflight import PreflightError, preflight
from tests.conftest import tiny_config


def _yaml(tmp_path: Path, model: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        f"model: {model}\n"
        "data: {sources: [{name: d, paths: [x.jsonl]}]}\n"
        "train: {steps: 2, global_batch_tokens: 128}\n"
    )
    return path


@pytest.mark.parametrize(
    ("rope", "said"),
    [
        ("{rope_type: yarn, factor: 0.5}", "factor 0.5 is below 1"),
        ("{rope_type: ntk, factor: 2}", "rope_type 'ntk' is not one of linear, dynamic, yarn"),
        ("{type: linear, factor: 2}", "needs rope_type (not 'type')"),
        ("{rope_type: yarn, factor: 2, beta_fsat: 16}", "(did you mean beta_fast?)"),
        ("{rope_type: llama3, factor: 8}", "needs low_freq_factor and high_freq_factor"),
        ("{rope_type: linear}", "rope_type linear needs factor"),
    ],
)
def test_bad_rope_scaling_is_one_line_naming_file_and_field(tmp_path: Path, rope: str, said: str):
    path = _yaml(tmp_path, f"{{base: b, rope_scaling: {rope}}}")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    (line,) = [x for x in str(err.value).splitlines() if "rope" in x]
    assert line.strip().startswith(f"{path}: model.rope_scaling: ") and said in line


def test_the_rope_keys_are_transformers_own():
    assert set(ROPE_KEYS) == set(RopeParameters.__annotations__)


def test_load_applies_the_scaling_before_the_model_is_built(tiny_model: Path, tmp_path: Path):
    plain = load_base(ModelSection(base=str(tiny_model)), tmp_path).model
    scaled = load_base(
        ModelSection(base=str(tiny_model), rope_scaling={"rope_type": "linear", "factor": 4}),
        tmp_path,
    )
    rotary = scaled.model.model.rotary_emb
    assert torch.allclose(rotary.inv_freq * 4, plain.model.rotary_emb.inv_freq)
    assert scaled.model.config.max_position_embeddings == 1024  # 4 x the base's 256
    assert scaled.info["positions_before_rope"] == 256

    theta = load_base(ModelSection(base=str(tiny_model), rope_theta=500000.0), tmp_path).model
    assert theta.config.rope_parameters["rope_theta"] == 500000.0
    assert theta.model.rotary_emb.inv_freq[1] < plain.model.rotary_emb.inv_freq[1]

    dynamic = ModelSection(base=str(tiny_model), rope_scaling={"rope_type": "dynamic", "factor": 2})
    config = load_base(dynamic, tmp_path).model.config
    assert config.max_position_embeddings == 256  # transformers' dynamic NTK reads the original
    assert positions_of(config) == 512


def test_transformers_own_validation_refuses_what_it_would_only_log(tiny_model: Path, tmp_path):
    """A yarn attention_factor that is not a float: transformers logs a warning and goes on;
    steep refuses it in one line before any weights load."""
    rope = {"rope_type": "yarn", "factor": 2, "attention_factor": "big"}
    with pytest.raises(ConfigError, match=r"^model.rope_scaling \(.*tiny-base\): transformers"):
        load_base(ModelSection(base=str(tiny_model), rope_scaling=rope), tmp_path)


def _gpt2(path: Path) -> Path:
    tok = byte_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=128)
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_rope_settings_on_a_model_without_rotary_positions_are_refused(tmp_path: Path, corpora):
    base = _gpt2(tmp_path / "gpt2-tiny")
    cfg = tiny_config(tmp_path, corpora, base)
    cfg["model"]["rope_scaling"] = {"rope_type": "linear", "factor": 2}
    with pytest.raises(PreflightError) as err:
        preflight(parse_config(cfg))
    assert "base is a gpt2 model" in str(err.value) and "config.json" in str(err.value)
    with pytest.raises(ConfigError, match="base is a gpt2 model"):
        load_base(ModelSection(base=str(base), rope_theta=1e5), tmp_path)


def test_seq_len_past_the_base_needs_the_scaling_that_covers_it(
    tmp_path: Path, corpora, tiny_model: Path
):
    cfg = tiny_config(tmp_path, corpora, tiny_model)
    cfg["data"]["seq_len"] = 512  # the tiny base knows 256 positions
    cfg["train"]["global_batch_tokens"] = 1024
    with pytest.raises(PreflightError, match=r"factor of at least 2 \(e.g. model.rope_scaling"):
        preflight(parse_config(cfg))
    cfg["model"]["rope_scaling"] = {"rope_type": "yarn", "factor": 1.5}
    with pytest.raises(PreflightError) as err:
        preflight(parse_config(cfg))
    assert str(err.value) == (
        f"data.seq_len=512 is above model.rope_scaling's factor 1.5 x 256 = 384 positions "
        f"({tiny_model / 'config.json'}): raise model.rope_scaling.factor to at least 2, "
        "or lower data.seq_len"
    )
    cfg["model"]["rope_scaling"] = {
        "rope_type": "yarn",
        "factor": 4,
        "original_max_position_embeddings": 100,
    }
    with pytest.raises(PreflightError, match="factor 4 x 100 = 400 positions"):
        preflight(parse_config(cfg))
    cfg["model"]["rope_scaling"] = {"rope_type": "yarn", "factor": 2}
    preflight(parse_config(cfg))


def test_a_scaled_run_saves_the_scaling_in_config_json(tmp_path: Path, corpora, tiny_model: Path):
    from steep.train.loop import train

    cfg = tiny_config(tmp_path, corpora, tiny_model, steps=1, global_batch_tokens=1024)
    cfg["data"]["seq_len"] = 512
    cfg["model"]["rope_scaling"] = {"rope_type": "yarn", "factor": 2}
    cfg["eval"] = {"every_steps": 1, "max_windows": 1}
    result = train(parse_config(cfg))
    saved = json.loads((result.run_dir / "model" / "config.json").read_text())
    assert saved["max_position_embeddings"] == 512
    assert saved["rope_parameters"] == {
        "rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 256,
        "rope_theta": 10000.0,
    }  # fmt: skip
    again = AutoConfig.from_pretrained(result.run_dir / "model")
    assert again.rope_parameters["rope_type"] == "yarn"
    lineage = json.loads((result.run_dir / "model" / "steep.json").read_text())
    assert lineage["base"]["positions_before_rope"] == 256


def test_validate_and_launch_refuse_in_one_line_naming_the_factor(
    tmp_path: Path, corpora, tiny_model: Path, capsys
):
    import yaml

    from steep.cli import main

    cfg = tiny_config(tmp_path, corpora, tiny_model, global_batch_tokens=2000)
    cfg["data"]["seq_len"] = 1000
    cfg["model"]["rope_scaling"] = {"rope_type": "linear", "factor": 2}
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(cfg))
    sbatch = str(tmp_path / "job.sbatch")
    for argv in (["validate", str(path)], ["launch", str(path), "--slurm", sbatch]):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert "raise model.rope_scaling.factor to at least 3.91" in err


def test_linear_scaling_from_a_named_original_length(tiny_model: Path, tmp_path: Path):
    rope = {"rope_type": "linear", "factor": 2, "original_max_position_embeddings": 200}
    config = load_base(ModelSection(base=str(tiny_model), rope_scaling=rope), tmp_path).model.config
    assert config.max_position_embeddings == 400
    assert config.rope_parameters == {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}


EVERY_KEY = {
    "linear": {},
    "dynamic": {},
    "yarn": {"attention_factor": 1.0, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
             "mscale_all_dim": 1.0, "truncate": True},
    "llama3": {"low_freq_factor": 1.0, "high_freq_factor": 4.0},
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(EVERY_KEY))
def test_every_key_steep_accepts_transformers_accepts(kind: str):
    """The keys steep's schema allows per type are the ones transformers' validation reads:
    each type with all of them set passes both, with no warning turned into a refusal."""
    from transformers import LlamaConfig

    from steep.config.context import TYPE_KEYS
    from steep.model.rope import apply_rope

    assert set(TYPE_KEYS[kind]) == set(EVERY_KEY[kind]) and set(TYPE_KEYS[kind]) <= set(ROPE_KEYS)
    rope = {"rope_type": kind, "factor": 2, "original_max_position_embeddings": 128,
            "partial_rotary_factor": 1.0, **EVERY_KEY[kind]}  # fmt: skip
    config = LlamaConfig(hidden_size=32, num_attention_heads=4, max_position_embeddings=128)
    apply_rope(config, ModelSection(base="b", rope_scaling=rope), "test")
    assert positions_of(config) == 256
