"""Train a domain classifier on two datasets and mine a general corpus with it (e-Llama).

A classifier learns whatever tells its two sets apart. When they differ in language, it
learns the language, and mining a multilingual pool then returns every document in the
"positive" language. So training warns when the sets' languages differ, mining warns when
the pool holds languages the classifier never saw, ``languages`` restricts mining to tags
it was trained on, and a labelled sample, when given, measures the mined set's precision.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from steep.data.executor import Executor
from steep.datahub.catalog import Catalog, DatasetVersion, check_name
from steep.datahub.classify import META_FILE, load_cached, metrics_at, train_classifier
from steep.datahub.pipeline import prepare
from steep.datahub.steps.base import read_docs
from steep.datahub.steps.langid import identify
from steep.errors import DataError, MissingInputError
from steep.workspace import Workspace


def classifier_dir(name: str) -> Path:
    return Workspace.current().classifiers / check_name(name)


def _texts(ds: DatasetVersion) -> Iterator[str]:
    for shard in ds.shards:
        for doc in read_docs(shard):
            yield doc.text


def train_domain_classifier(
    positive: str, negative: str, name: str, heldout_fraction: float = 0.2, seed: int = 0
) -> tuple[Path, dict[str, Any]]:
    """Fit on ``positive`` (domain) vs ``negative`` (general) datasets; save as ``name``."""

    catalog = Catalog()
    pos, neg = catalog.get(positive), catalog.get(negative)
    clf, metrics = train_classifier(
        _texts(pos), _texts(neg), heldout_fraction=heldout_fraction, seed=seed
    )
    languages = {
        "positive": pos.manifest.get("languages") or {},
        "negative": neg.manifest.get("languages") or {},
    }
    metrics = {**metrics, "positive": pos.ref, "negative": neg.ref, "languages": languages}
    clf.metrics.update(metrics)
    out = clf.save(classifier_dir(name))
    return out, metrics


def _shares(tags: dict[str, int]) -> dict[str, float]:
    total = sum(tags.values()) or 1
    return {k: v / total for k, v in tags.items()}


def _listed(shares: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]))


def language_mismatch(positive: dict[str, int], negative: dict[str, int]) -> str | None:
    """A warning when the two training sets' languages differ by a fifth of their documents
    or more (total variation distance): the classifier would learn the language."""
    if not positive or not negative:
        return None
    p, n = _shares(positive), _shares(negative)
    distance = sum(abs(p.get(k, 0.0) - n.get(k, 0.0)) for k in set(p) | set(n)) / 2
    if distance < 0.2:
        return None
    return (
        f"the positive set is {_listed(p)} and the negative set {_listed(n)}: the classifier "
        f"may learn the language instead of the domain; train on sets in the same language(s) "
        f"and mine with --languages"
    )


def unseen_languages(pool: dict[str, int], trained: dict[str, dict[str, int]]) -> str | None:
    """A warning naming the pool's languages (a tenth or more of it) that neither training
    set had: the classifier's scores on them say nothing about the domain."""
    seen = {k for tags in trained.values() for k in tags}
    if not seen:
        return None
    shares = _shares(pool)
    unseen = {k: v for k, v in shares.items() if k not in seen and k != "und" and v >= 0.1}
    if not unseen:
        return None
    return (
        f"the pool holds languages the classifier never saw ({_listed(unseen)}); it will "
        f"score them on what it learned of other languages; pass --languages "
        f"{','.join(sorted(seen - {'und'}))} to mine only those"
    )


def classifier_path(classifier: str) -> Path:
    """A classifier given by name (under the workspace's classifiers) or as its folder; a
    name wins over a folder of that name in the current directory (``docs`` is both)."""
    named = Workspace.current().classifiers / classifier
    for path in (named, Path(classifier)):
        if (path / META_FILE).is_file():
            return path
    raise MissingInputError(
        f"no classifier {classifier!r} (a folder with {META_FILE}, or a name under {named.parent})"
    )


def read_labelled(path: Path) -> tuple[list[str], np.ndarray]:
    """A labelled sample: jsonl rows ``{"text": ..., "label": 1 (domain) or 0}``."""
    texts, labels = [], []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the labelled sample: {exc}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise DataError(f"{path}:{i}: a row needs a string field 'text'")
        if row.get("label") not in (0, 1, True, False):
            raise DataError(
                f"{path}:{i}: field 'label' must be 1 (domain) or 0, got {row.get('label')!r}"
            )
        texts.append(row["text"])
        labels.append(int(row["label"]))
    if not labels:
        raise DataError(f"{path}: the labelled sample is empty")
    return texts, np.asarray(labels, dtype=np.int64)


def score_labelled(
    path: Path, classifier: Path, threshold: float, languages: list[str] | None
) -> dict[str, Any]:
    """Precision and recall of mining (language filter, then classifier) on a labelled
    sample the classifier was not trained on."""
    texts, y = read_labelled(path)
    scores = load_cached(classifier).score(texts)
    if languages:
        kept = np.fromiter((identify(t)[0] in languages for t in texts), bool, len(texts))
        scores = np.where(kept, scores, 0.0)
    return {"sample": str(path), "documents": len(texts), **metrics_at(y, scores, threshold)}


def mine(
    general: str,
    classifier: str,
    threshold: float,
    into: str,
    executor: Executor | None = None,
    languages: list[str] | None = None,
    labelled: Path | None = None,
) -> tuple[DatasetVersion, list[str]]:
    """Keep the documents of ``general`` (in ``languages``, when given) the classifier scores
    at or above ``threshold``; return the new version and the warnings for the user."""
    path = classifier_path(classifier)
    meta = json.loads((path / META_FILE).read_text())
    trained = (meta.get("metrics") or {}).get("languages") or {}
    pool = Catalog().get(general)
    warnings = []
    if not languages:
        warning = unseen_languages(pool.manifest.get("languages") or {}, trained)
        if warning:
            warnings.append(warning)
    specs: list[tuple[str, dict[str, Any]]] = []
    if languages:
        specs.append(("languages", {"keep": list(languages)}))
    specs.append(("domain_filter", {"classifier": str(path), "threshold": threshold}))
    created_by: dict[str, Any] = {
        "command": "mine",
        "classifier": str(path),
        "threshold": threshold,
        "languages": list(languages) if languages else None,
        "steps": specs,
        "warnings": warnings,
    }
    if labelled is not None:
        created_by["labelled"] = score_labelled(Path(labelled), path, threshold, languages)
    version = prepare(pool.ref, specs, into=into, executor=executor, created_by=created_by)
    return version, warnings
