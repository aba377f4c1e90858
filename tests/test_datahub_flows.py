"""Data Hub flows a user runs end to end: mine with a classifier, decontaminate, and train
on dataset versions with a non-English slice taken from language tags."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from steep.cli import main
from steep.config import ConfigError, parse_config
from steep.data.executor import LocalExecutor
from steep.datahub.catalog import Catalog
from steep.datahub.ingest import add_dataset
from steep.datahub.pipeline import parse_recipe, prepare
from steep.datahub.steps.base import read_docs
from steep.datahub.steps.langid import identify
from steep.errors import DataError
from steep.train.loop import train

from .conftest import make_tiny_model

SMOKE = Path(__file__).resolve().parents[1] / "examples" / "data" / "smoke"
INLINE = LocalExecutor(1)

GERMAN = (
    "Die Stadt liegt am Ufer des Flusses und ist seit dem Mittelalter ein wichtiger Ort für den "
    "Handel. Im Sommer kommen viele Besucher, die durch die alten Gassen gehen und die Kirchen "
    "besichtigen. Die Bewohner sind stolz auf ihre Geschichte und pflegen die Traditionen der Region."
)
VIETNAMESE = (
    "Thành phố nằm bên bờ sông và từ thời trung cổ đã là một nơi quan trọng cho việc buôn bán. "
    "Vào mùa hè có rất nhiều du khách đến thăm, họ đi dạo qua những con phố cổ và ghé thăm các "
    "nhà thờ. Người dân tự hào về lịch sử của mình và gìn giữ những truyền thống của vùng."
)


def paragraphs(path: Path, min_chars: int = 100) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        text = json.loads(line)["text"]
        out += [p.strip() for p in text.split("\n\n") if len(p.strip()) >= min_chars]
    return out


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts))
    return path


def test_classifier_mines_domain_documents_out_of_a_general_corpus(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    docs, wiki = paragraphs(SMOKE / "domain.jsonl"), paragraphs(SMOKE / "general.jsonl")
    # seeds: two thirds of each; the rest is hidden in a "general crawl" to mine from
    cut_d, cut_w = 2 * len(docs) // 3, 2 * len(wiki) // 3
    write_jsonl(tmp_path / "seed_domain.jsonl", docs[:cut_d])
    write_jsonl(tmp_path / "seed_general.jsonl", wiki[:cut_w])
    write_jsonl(tmp_path / "crawl.jsonl", docs[cut_d:] + wiki[cut_w:])
    for name in ("seed_domain", "seed_general", "crawl"):
        assert main(["data", "add", name, str(tmp_path / f"{name}.jsonl"), "--no-langid"]) == 0
    assert (
        main(
            ["data", "classifier", "train", "--positive", "seed_domain"]
            + ["--negative", "seed_general", "--name", "pydocs"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "precision" in out and "recall" in out
    assert main(["data", "mine", "crawl", "--classifier", "pydocs", "--workers", "1"]) == 0

    mined = Catalog().get("crawl-mined")
    assert mined.manifest["parent"] == "crawl@1"
    kept = {d.text for s in mined.shards for d in read_docs(s)}
    hidden_docs, hidden_wiki = set(docs[cut_d:]), set(wiki[cut_w:])
    recall = len(kept & hidden_docs) / len(hidden_docs)
    precision = len(kept & hidden_docs) / max(len(kept), 1)
    assert recall > 0.8 and precision > 0.8, (recall, precision)
    assert not kept & hidden_wiki or len(kept & hidden_wiki) < len(hidden_wiki) / 5


def test_decontaminate_drops_training_text_that_contains_eval_text(tmp_path: Path) -> None:
    wiki = paragraphs(SMOKE / "general.jsonl")
    eval_text = wiki[0]
    leaked = "Intro words here. " + " ".join(eval_text.split()[:20]) + " and more after it."
    write_jsonl(tmp_path / "eval.jsonl", [eval_text])
    write_jsonl(tmp_path / "train.jsonl", [leaked, wiki[1], wiki[2]])
    add_dataset("train", [str(tmp_path / "train.jsonl")], langid=False, executor=INLINE)
    specs = parse_recipe(
        {"steps": [{"decontaminate": {"eval_sets": [str(tmp_path / "eval.jsonl")]}}]}
    )
    v2 = prepare("train", specs, executor=INLINE)
    kept = [d.text for s in v2.shards for d in read_docs(s)]
    assert kept == [wiki[1], wiki[2]]
    funnel = v2.manifest["funnel"][0]
    assert funnel["dropped"] == {"decontaminate.eval_overlap": 1}


def test_training_takes_a_non_english_slice_from_language_tags(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # (lists of names sit at the threshold: the test wants 40 documents clearly in English)
    english = [p for p in paragraphs(SMOKE / "general.jsonl") if identify(p)[0] == "en"][:40]
    other = [f"{GERMAN} Seite {i}." for i in range(10)] + [
        f"{VIETNAMESE} Trang {i}." for i in range(10)
    ]
    # tables of numbers: no language to call, and no place in a "not English" slice
    undetermined = [" | ".join(str(i * j) for j in range(40)) for i in range(5)]
    write_jsonl(tmp_path / "general.jsonl", english + other + undetermined)
    ds = add_dataset("general", [str(tmp_path / "general.jsonl")], executor=INLINE)
    langs = ds.manifest["languages"]
    assert langs["en"] == 40 and langs["de"] == 10 and langs["vi"] == 10 and langs["und"] == 5

    base = make_tiny_model(tmp_path / "base")
    cfg = {
        "run": {"name": "slice", "out_dir": str(tmp_path / "run")},
        "model": {"base": str(base), "base_max_lr": 1e-2},
        "data": {
            "seq_len": 64,
            "sources": [
                {"name": "en", "dataset": "general@1", "languages": ["en"], "weight": 9},
                {
                    "name": "non_en",
                    "dataset": "general",
                    "exclude_languages": ["en"],
                    "weight": 1,
                    "heldout_fraction": 0.3,
                },
            ],
        },
        "train": {
            "steps": 4,
            "global_batch_tokens": 640,
            "micro_batch_size": 5,
            "precision": "fp32",
        },
        "eval": {"every_steps": 4, "max_windows": 2},
        "checkpoint": {"every_steps": 4},
    }
    result = train(parse_config(cfg))
    lineage = json.loads((result.model_dir / "steep.json").read_text())
    sources = {s["name"]: s for s in lineage["data"]}
    assert sources["en"]["dataset"]["ref"] == "general@1"
    non_en_docs = sum(v["documents"] for v in sources["non_en"]["splits"].values())
    en_docs = sum(v["documents"] for v in sources["en"]["splits"].values())
    assert (en_docs, non_en_docs) == (40, 20)
    # each slice says what it kept and dropped, the undetermined documents included
    assert sources["non_en"]["languages"] == {
        "kept": {"de": 10, "vi": 10},
        "dropped": {"en": 40, "und": 5},
    }
    out = capsys.readouterr().out
    assert (
        "source 'non_en': exclude_languages [en] (and und) kept 20 of 65 documents "
        "(de 10, vi 10); dropped en 40, und 5; 5 (8%) were undetermined (und)"
    ) in out
    assert "source 'en': languages [en] kept 40 of 65 documents (en 40); dropped" in out

    # the Model Hub tells the two slices of general@1 apart, in `models show` and the card
    from steep.hub import record_run

    record_run(result.run_dir)
    card = (result.model_dir / "README.md").read_text()
    assert "| en | 9 |" in card and "general@1 [en]" in card
    assert "general@1 [not en, und]" in card
    capsys.readouterr()
    assert main(["models", "show", result.run_dir.name]) == 0  # (out_dir names the run)
    shown = capsys.readouterr().out
    assert "data   en: general@1 [en] (weight 9)" in shown
    assert "data   non_en: general@1 [not en, und] (weight 1)" in shown
    last = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    by_source = [r for r in last if r["kind"] == "train"][-1]["tokens_by_source"]
    assert by_source["non_en"] / (by_source["en"] + by_source["non_en"]) == pytest.approx(
        0.1, abs=0.03
    )


def test_source_needs_exactly_one_origin() -> None:
    base = {
        "model": {"base": "x", "base_max_lr": 1e-3},
        "train": {"steps": 1, "global_batch_tokens": 64},
    }
    with pytest.raises(ConfigError, match="exactly one of paths or dataset"):
        parse_config({**base, "data": {"sources": [{"name": "a"}]}})
    with pytest.raises(ConfigError, match="need a dataset"):
        parse_config(
            {**base, "data": {"sources": [{"name": "a", "paths": ["x"], "languages": ["en"]}]}}
        )


def test_data_tokenize_is_reused_by_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_jsonl(tmp_path / "d.jsonl", paragraphs(SMOKE / "domain.jsonl"))
    add_dataset("d", [str(tmp_path / "d.jsonl")], langid=False, executor=INLINE)
    base = make_tiny_model(tmp_path / "base")
    assert main(["data", "tokenize", "d", "--base", str(base), "--heldout-fraction", "0.1"]) == 0
    assert "d@1 ->" in capsys.readouterr().out
    cache = Path(os.environ["STEEP_HOME"]) / "cache" / "tokens"
    (made,) = cache.iterdir()
    stamp = (made / "source.json").stat().st_mtime_ns
    cfg = {
        "run": {"name": "reuse", "out_dir": str(tmp_path / "run")},
        "model": {"base": str(base), "base_max_lr": 1e-2},
        "data": {
            "seq_len": 64,
            "sources": [{"name": "dom", "dataset": "d@1", "heldout_fraction": 0.1}],
        },
        "train": {
            "steps": 1,
            "global_batch_tokens": 128,
            "micro_batch_size": 2,
            "precision": "fp32",
        },
        "eval": {"every_steps": 1, "max_windows": 1},
        "checkpoint": {"every_steps": 1},
    }
    train(parse_config(cfg))
    assert [p.name for p in cache.iterdir()] == [made.name]
    assert (made / "source.json").stat().st_mtime_ns == stamp


def test_a_language_filter_no_document_has_is_refused_naming_the_tags(tmp_path: Path) -> None:
    """Before (#17 finding 10): `languages: [eng]` passed validate and training then said
    'no usable documents ... (no records skipped)', naming neither the filter nor the tags."""
    from steep.train.preflight import PreflightError, preflight

    write_jsonl(tmp_path / "g.jsonl", paragraphs(SMOKE / "general.jsonl")[:20])
    add_dataset("g", [str(tmp_path / "g.jsonl")], executor=INLINE)
    base = make_tiny_model(tmp_path / "base")
    cfg = parse_config(
        {
            "run": {"name": "eng", "out_dir": str(tmp_path / "run")},
            "model": {"base": str(base), "base_max_lr": 1e-2},
            "data": {
                "seq_len": 64,
                "sources": [{"name": "g", "dataset": "g", "languages": ["eng"]}],
            },
            "train": {"steps": 1, "global_batch_tokens": 128, "micro_batch_size": 2},
        }
    )
    expected = (
        r"eng: no document has these tags; the dataset's tags are en \(18 docs\), und \(2 docs\)"
    )
    with pytest.raises(
        PreflightError, match=r"data.sources.0.languages \(source 'g'\): " + expected
    ):
        preflight(cfg)
    with pytest.raises(DataError, match=r"source 'g': languages " + expected):
        train(cfg)


def _german(i: int) -> str:
    topics = ["Bahnhof", "Rathaus", "Marktplatz", "Museum", "Hafen", "Schule", "Brücke"]
    return f"{GERMAN} Am {topics[i % len(topics)]} steht seit dem Jahr {1700 + i} ein Denkmal."


def test_mining_a_multilingual_pool_warns_and_filters_by_language(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Before (#17 finding 4): an English-vs-English classifier mined every German document
    of a mixed pool (it learned "not the general text"), and the result said `prepare`."""
    docs = [p for p in paragraphs(SMOKE / "domain.jsonl") if identify(p)[0] == "en"]
    wiki = [p for p in paragraphs(SMOKE / "general.jsonl") if identify(p)[0] == "en"]
    cut_d, cut_w = 2 * len(docs) // 3, 2 * len(wiki) // 3
    german = [_german(i) for i in range(20)]
    write_jsonl(tmp_path / "seed_domain.jsonl", docs[:cut_d])
    write_jsonl(tmp_path / "seed_general.jsonl", wiki[:cut_w])
    write_jsonl(tmp_path / "pool.jsonl", docs[cut_d:] + wiki[cut_w:] + german)
    for name in ("seed_domain", "seed_general", "pool"):
        assert main(["data", "add", name, str(tmp_path / f"{name}.jsonl"), "--workers", "1"]) == 0
    train = ["data", "classifier", "train", "--positive", "seed_domain", "--negative"]
    assert main([*train, "seed_general", "--name", "docs"]) == 0
    assert "warning" not in capsys.readouterr().out  # both sets are English

    mine = ["data", "mine", "pool", "--classifier", "docs", "--workers", "1"]
    assert main([*mine, "--into", "loose"]) == 0
    out = capsys.readouterr().out
    assert "warning: the pool holds languages the classifier never saw (de 1" in out
    assert "pass --languages en" in out
    loose = Catalog().get("loose")
    assert loose.manifest["created_by"]["command"] == "mine"
    assert "by `steep data mine`" in out and "mined with classifier" in out

    labelled = tmp_path / "labelled.jsonl"
    rows = [{"text": t, "label": 1} for t in docs[cut_d:]]
    rows += [{"text": t, "label": 0} for t in wiki[cut_w:] + german]
    labelled.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert main([*mine, "--into", "strict", "--languages", "en", "--labelled", str(labelled)]) == 0
    out = capsys.readouterr().out
    assert "never saw" not in out
    strict = Catalog().get("strict")
    kept = {d.text for s in strict.shards for d in read_docs(s)}
    assert not kept & set(german)
    assert strict.manifest["funnel"][0]["dropped"] == {"languages.not_kept": 20}
    sample = strict.manifest["created_by"]["labelled"]
    assert sample["documents"] == len(rows) and sample["precision"] > 0.8
    assert f"on the labelled sample {labelled} ({len(rows)} documents): precision" in out


def test_a_classifier_trained_across_languages_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    english = [p for p in paragraphs(SMOKE / "general.jsonl") if identify(p)[0] == "en"]
    write_jsonl(tmp_path / "pos.jsonl", [_german(i) for i in range(20)])
    write_jsonl(tmp_path / "neg.jsonl", english[:20])
    for name in ("pos", "neg"):
        assert main(["data", "add", name, str(tmp_path / f"{name}.jsonl"), "--workers", "1"]) == 0
    assert main(["data", "classifier", "train", "--positive", "pos", "--negative", "neg",
                 "--name", "c"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "warning: the positive set is de 100% and the negative set en 100%" in out
    with pytest.raises(DataError, match=r"labelled.jsonl:2: field 'label' must be 1"):
        bad = tmp_path / "labelled.jsonl"
        bad.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": "yes"}\n')
        from steep.datahub.mine import read_labelled

        read_labelled(bad)
