"""A workspace written by steep 0.1 (commit d752965) still reads: runs, datasets, models.

tests/fixtures/workspace_v0_1 is a whole STEEP_HOME made by that commit's CLI (see its
README.md): dataset code@1 (`steep data add`) and code@2 (`steep data prepare`), run
cpt-tiny (tiny random Llama base -> 6 steps on code@2 + a jsonl file) and a `steep eval`
of its model against the base. Absolute paths in its text files read ``@FIXTURE@``; the
copy made here puts its own folder in their place. Every number below was read from the
fixture, so a reader that drops or misreads a field fails here.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from steep.artifacts.metrics import read_metrics
from steep.cli import main
from steep.config import ModelSection, load_config
from steep.data.docshards import read_docs
from steep.datahub.catalog import Catalog
from steep.datahub.describe import list_datasets, show_dataset
from steep.datahub.exclusions import read_exclusions
from steep.eval.lineage import lineage_baseline, lineage_roles, model_lineage
from steep.hub import CARD_MARK, Hub, render_model_card, training_change, write_model_card
from steep.model.io import load_base, tokenizer_fingerprint
from steep.train.report import eval_table, format_table

FIXTURE = Path(__file__).parent / "fixtures" / "workspace_v0_1"
PLACEHOLDER = b"@FIXTURE@"

RUN = "cpt-tiny"
MODEL = "cpt-tiny"  # the run's model takes the run's name
BASE = "tiny-base"  # models/tiny-base: a plain HF folder, no steep.json

# step-0 and final eval losses of the run (metrics.jsonl, steep.json "metrics")
BASELINE_LOSS = {"code": 5.56029748916626, "general": 5.570797443389893}
FINAL_LOSS = {"code": 5.011629581451416, "general": 4.99018669128418}
FINAL_TRAIN_LOSS = 5.0234763622283936
# `steep eval` of the model against its base (eval/eval.json, steep.json "eval")
DOMAIN_GAIN = 0.09858901597276744
GENERAL_REGRESSION = -0.10414035624151881
BPB = {  # set: (base, adapted)
    "code": (8.019497811872915, 7.228863414004603),
    "general": (8.036656499434784, 7.199716228592928),
}
TOKENIZER_SHA256 = "580551182262e08ded1017c853239776abd4d8a84934ce87fc84b603572e1870"
CODE_JSONL_SHA256 = "6d1122ae4340563c11e7225e7c606b9531767259eee5ee8a42d2aa9bf7142ad3"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture copied to a temp folder, ``@FIXTURE@`` replaced by that folder."""
    root = (tmp_path_factory.mktemp("old-ws") / "steep-home").resolve()
    shutil.copytree(FIXTURE, root)
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if PLACEHOLDER in data:
                path.write_bytes(data.replace(PLACEHOLDER, str(root).encode()))
    assert not (root / "hub.sqlite").exists()  # the registry is rebuilt from the folders
    return root


@pytest.fixture
def home(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STEEP_HOME", str(workspace))
    return workspace


@pytest.fixture
def hub(home: Path) -> Hub:
    return Hub()


def test_hub_sync_finds_the_run_the_models_and_both_dataset_versions(hub: Hub, home: Path) -> None:
    hub.sync()
    assert hub.path == home / "hub.sqlite" and hub.path.is_file()

    (run,) = hub.runs()
    assert run["name"] == RUN and run["status"] == "done" and run["error"] is None
    assert run["path"] == str(home / "runs" / RUN)
    assert run["datasets"] == ["code@2"]
    assert [(s["source"], s["ref"], s["weight"]) for s in run["sources"]] == [
        ("code", "code@2", 1.0),
        ("general", None, 1.0),
    ]
    assert run["sources"][1]["paths"] == [str(home / "inputs" / "general.jsonl")]
    assert run["lr_fraction"] == 0.3 and run["steps"] == 6 and run["model"] == MODEL
    assert run["base"] == str(home / "models" / BASE)
    assert run["base_path"] == str(home / "models" / BASE) and run["base_model"] == BASE
    assert run["metrics"]["step"] == 6 and run["metrics"]["tokens"] == 1536
    assert run["metrics"]["loss"] == pytest.approx(FINAL_TRAIN_LOSS)
    assert run["metrics"]["eval"]["step"] == 6
    assert {n: s["loss"] for n, s in run["metrics"]["eval"]["sets"].items()} == pytest.approx(
        FINAL_LOSS
    )
    assert "bad_lines" not in run["metrics"]
    assert hub.run(RUN)["config"]["train"]["steps"] == 6

    models = {m["name"]: m for m in hub.models()}
    assert set(models) == {MODEL, BASE}
    m = models[MODEL]
    assert m["kind"] == "cpt" and m["run"] == RUN and m["error"] is None
    assert m["path"] == str(home / "runs" / RUN / "model")
    assert m["base"] == m["base_path"] == str(home / "models" / BASE)
    assert m["final"] == pytest.approx(FINAL_LOSS)
    assert m["metrics"]["baseline"] == pytest.approx(BASELINE_LOSS)
    ev = m["eval"]
    assert ev["metric"] == "bpb"
    assert ev["domain_gain"] == pytest.approx(DOMAIN_GAIN)
    assert ev["general_regression"] == pytest.approx(GENERAL_REGRESSION)
    assert ev["report"] == str(home / "runs" / RUN / "model" / "eval" / "eval.json")
    for name, (base_bpb, bpb) in BPB.items():
        assert ev["sets"][name]["base_bpb"] == pytest.approx(base_bpb)
        assert ev["sets"][name]["bpb"] == pytest.approx(bpb)
    assert ev["sets"]["code"]["role"] == "domain" and ev["sets"]["general"]["role"] == "general"
    # the run's own step-0-vs-end change, as `steep models list` shows before any eval
    change = training_change(m)
    assert change["domain_gain"] is None  # neither source is named domain*: both general
    assert change["general_regression"] == pytest.approx(
        sum((FINAL_LOSS[n] - BASELINE_LOSS[n]) / BASELINE_LOSS[n] for n in FINAL_LOSS) / 2
    )
    b = models[BASE]
    assert b["kind"] == "plain" and b["run"] is None and b["eval"] is None
    assert hub.dependents(BASE) == [RUN] and hub.dependents(MODEL) == []

    datasets = hub.datasets()
    assert [(d["ref"], d["documents"], d["used_by"]) for d in datasets] == [
        ("code@2", 36, [RUN]),
        ("code@1", 41, []),
    ]
    assert all(d["error"] is None for d in datasets)
    v2, v1 = datasets
    assert v2["path"] == str(home / "datasets" / "code" / "v2")
    assert v2["bytes"] == 12595 and v1["bytes"] == 13691
    assert v2["languages"] == {"und": 36}
    assert [(f["step"], f["docs_in"], f["docs_out"]) for f in v2["funnel"]] == [
        ("normalize", 41, 41),
        ("gopher_quality", 41, 39),
        ("exact_dedup", 39, 36),
    ]
    assert v2["funnel"][1]["dropped"] == {"gopher_quality.too_few_words": 2}
    assert v2["funnel"][2]["dropped"] == {"exact_dedup.duplicate": 3}
    assert hub.dataset("code@1")["ref"] == "code@1"
    assert hub.dataset("code")["ref"] == hub.dataset("code@2")["ref"] == "code@2"


def test_hub_model_has_lineage_and_eval_report(hub: Hub, home: Path) -> None:
    m = hub.model(MODEL)
    lineage = m["lineage"]
    assert lineage["kind"] == "cpt" and lineage["run_dir"] == str(home / "runs" / RUN)
    assert m["eval_report"]["format"] == "steep-eval"
    assert m["eval_report"]["headline"]["domain"] == ["code"]
    assert m["eval_report"]["headline"]["general"] == ["general"]
    assert m["card"] == str(home / "runs" / RUN / "model" / "README.md")
    assert m["dependents"] == []
    assert hub.model(BASE)["lineage"] is None and hub.model(BASE)["dependents"] == [RUN]


def test_lineage_names_base_datasets_and_final_eval(home: Path) -> None:
    model_dir = home / "runs" / RUN / "model"
    lin = json.loads((model_dir / "steep.json").read_text(encoding="utf-8"))
    assert lin["kind"] == "cpt" and lin["steep_version"] == "0.1.0"
    assert lin["base"]["source"] == lin["base"]["path"] == str(home / "models" / BASE)
    assert lin["base"]["tokenizer_sha256"] == TOKENIZER_SHA256
    assert lin["base_names"] == [str(home / "models" / BASE)]
    assert lin["max_lr"] == pytest.approx(0.003)
    assert lin["max_lr_source"] == "model.base_max_lr 0.01"
    assert lin["tokens_by_source"] == {"code": 768, "general": 768}

    code, general = lin["data"]
    assert code["name"] == "code" and code["dataset"]["ref"] == "code@2"
    assert code["dataset"]["text_bytes"] == 12595
    assert code["files"] == [
        {"path": str(home / "datasets" / "code" / "v2" / "shards" / "00000.parquet"), "bytes": 5815}
    ]
    assert code["splits"]["train"] == {"documents": 29, "tokens": 10168}
    assert code["splits"]["heldout"] == {"documents": 7, "tokens": 2463}
    assert general["name"] == "general" and general["dataset"] is None
    (f,) = general["files"]
    assert f["path"] == str(home / "inputs" / "general.jsonl")
    assert f["sha256"] == _sha256(home / "inputs" / "general.jsonl")
    assert general["splits"]["train"] == {"documents": 24, "tokens": 9196}

    assert lin["metrics"]["step"] == 6
    assert lin["metrics"]["baseline"] == pytest.approx(BASELINE_LOSS)
    assert lin["metrics"]["final"] == pytest.approx(FINAL_LOSS)
    head = lin["eval"]["headline"]
    assert head["metric"] == "bpb"
    assert head["domain_gain"] == pytest.approx(DOMAIN_GAIN)
    assert head["general_regression"] == pytest.approx(GENERAL_REGRESSION)
    for name, (base_bpb, bpb) in BPB.items():
        s = lin["eval"]["sets"][name]
        assert s["base"]["bpb"] == pytest.approx(base_bpb)
        assert s["adapted"]["bpb"] == pytest.approx(bpb)
    assert lin["eval"]["baseline"]["path"] == str(home / "models" / BASE)
    assert lin["eval"]["sets"]["code"]["paths"] == [str(home / "inputs" / "held-code.jsonl")]
    # the eval report on disk is the one the lineage carries
    report = json.loads((model_dir / "eval" / "eval.json").read_text(encoding="utf-8"))
    assert report["headline"] == head and report["sets"] == lin["eval"]["sets"]

    # the eval module's readers of the same file
    typed = model_lineage(str(model_dir)).dump()  # every field of the old file reads back
    assert typed.pop("format_version") == 1 and typed == lin
    assert lineage_baseline(str(model_dir)) == str(home / "models" / BASE)
    assert lineage_roles(str(model_dir)) == {"code": "general", "general": "general"}
    # the run's config.yaml still validates and names the same sources
    cfg = load_config(home / "runs" / RUN / "config.yaml")
    assert cfg.run.name == RUN and cfg.model.base == str(home / "models" / BASE)
    assert [(s.name, s.dataset, s.paths) for s in cfg.data.sources] == [
        ("code", "code@2", None),
        ("general", None, [str(home / "inputs" / "general.jsonl")]),
    ]
    assert cfg.train.steps == 6 and cfg.data.seq_len == 64 and cfg.eval.every_steps == 2


def test_model_loads_as_a_base_for_a_new_run(home: Path) -> None:
    import torch

    model_dir = home / "runs" / RUN / "model"
    loaded = load_base(ModelSection(base=str(model_dir)), home)
    assert tokenizer_fingerprint(loaded.tokenizer) == TOKENIZER_SHA256
    assert loaded.info["lineage"]["kind"] == "cpt"  # a chained run records its parent
    assert loaded.model.config.hidden_size == 32 and loaded.model.config.num_hidden_layers == 2
    base = load_base(ModelSection(base=str(home / "models" / BASE)), home)
    ids = torch.tensor([list(b"def return self")])
    with torch.no_grad():
        trained, random = loaded.model(ids).logits, base.model(ids).logits
    assert trained.shape == (1, ids.shape[1], len(loaded.tokenizer))
    assert not torch.allclose(trained, random)  # the trained weights, not the base's


def test_eval_of_the_old_model_reproduces_its_bpb(home: Path, tmp_path: Path) -> None:
    model_dir = home / "runs" / RUN / "model"
    out = tmp_path / "eval"
    argv = ["eval", str(model_dir), "--no-baseline", "--no-lineage", "--out", str(out)]
    argv += ["--sets", f"code={home / 'inputs' / 'held-code.jsonl'}", "--domain", "code"]
    argv += ["--seq-len", "64", "--device", "cpu"]
    assert main(argv) == 0
    got = json.loads((out / "eval.json").read_text(encoding="utf-8"))["sets"]["code"]
    assert got["adapted"]["bpb"] == pytest.approx(BPB["code"][1], rel=1e-4)


def test_metrics_jsonl_reads(home: Path) -> None:
    train, evals = read_metrics(home / "runs" / RUN / "metrics.jsonl")
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in evals] == [0, 2, 4, 6]
    assert {n: s["loss"] for n, s in evals[0]["sets"].items()} == pytest.approx(BASELINE_LOSS)
    assert evals[0]["tokens"] == 0 and evals[0]["sets"]["code"]["rel_change"] == 0.0
    assert train[-1]["loss"] == pytest.approx(FINAL_TRAIN_LOSS)
    assert train[-1]["tokens"] == 1536 and train[-1]["tokens_by_source"] == {
        "code": 768,
        "general": 768,
    }
    assert train[0]["lr"] == pytest.approx(0.003) and train[-1]["lr"] == pytest.approx(0.0003)
    rows = {r["set"]: r for r in eval_table(evals)}
    assert list(rows) == ["code", "general"]
    for name in ("code", "general"):
        assert rows[name]["base_loss"] == pytest.approx(BASELINE_LOSS[name])
        assert rows[name]["final_loss"] == pytest.approx(FINAL_LOSS[name])
        assert rows[name]["final_step"] == 6
    text = format_table(eval_table(evals))
    assert "step 6" in text and "-9.9%" in text and "-10.4%" in text
    report = (home / "runs" / RUN / "report.md").read_text(encoding="utf-8")
    assert report.startswith(f"# steep run: {RUN}\n") and "- steps: 6" in report
    assert "| code | 5.5603 | 5.0116 | -0.5487 | -9.9% | gain (loss down) |" in report


def test_catalog_returns_both_versions_with_manifests(home: Path) -> None:
    catalog = Catalog()
    assert catalog.root == home / "datasets"
    assert catalog.names() == ["code"] and catalog.versions("code") == [1, 2]
    assert catalog.next_version("code") == 3

    v1 = catalog.get("code@1")
    assert v1.ref == "code@1" and v1.path == home / "datasets" / "code" / "v1"
    m1 = v1.manifest
    assert m1["format"] == "steep-dataset" and m1["format_version"] == 1
    assert m1["name"] == "code" and m1["version"] == 1 and m1["documents"] == 41
    assert m1["created_by"]["command"] == "add" and m1["parent"] is None
    assert m1["created_by"]["langid"] is False and m1["skipped"] == {} and m1["funnel"] == []
    (inp,) = m1["inputs"]
    assert inp["path"] == str(home / "inputs" / "code.jsonl") and inp["documents"] == 41
    assert inp["sha256"] == CODE_JSONL_SHA256 == _sha256(home / "inputs" / "code.jsonl")
    assert [p.name for p in v1.shards] == ["00000.parquet"]
    assert sum(1 for s in v1.shards for _ in read_docs(s)) == 41

    v2 = catalog.get("code")  # the latest
    assert v2.ref == "code@2" and v2 == catalog.get("code@v2")
    m2 = v2.manifest
    assert m2["parent"] == "code@1" and m2["documents"] == 36 and m2["bytes"] == 12595
    assert m2["created_by"]["command"] == "prepare"
    assert m2["created_by"]["recipe"] == str(home / "inputs" / "recipe.yaml")
    assert [s[0] for s in m2["created_by"]["steps"]] == [
        "normalize",
        "gopher_quality",
        "exact_dedup",
    ]
    assert [f["docs_out"] for f in m2["funnel"]] == [41, 39, 36]
    texts = [d.text for s in v2.shards for d in read_docs(s)]
    assert len(texts) == 36 and len(set(texts)) == 36  # exact_dedup left no copies
    reasons: dict[str, int] = {}
    for row in read_exclusions(v2.exclusions):
        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
    assert reasons == {"gopher_quality.too_few_words": 2, "exact_dedup.duplicate": 3}
    assert "code@2" in list_datasets(catalog)
    shown = show_dataset(v2)
    assert "parent: code@1" in shown and "exact_dedup" in shown


def test_model_card_renders_with_the_eval_numbers(home: Path) -> None:
    model_dir = home / "runs" / RUN / "model"
    lineage = json.loads((model_dir / "steep.json").read_text(encoding="utf-8"))
    report = json.loads((model_dir / "eval" / "eval.json").read_text(encoding="utf-8"))
    card = render_model_card(MODEL, lineage, report, home)
    assert card.startswith("---\nlibrary_name: transformers") and CARD_MARK in card
    assert f"# {MODEL}\n" in card
    # one sign convention in the whole card: the change, negative is better
    assert "the domain sets **-9.86%**, on the general sets **-10.41%**" in card
    assert "| code | domain | 8.0195 | 7.2289 | -9.86% |" in card
    assert "| general | general | 8.0367 | 7.1997 | -10.41% |" in card
    assert "| code | 5.5603 | 5.0116 | -9.87% |" in card  # held-out loss during training
    assert "| 0.3 | 0.003 | cosine | 6 | 256 | 1,536 | 64 |" in card
    manifest = home / "datasets" / "code" / "v2" / "manifest.json"
    assert f"| code | 1 | 50.0% | code@2 | manifest {_sha256(manifest)[:16]} |" in card
    assert f"`general.jsonl` {_sha256(home / 'inputs' / 'general.jsonl')[:16]}" in card
    assert f"tokenizer sha256: `{TOKENIZER_SHA256}`" in card
    # the card on disk (steep wrote it; a hub sync rewrites it) is the same text
    assert write_model_card(model_dir, MODEL, home) == model_dir / "README.md"
    assert (model_dir / "README.md").read_text(encoding="utf-8") == card


def test_cli_lists_and_shows(home: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NAME")
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert {MODEL, BASE} <= set(lines)
    assert lines[MODEL].split()[1:3] == ["cpt", RUN]
    assert "+9.9%" in lines[MODEL] and "-10.4%" in lines[MODEL]
    assert lines[BASE].split()[1] == "plain"

    assert main(["models", "show", MODEL]) == 0
    out = capsys.readouterr().out
    assert f"model    {MODEL} (cpt)" in out
    assert f"base     {home / 'models' / BASE}" in out and f"(registered model {BASE})" in out
    assert f"run      {RUN} [done] {home / 'runs' / RUN}" in out
    assert "data   code: code@2 (weight 1)" in out
    assert f"data   general: {home / 'inputs' / 'general.jsonl'} (weight 1)" in out
    assert "recipe   lr_fraction 0.3, 6 steps x 256 tokens, max LR 0.003" in out
    assert "loss   code: 5.5603 -> 5.0116" in out
    assert "eval     domain gain +9.9%, general regression -10.4% (bpb)" in out
    assert main(["models", "show", MODEL, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == MODEL and shown["lineage"]["eval"]["headline"]["domain"] == ["code"]

    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("code@")]
    assert row.split()[:3] == ["code@2", "1,2", "36"] and "prepare from code@1" in row

    assert main(["data", "show", "code@1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"code@1  ({home / 'datasets' / 'code' / 'v1'})")
    assert "by `steep data add`" in out and "documents: 41" in out
    assert f"{home / 'inputs' / 'code.jsonl'}  sha256 {CODE_JSONL_SHA256[:12]}  41 docs" in out
    assert main(["data", "show", "code@3"]) == 2
    assert "code has no version 3; versions: 1, 2" in capsys.readouterr().err
