"""The shipped recipes on the text each is for: docs.yaml keeps real documentation (the
Python docs the demo builds, and a manual page of tables and code), web.yaml does not, and
every recipe says which kind of text it is for (#17 finding 5)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from steep.artifacts.yamlload import load_yaml
from steep.cli import main
from steep.data.executor import LocalExecutor
from steep.datahub.catalog import Catalog
from steep.datahub.ingest import add_dataset
from steep.datahub.pipeline import RECIPES, load_recipe, packaged_recipes, prepare
from steep.datahub.steps.base import Doc, Drop, read_docs
from steep.datahub.steps.gopher import GopherRepetition
from steep.demos.corpora import python_docs
from steep.errors import DataError
from tests.conftest import WORDS_B, synthetic_docs

INLINE = LocalExecutor(1)

TABLE_ROWS = "\n".join(
    f"| {name:<14} | {share:>5.1f}% |\n+----------------+--------+"
    for name, share in [("apt", 99.9), ("aptitude", 12.3), ("synaptic", 8.1), ("dpkg", 99.9)]
)
MANUAL = (
    "Package management\n\n"
    "The package tools below keep track of what is installed and where it came from. Each "
    "of them reads the same database, so you can use whichever you like and switch later.\n\n"
    "+----------------+--------+\n"
    "| package        | popcon |\n"
    "+----------------+--------+\n" + TABLE_ROWS + "\n\n"
    "To install a package with its dependencies, update the lists first and then ask for it "
    "by name; the tool works out what else is needed and tells you before it changes anything."
    "\n\n    $ sudo apt-get update\n    $ sudo apt-get install aptitude\n"
)


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_recipe_says_what_text_it_is_for(path: Path) -> None:
    data = load_yaml(path.read_text(), str(path))
    assert data.get("description"), f"{path.name} has no description"
    assert load_recipe(path)  # and it parses
    head = path.read_text().splitlines()[0]
    assert head.startswith(f"# {path.name}: for "), head


def test_repetition_can_leave_table_borders_out() -> None:
    default = GopherRepetition().apply(Doc("m", MANUAL))
    assert isinstance(default, Drop) and "dup_line" in default.reason
    assert GopherRepetition(ignore_symbol_lines=True).apply(Doc("m", MANUAL)).text == MANUAL


def _steps(recipe: str) -> list:
    return [
        s for s in load_recipe(RECIPES / recipe) if s[0] not in {"exact_dedup", "minhash_dedup"}
    ]


def test_the_docs_recipe_keeps_documentation_the_web_recipe_destroys(tmp_path: Path) -> None:
    texts = list(itertools.islice(python_docs(), 80)) + [MANUAL]
    raw = tmp_path / "docs.jsonl"
    raw.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    add_dataset("pydocs", [str(raw)], executor=INLINE)
    total = sum(len(t) for t in texts)

    docs = prepare("pydocs@1", _steps("docs.yaml"), into="kept", executor=INLINE)
    kept = {d.text for s in docs.shards for d in read_docs(s)}
    kept_chars = sum(len(t) for t in kept)
    assert MANUAL.rstrip() in {t.rstrip() for t in kept}  # tables and code untouched
    assert kept_chars / total > 0.97, kept_chars / total

    web = prepare("pydocs@1", _steps("web.yaml"), into="web", executor=INLINE)
    web_chars = sum(len(d.text) for s in web.shards for d in read_docs(s))
    assert web_chars / total < 0.5, web_chars / total

    # repetition that is spam is still caught by the docs recipe
    spam = "Buy the best package manager today, the best one there is.\n\n" * 12
    raw2 = tmp_path / "spam.jsonl"
    raw2.write_text(json.dumps({"text": spam + MANUAL}) + "\n")
    add_dataset("spam", [str(raw2)], executor=INLINE)
    # its only document dropped: prepare refuses to publish an empty version (#29 item 2)
    with pytest.raises(DataError, match="step 'gopher_repetition' dropped all 1 documents"):
        prepare("spam@1", _steps("docs.yaml"), executor=INLINE)


def test_the_recipes_are_packaged_and_found_by_name() -> None:
    """#30: a pip-installed steep has its recipes: they are package data, `--recipe web`
    finds one by name, and examples/recipes is the same folder (one copy)."""
    assert set(packaged_recipes()) == {"web", "docs"}
    assert all(packaged_recipes().values())  # each says which text it is for
    assert load_recipe("web") == load_recipe(RECIPES / "web.yaml")
    root = Path(__file__).resolve().parents[1]
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    assert '"steep.datahub" = ["recipes/*.yaml"]' in pyproject  # in the wheel
    assert (root / "examples" / "recipes").resolve() == RECIPES


def test_prepare_takes_a_packaged_recipe_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#30: `steep data prepare NAME --recipe docs` in any directory, no file needed."""
    monkeypatch.setenv("STEEP_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    docs = synthetic_docs(WORDS_B, 6, seed=5)
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in docs), encoding="utf-8")
    add_dataset("notes", [str(path)], langid=False, executor=INLINE)
    assert main(["data", "prepare", "notes", "--recipe", "docs", "--workers", "1"]) == 0
    made = Catalog().get("notes@2").manifest
    assert made["created_by"]["recipe"] == "docs" and made["funnel"][0]["step"] == "normalize"
