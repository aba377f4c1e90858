from pathlib import Path

import pytest

from steep.config import ConfigError, load_config, parse_config
from steep.model.base_lr import UnknownBaseLR, lookup_peak_lr, normalise

MINIMAL = {
    "model": {"base": "/models/x", "base_max_lr": 3e-4},
    "data": {"sources": [{"name": "d", "paths": ["/data/d.jsonl"]}]},
    "train": {"steps": 10, "global_batch_tokens": 1024},
}


def _with(**sections):
    cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in MINIMAL.items()}
    for k, v in sections.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    return cfg


def test_minimal_config_gets_defaults():
    cfg = parse_config(MINIMAL)
    assert cfg.train.lr_fraction == 0.1
    assert cfg.train.precision == "bf16-autocast"
    assert cfg.grad_accum == 1024 // (512 * 1)


def test_typo_names_field_and_suggests():
    with pytest.raises(ConfigError) as e:
        parse_config(_with(train={"lr_fractoin": 0.1}))
    msg = str(e.value)
    assert "train.lr_fractoin" in msg and "Did you mean 'lr_fraction'" in msg
    assert "warmup_steps" in msg  # the valid fields are listed


def test_bad_choice_lists_allowed_values():
    with pytest.raises(ConfigError) as e:
        parse_config(_with(train={"schedule": "linear"}))
    msg = str(e.value)
    assert "train.schedule" in msg and "'cosine'" in msg and "'wsd'" in msg


def test_batch_must_divide():
    with pytest.raises(ConfigError, match="multiple of data.seq_len"):
        parse_config(_with(train={"global_batch_tokens": 1000}))


def test_typo_inside_a_source():
    cfg = _with()
    cfg["data"] = {"sources": [{"name": "d", "paths": ["x"], "wieght": 2}]}
    with pytest.raises(ConfigError, match=r"data.sources.0.wieght.*Did you mean 'weight'"):
        parse_config(cfg)


def test_yaml_file_overrides_and_relative_paths(tmp_path: Path):
    (tmp_path / "c.yaml").write_text(
        "model: {base: /m, base_max_lr: 1.0e-3}\n"
        "data: {sources: [{name: d, paths: [corpus/d.jsonl]}]}\n"
        "train: {steps: 5, global_batch_tokens: 512}\n"
    )
    cfg = load_config(
        tmp_path / "c.yaml", ["train.steps=7", "train.lr_fraction=3e-2", "data.sources.0.weight=2"]
    )
    assert cfg.train.steps == 7 and cfg.train.lr_fraction == 0.03
    assert cfg.data.sources[0].weight == 2
    assert cfg.data.sources[0].paths == [str(tmp_path / "corpus" / "d.jsonl")]
    with pytest.raises(ConfigError, match="train.steps"):
        load_config(tmp_path / "c.yaml", ["train.steps=many"])


def test_bad_yaml_names_line(tmp_path: Path):
    (tmp_path / "c.yaml").write_text("model:\n  base: [unclosed\n")
    with pytest.raises(ConfigError, match=r"c.yaml line \d+"):
        load_config(tmp_path / "c.yaml")


def test_examples_validate():
    root = Path(__file__).parent.parent / "examples"
    for path in sorted(root.glob("*.yaml")):
        load_config(path)


def test_peak_lr_table():
    assert normalise("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m"
    assert normalise("meta-llama/Meta-Llama-3.1-8B") == "llama-3.1-8b"
    assert lookup_peak_lr("smollm2-135M")[0] == 3e-3
    assert lookup_peak_lr("meta-llama/Llama-3.1-70B-Instruct")[0] == 1.5e-4
    assert lookup_peak_lr("EleutherAI/pythia-410m-deduped")[0] == 3e-4
    with pytest.raises(UnknownBaseLR, match="did not publish"):
        lookup_peak_lr("Qwen/Qwen2.5-7B")
    with pytest.raises(UnknownBaseLR, match="base_max_lr"):
        lookup_peak_lr("my-own-model")
