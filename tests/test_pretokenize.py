"""`steep data tokenize --config RUN.yaml`: tokenize a run's data before the job; the run
then reads the cache and tokenizes nothing (no GPU waits for it)."""

from __future__ import annotations

from pathlib import Path

import yaml

from steep.cli import main
from steep.workspace import Workspace
from tests.conftest import tiny_config


def _cache(home: Path) -> dict[str, float]:
    root = Workspace(home).token_cache
    return {p.name: (p / "source.json").stat().st_mtime for p in root.iterdir() if p.is_dir()}


def test_pretokenized_run_reads_the_cache(tmp_path, corpora, tiny_model, _steep_home, capsys):
    raw = tiny_config(tmp_path, corpora, tiny_model, steps=2, warmup_steps=1)
    raw["data"]["eval_sets"] = {"extra": [str(corpora["general"])]}
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(raw))

    assert main(["data", "tokenize", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "domain -> " in out and "general -> " in out and "ready: `steep train" in out
    before = _cache(_steep_home)
    assert len(before) == 3  # two sources and the extra eval set

    assert main(["train", str(cfg)]) == 0
    assert _cache(_steep_home) == before  # the same shards, none rewritten


def test_tokenize_needs_a_dataset_or_a_config(capsys) -> None:
    assert main(["data", "tokenize"]) == 2
    assert "needs NAME[@VERSION] --base BASE, or --config RUN.yaml" in capsys.readouterr().err


def test_each_source_keeps_only_where_its_own_units_ran(tmp_path: Path) -> None:
    """One executor serves every source of `tokenize --config`: each source's
    placement.json names its own stages, never the sources tokenized before it."""
    import json

    from steep.data.executor import LocalExecutor
    from steep.data.tokenize import tokenize_source
    from steep.model.io import byte_tokenizer
    from steep.workspace import PLACEMENT_FILE
    from tests.conftest import synthetic_docs, write_jsonl

    executor = LocalExecutor(2)
    for name in ("a", "b"):
        files = [str(write_jsonl(tmp_path / name / f"{i}.jsonl", synthetic_docs(["x", name], 20, i)))
                 for i in range(2)]  # fmt: skip
        ts = tokenize_source(name, files, byte_tokenizer(), tmp_path / "cache", executor=executor)
        placed = json.loads((ts.dir / PLACEMENT_FILE).read_text())
        assert set(placed["stages"]) == {f"plan {name}", f"tokenize {name}"}
