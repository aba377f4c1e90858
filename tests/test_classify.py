"""Domain classifier on the checked-in smoke corpora (Python stdlib docs vs Wikipedia)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from steep.datahub import classify
from steep.datahub.classify import DomainClassifier, DomainFilter, load_cached, train_classifier
from steep.datahub.steps.base import STEP_TYPES, Doc, Drop

SMOKE = Path(__file__).resolve().parents[1] / "examples" / "data" / "smoke"

DOCS_PARAGRAPH = (
    "Return a new dictionary initialized from an optional positional argument and a possibly "
    "empty set of keyword arguments. If the key is not found, the default value is returned; "
    "if default is not given, it defaults to None, so that this method never raises a "
    "KeyError. Changed in version 3.7: the order of items is guaranteed to be insertion order."
)
WIKI_PARAGRAPH = (
    "The castle was built in the twelfth century by a Norman lord and was besieged twice "
    "during the civil war. After the death of the last earl it passed to the crown, and in "
    "the eighteenth century the surrounding village grew into a market town famous for wool, "
    "horses and an annual summer fair that still draws visitors from across the region."
)


def paragraphs(name: str) -> list[str]:
    """Split each smoke document on blank lines; short pieces (headings) are too thin to learn."""
    out: list[str] = []
    for line in (SMOKE / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["text"]
        out += [p.strip() for p in text.split("\n\n") if len(p.strip()) >= 100]
    return out


@pytest.fixture(scope="module")
def trained() -> tuple[DomainClassifier, dict]:
    return train_classifier(paragraphs("domain"), paragraphs("general"))


def test_heldout_metrics_well_above_chance(trained: tuple[DomainClassifier, dict]) -> None:
    _, m = trained
    assert m["n_heldout"]["positive"] >= 20 and m["n_heldout"]["negative"] >= 15
    assert m["n_train"]["positive"] >= 100 and m["n_train"]["negative"] >= 80
    assert m["accuracy"] >= 0.85
    assert m["auc"] >= 0.9
    assert m["precision"] >= 0.8 and m["recall"] >= 0.8 and m["f1"] >= 0.8
    assert m["threshold"] == 0.5


def test_split_is_stable_under_reordering() -> None:
    pos, neg = paragraphs("domain"), paragraphs("general")
    _, a = train_classifier(pos, neg)
    _, b = train_classifier(pos[::-1], neg[::-1])
    assert a["n_heldout"] == b["n_heldout"] and a["n_train"] == b["n_train"]
    _, c = train_classifier(pos, neg, seed=1)
    assert c["n_train"]["positive"] + c["n_heldout"]["positive"] == len(pos)


def test_fresh_paragraphs_rank_the_right_way(trained: tuple[DomainClassifier, dict]) -> None:
    clf, _ = trained
    docs_score, wiki_score = clf.score([DOCS_PARAGRAPH, WIKI_PARAGRAPH])
    assert docs_score > 0.5 > wiki_score
    assert clf.score([]).shape == (0,)


def test_save_load_round_trip(trained: tuple[DomainClassifier, dict], tmp_path: Path) -> None:
    clf, metrics = trained
    path = clf.save(tmp_path / "clf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf"]  # no temporary left behind
    meta = json.loads((path / "classifier.json").read_text())
    assert meta["format_version"] == classify.FORMAT_VERSION
    assert meta["features"]["n_features"] == 2**20 and meta["sklearn_version"]
    assert meta["metrics"]["accuracy"] == metrics["accuracy"]
    texts = [DOCS_PARAGRAPH, WIKI_PARAGRAPH, *paragraphs("general")[:5]]
    loaded = DomainClassifier.load(path)
    np.testing.assert_array_equal(loaded.score(texts), clf.score(texts))
    clf.save(path)  # overwriting an existing classifier is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf"]


def test_load_refuses_other_format_version(
    trained: tuple[DomainClassifier, dict], tmp_path: Path
) -> None:
    path = trained[0].save(tmp_path / "clf")
    meta = json.loads((path / "classifier.json").read_text())
    meta["format_version"] = 99
    (path / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="format version 99"):
        DomainClassifier.load(path)
    with pytest.raises(FileNotFoundError, match="classifier.json"):
        DomainClassifier.load(tmp_path / "missing")


def test_domain_filter_step(trained: tuple[DomainClassifier, dict], tmp_path: Path) -> None:
    path = trained[0].save(tmp_path / "clf")
    step = DomainFilter(classifier=str(path))
    assert STEP_TYPES["domain_filter"] is DomainFilter
    wiki = step.apply(Doc("g:1", WIKI_PARAGRAPH))
    assert isinstance(wiki, Drop) and wiki.reason == "domain_filter.below_threshold"
    assert wiki.detail.endswith("< 0.5")
    doc = Doc("d:1", DOCS_PARAGRAPH)
    assert step.apply(doc) is doc and doc.meta["domain_score"] > 0.5
    assert load_cached(path) is load_cached(str(path))  # loaded once per process
    batch = step.apply_batch([Doc("d:2", DOCS_PARAGRAPH), Doc("g:2", WIKI_PARAGRAPH)])
    assert isinstance(batch[0], Doc) and isinstance(batch[1], Drop)
    assert batch[0].meta["domain_score"] == doc.meta["domain_score"]
    assert isinstance(DomainFilter(classifier=str(path), threshold=0.0).apply(doc), Doc)
