"""Reading data and configs without silent drops or silent choices (#16 findings 7, 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steep.config import load_config, parse_config
from steep.data.documents import MAX_DOC_BYTES, SkipLog, read_documents
from steep.data.tokenize import tokenize_source
from steep.errors import ConfigError
from steep.model.io import byte_tokenizer
from steep.train.preflight import PreflightError, preflight
from tests.conftest import tiny_config


def test_a_file_of_unknown_type_in_a_folder_is_skipped_on_the_record(tmp_path: Path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.jsonl").write_text(json.dumps({"text": "a document"}) + "\n")
    (folder / "blob.bin").write_bytes(bytes(range(256)))
    (folder / ".hidden").write_text("not data")
    skips = SkipLog()
    assert [d.text for d in read_documents([folder], skips)] == ["a document"]
    assert [(Path(s.path).name, s.reason.split(":")[0]) for s in skips.skips] == [
        ("blob.bin", "unsupported file type")
    ]


def test_a_bom_costs_no_record(tmp_path: Path):
    bom = "\ufeff"
    (tmp_path / "b.jsonl").write_text(
        bom + json.dumps({"text": "first"}) + "\n" + json.dumps({"text": "second"}) + "\n"
    )
    (tmp_path / "b.txt").write_text(bom + "whole file", encoding="utf-8")
    skips = SkipLog()
    texts = [d.text for d in read_documents([tmp_path / "b.jsonl", tmp_path / "b.txt"], skips)]
    assert texts == ["first", "second", "whole file"] and not skips.skips


def test_one_giant_document_rule_for_training_and_the_data_hub(tmp_path: Path):
    giant = "x" * (MAX_DOC_BYTES + 1)
    path = tmp_path / "g.jsonl"
    path.write_text(
        "\n".join(json.dumps({"text": t}) for t in ["small", giant, "small too"]) + "\n"
    )
    ts = tokenize_source("g", [str(path)], byte_tokenizer(), tmp_path / "cache")
    assert ts.info["splits"]["train"]["documents"] == 2
    assert ts.info["skipped_by_reason"] == {"giant document": 1}
    (line,) = (ts.dir / "skipped.jsonl").read_text().splitlines()
    assert json.loads(line)["line"] == 2


def test_a_key_written_twice_in_a_config_is_refused(tmp_path: Path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  steps: 10\n  lr_fraction: 0.1\n  steps: 99\n")
    with pytest.raises(ConfigError, match=r"key 'steps' appears twice \(lines 2 and 4\)"):
        load_config(path)


def test_a_recipe_with_a_key_written_twice_is_refused(tmp_path: Path):
    from steep.datahub.pipeline import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("steps:\n  - normalize\nsteps:\n  - exact_dedup\n")
    with pytest.raises(ConfigError, match=r"r.yaml: key 'steps' appears twice \(lines 1 and 3\)"):
        load_recipe(path)


def test_seq_len_past_the_base_s_context_is_refused(tmp_path: Path, corpora, tiny_model):
    cfg = tiny_config(tmp_path, corpora, tiny_model)
    cfg["data"]["seq_len"] = 512  # the tiny base knows 256 positions
    cfg["train"]["global_batch_tokens"] = 1024
    with pytest.raises(PreflightError, match="max_position_embeddings=256"):
        preflight(parse_config(cfg))
    from steep.train.loop import train

    with pytest.raises(ConfigError, match=r"data.seq_len=512 is above .*RoPE scaling"):
        train(parse_config(cfg))
