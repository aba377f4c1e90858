"""The lm-evaluation-harness bridge, offline: a local task YAML reading a jsonl file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steep.eval.compare import EvalSpec, run_eval
from steep.eval.harness import HarnessError, flatten_results, plan_harness, run_harness

TASK = "steep_tiny_mc"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network: lm_eval and datasets must work from the local files alone."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    pytest.importorskip("lm_eval")


def _local_task(root: Path) -> Path:
    """A task folder: tasks.jsonl (steep's own task format) and an lm_eval YAML for it."""
    rows = [
        {"question": "def return", "choices": ["class", "river"], "answer": 0},
        {"question": "the river", "choices": ["lambda", "mountain"], "answer": 1},
        {"question": "import yield", "choices": ["await", "village", "winter"], "answer": 0},
    ]
    data = root / "tasks.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    folder = root / "lm_tasks"
    folder.mkdir()
    (folder / f"{TASK}.yaml").write_text(
        f"""task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {root / "hf-cache"}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{question}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{answer}}}}"
metric_list: [{{metric: acc}}, {{metric: acc_norm}}]
metadata:
  version: 1.0
""",
        encoding="utf-8",
    )
    return folder


def test_unknown_task_is_refused_before_any_model(tmp_path: Path, offline: None) -> None:
    folder = _local_task(tmp_path)
    # lm_eval's own catalogue left out: indexing its ~15k tasks alone takes ~15 s
    with pytest.raises(HarnessError, match=r"unknown lm_eval task\(s\): no_such_task \(looked in"):
        plan_harness(["no_such_task"], [folder], include_defaults=False)
    with pytest.raises(HarnessError, match="not a folder"):
        plan_harness([TASK], [tmp_path / "missing"])


def test_local_jsonl_task_runs_on_a_steep_model_dir(
    tmp_path: Path, tiny_model: Path, offline: None
) -> None:
    plan = plan_harness([TASK], [_local_task(tmp_path)])
    results = run_harness(tiny_model, plan, device="cpu", batch_size=4)
    metrics = results[TASK]
    assert 0.0 <= metrics["acc"] <= 1.0 and 0.0 <= metrics["acc_norm"] <= 1.0
    assert metrics["primary"] == "acc_norm"
    assert metrics["higher_is_better"] == {"acc": True, "acc_norm": True}


def test_steep_eval_reports_harness_tasks(tmp_path: Path, tiny_model: Path, offline: None) -> None:
    """Through ``steep eval``: base and adapted (here the same model) both run the task."""
    folder = _local_task(tmp_path)
    spec = EvalSpec(
        model=str(tiny_model),
        baseline=str(tiny_model),
        harness_tasks=[TASK],
        harness_include=[str(folder)],
        roles={TASK: "general"},
        device="cpu",
        out_dir=str(tmp_path / "report"),
    )
    row = run_eval(spec)["tasks"][TASK]
    assert row["source"] == "lm_eval" and row["primary"] == "acc_norm"
    assert row["base"]["acc_norm"] == row["adapted"]["acc_norm"]
    assert row["change"]["acc_norm"]["abs"] == 0.0
    saved = json.loads((tmp_path / "report" / "eval.json").read_text())
    assert saved["headline"]["tasks"]["general"] == [TASK]
    assert (
        "| steep_tiny_mc | general | lm_eval | acc_norm |"
        in (tmp_path / "report" / "eval.md").read_text()
    )


def test_flatten_results_keeps_filters_apart() -> None:
    raw = {
        "results": {"t": {"alias": "t", "acc,none": 0.5, "acc_stderr,none": 0.1, "em,strict": 1}},
        "higher_is_better": {"t": {"acc": True, "em": True}},
    }
    got = flatten_results(raw)["t"]
    assert got["acc"] == 0.5 and got["acc_stderr"] == 0.1 and got["em/strict"] == 1.0
    assert got["primary"] == "acc"
