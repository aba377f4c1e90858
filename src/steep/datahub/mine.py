"""Train a domain classifier on two datasets and mine a general corpus with it (e-Llama)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steep.data.executor import Executor
from steep.datahub.catalog import Catalog, DatasetVersion, check_name
from steep.datahub.classify import train_classifier
from steep.datahub.pipeline import prepare
from steep.datahub.steps.base import read_docs
from steep.errors import MissingInputError
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
    metrics = {**metrics, "positive": pos.ref, "negative": neg.ref}
    clf.metrics.update(metrics)
    out = clf.save(classifier_dir(name))
    return out, metrics


def mine(
    general: str,
    classifier: str,
    threshold: float,
    into: str,
    executor: Executor | None = None,
) -> DatasetVersion:
    """Keep the documents of ``general`` the classifier scores at or above ``threshold``."""
    path = Path(classifier)
    if not path.exists():
        path = classifier_dir(classifier)
    if not path.exists():
        raise MissingInputError(
            f"no classifier {classifier!r} (a folder, or a name under {path.parent})"
        )
    specs = [("domain_filter", {"classifier": str(path), "threshold": threshold})]
    return prepare(general, specs, into=into, executor=executor)
