"""Two ``steep data prepare`` of one dataset at once (#29 finding 11's rule, stated in
``datahub/name_lock.py``): the same parent with the same recipe is refused in one line
naming the first (they would share one staging folder); different recipes both publish,
each as the next version (versions are appends).

Deterministic: the first is held inside its publish (``tests/held_add.py``) while the
second runs, and the lost race of a publish is made by hand, not waited for.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from steep.cli import main
from steep.datahub.catalog import Catalog
from tests.conftest import WORDS_A, synthetic_docs, write_jsonl
from tests.held_add import while_held


def _recipe(path: Path, steps: list) -> Path:
    path.write_text(yaml.safe_dump({"steps": steps}))
    return path


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    docs = write_jsonl(tmp_path / "shop.jsonl", synthetic_docs(WORDS_A, 40, 1))
    assert main(["data", "add", "shop", str(docs), "--no-langid", "--workers", "1"]) == 0
    return tmp_path


@pytest.mark.parametrize("second", ["same", "other"])
def test_prepares_at_once(shop: Path, _steep_home: Path, second: str) -> None:
    first_recipe = _recipe(shop / "a.yaml", ["normalize", "exact_dedup"])
    second_recipe = first_recipe if second == "same" else _recipe(shop / "b.yaml", ["normalize"])
    args = ["data", "prepare", "shop@1", "--workers", "1", "--recipe"]
    first, out, run = while_held(
        shop / "hold", [*args, str(first_recipe)], [*args, str(second_recipe)]
    )
    assert first.returncode == 0, out
    versions = {v.version: v.manifest["created_by"].get("recipe") for v in _all(Catalog(), "shop")}
    if second == "same":
        err = [x for x in run.stderr.splitlines() if x.strip()]
        assert run.returncode != 0 and len(err) == 1, run.stderr
        assert (
            f"the same prepare (shop@1 with {first_recipe}) is running by pid {first.pid}"
            in (err[0])
        )
        assert versions == {1: None, 2: str(first_recipe)}
    else:  # the second published while the first was held: the first took the next number
        assert run.returncode == 0, run.stderr
        assert versions == {1: None, 2: str(second_recipe), 3: str(first_recipe)}
    folder = _steep_home / "datasets" / "shop"
    assert not [p for p in folder.iterdir() if p.name.startswith(".partial")]


def _all(catalog: Catalog, name: str) -> list:
    return [catalog.get(f"{name}@{v}") for v in catalog.versions(name)]


def test_a_publish_that_lost_its_number_takes_the_next(
    shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = _recipe(shop / "a.yaml", ["normalize"])
    assert main(["data", "prepare", "shop", "--recipe", str(recipe), "--workers", "1"]) == 0
    catalog = Catalog()
    stale = iter([2])  # as if shop@2 was published between the count and the rename
    real = Catalog.next_version
    monkeypatch.setattr(Catalog, "next_version", lambda self, n: next(stale, None) or real(self, n))
    other = _recipe(shop / "b.yaml", ["exact_dedup"])
    assert main(["data", "prepare", "shop@1", "--recipe", str(other), "--workers", "1"]) == 0
    assert catalog.versions("shop") == [1, 2, 3]
    assert catalog.get("shop@3").manifest["created_by"]["recipe"] == str(other)
    assert catalog.get("shop@2").manifest["created_by"]["recipe"] == str(recipe)
