"""A small, fast domain classifier: is this document like my domain corpus or like general text?

Design, chosen for speed on CPU and no fitted vocabulary to store or drift:

- features: ``HashingVectorizer`` over lowercased word 1-2 grams, 2**20 buckets, no sign
  flipping, l2-normalised; stateless, so only its settings are saved (in ``classifier.json``);
- model: ``SGDClassifier`` with log loss (logistic regression by SGD) and balanced class
  weights; it trains in well under a second on thousands of documents, and on the smoke
  corpora matches liblinear's logistic regression at a fortieth of the time.

A saved classifier is a directory: ``model.skops`` (the fitted sklearn model, via skops, which
loads without unpickling arbitrary code) and ``classifier.json`` (format version, feature
settings, held-out metrics, creation time, sklearn version). Saving is atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from steep.datahub.steps.base import Doc, DocStep, Drop, StepResult, register
from steep.errors import DataError, MissingInputError

FORMAT_VERSION = 1
MODEL_FILE = "model.skops"
META_FILE = "classifier.json"
# Trusted on load: the fitted model is one SGDClassifier and plain numpy arrays.
_TRUSTED_TYPES = ["sklearn.linear_model._stochastic_gradient.SGDClassifier"]

DEFAULT_FEATURES: dict[str, Any] = {
    "analyzer": "word",
    "ngram_range": [1, 2],
    "n_features": 2**20,
    "alternate_sign": False,
    "lowercase": True,
    "norm": "l2",
    "max_chars": 20_000,  # long documents (books) cost time, not accuracy
}


def _vectorizer(features: dict[str, Any]) -> Any:
    # deferred: scikit-learn only for the domain classifier
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer=features["analyzer"],
        ngram_range=tuple(features["ngram_range"]),
        n_features=int(features["n_features"]),
        alternate_sign=bool(features["alternate_sign"]),
        lowercase=bool(features["lowercase"]),
        norm=features["norm"],
    )


class DomainClassifier:
    """A fitted model plus the feature settings it was trained with; scores in-domain probability."""

    def __init__(
        self,
        model: Any,
        features: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        created: str | None = None,
    ) -> None:
        self.model = model
        self.features = dict(features or DEFAULT_FEATURES)
        self.metrics = dict(metrics or {})
        self.created = created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._vec = _vectorizer(self.features)

    def _transform(self, texts: Sequence[str]) -> Any:
        n = int(self.features["max_chars"])
        return self._vec.transform([t[:n] for t in texts])

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Probability that each text belongs to the domain (the positive class), float64."""
        if len(texts) == 0:
            return np.zeros(0, dtype=np.float64)
        proba = self.model.predict_proba(self._transform(texts))
        return proba[:, list(self.model.classes_).index(1)].astype(np.float64)

    def save(self, path: Path) -> Path:
        """Write the directory atomically: build it beside the target, then rename into place."""
        import sklearn  # deferred: scikit-learn only for the domain classifier
        import skops.io as sio

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            sio.dump(self.model, tmp / MODEL_FILE)
            meta = {
                "format_version": FORMAT_VERSION,
                "kind": "steep.domain_classifier",
                "model": type(self.model).__name__,
                "features": self.features,
                "metrics": self.metrics,
                "created": self.created,
                "sklearn_version": sklearn.__version__,
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            old = None
            if path.exists():  # a directory cannot be renamed over a non-empty one
                old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
                path.rename(old)
            tmp.rename(path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: Path) -> DomainClassifier:
        """Read a directory written by ``save``; refuses another format version by name."""
        import skops.io as sio  # deferred: scikit-learn only for the domain classifier

        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise MissingInputError(f"not a saved domain classifier (no {META_FILE}): {path}")
        meta = json.loads(meta_path.read_text())
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(
                f"{path}: classifier format version {version!r}, but this steep reads version "
                f"{FORMAT_VERSION}; retrain it with this version (train_classifier)"
            )
        model_path = path / MODEL_FILE
        untrusted = set(sio.get_untrusted_types(file=model_path)) - set(_TRUSTED_TYPES)
        if untrusted:
            raise DataError(f"{model_path}: unexpected types in the model: {sorted(untrusted)}")
        model = sio.load(model_path, trusted=_TRUSTED_TYPES)
        return cls(model, meta["features"], meta.get("metrics"), meta.get("created"))


def _is_heldout(text: str, fraction: float, seed: int) -> bool:
    """Stable split by content: same text, same side, whatever the input order (and no leaks)."""
    h = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(h, "big") / 2**64 < fraction


def metrics_at(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float | None]:
    """Precision, recall, f1, accuracy and AUC of scores ``p`` against labels ``y``."""
    from sklearn.metrics import (  # deferred: scikit-learn only for the domain classifier
        accuracy_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    if len(y) == 0:
        return dict.fromkeys(("precision", "recall", "f1", "accuracy", "auc"))
    pred = (p >= threshold).astype(int)
    prec, rec, f1, _ = precision_recall_fscore_support(
        y, pred, average="binary", pos_label=1, zero_division=0
    )
    auc = float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None
    return {
        "precision": float(prec),
        "recall": float(rec),
        "f1": float(f1),
        "accuracy": float(accuracy_score(y, pred)),
        "auc": auc,
    }


def train_classifier(
    positive: Iterable[str],
    negative: Iterable[str],
    heldout_fraction: float = 0.2,
    seed: int = 0,
    alpha: float = 1e-4,
) -> tuple[DomainClassifier, dict[str, Any]]:
    """Fit domain (positive) vs general (negative) text; return the classifier and its metrics.

    Metrics (precision, recall, f1, accuracy, auc at threshold 0.5) are measured on a held-out
    split chosen by a keyed hash of each text. Metrics with no held-out data are ``None``.
    """
    # deferred: scikit-learn only for the domain classifier
    from sklearn.linear_model import SGDClassifier

    if not 0.0 <= heldout_fraction < 1.0:
        raise DataError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    texts: list[str] = []
    labels: list[int] = []
    for label, corpus in ((1, positive), (0, negative)):
        for t in corpus:
            if t and t.strip():
                texts.append(t)
                labels.append(label)
    y = np.asarray(labels, dtype=np.int64)
    held = np.fromiter((_is_heldout(t, heldout_fraction, seed) for t in texts), bool, len(texts))
    train = ~held
    counts = {
        "n_train": {"positive": int(y[train].sum()), "negative": int((y[train] == 0).sum())},
        "n_heldout": {"positive": int(y[held].sum()), "negative": int((y[held] == 0).sum())},
    }
    if min(counts["n_train"].values()) == 0:
        raise DataError(f"need training texts of both classes, got {counts['n_train']}")

    features = dict(DEFAULT_FEATURES)
    model = SGDClassifier(
        loss="log_loss", alpha=alpha, class_weight="balanced", random_state=seed, max_iter=1000
    )
    clf = DomainClassifier(model, features)
    x = clf._transform(texts)
    model.fit(x[train], y[train])

    threshold = 0.5
    p_held = (
        clf.model.predict_proba(x[held])[:, list(model.classes_).index(1)]
        if held.any()
        else np.zeros(0)
    )
    metrics: dict[str, Any] = {
        **metrics_at(y[held], p_held, threshold),
        **counts,
        "threshold": threshold,
        "heldout_fraction": heldout_fraction,
        "seed": seed,
        "alpha": alpha,
    }
    clf.metrics = metrics
    return clf, metrics


# ---------------------------------------------------------------- the recipe step

_CACHE: dict[str, tuple[int, DomainClassifier]] = {}
_CACHE_LOCK = threading.Lock()


def load_cached(path: str | Path) -> DomainClassifier:
    """One load per process and path; reloaded if the saved classifier was replaced."""
    key = str(Path(path).expanduser().resolve())
    try:
        stamp = os.stat(Path(key) / META_FILE).st_mtime_ns
    except FileNotFoundError:
        stamp = -1  # let load() raise its clear error
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is None or hit[0] != stamp:
            hit = (stamp, DomainClassifier.load(Path(key)))
            _CACHE[key] = hit
    return hit[1]


@register
class DomainFilter(DocStep):
    """Score each document with a saved domain classifier; drop those below ``threshold``.

    Sets ``meta["domain_score"]``. ``apply_batch`` scores many documents in one vectorised
    call (several times faster than ``apply`` one by one) for a pipeline that can use it.
    """

    kind: ClassVar[str] = "domain_filter"
    classifier: str  # directory written by DomainClassifier.save / train_classifier
    threshold: float = Field(0.5, ge=0.0, le=1.0)

    def _decide(self, doc: Doc, score: float) -> StepResult:
        doc.meta["domain_score"] = score
        if score < self.threshold:
            return Drop("domain_filter.below_threshold", f"{score:.3f} < {self.threshold}")
        return doc

    def apply(self, doc: Doc) -> StepResult:
        score = float(load_cached(self.classifier).score([doc.text])[0])
        return self._decide(doc, score)

    def apply_batch(self, docs: Sequence[Doc]) -> list[StepResult]:
        """Same results as ``apply`` on each doc, in order, with one model call."""
        scores = load_cached(self.classifier).score([d.text for d in docs])
        return [self._decide(d, float(s)) for d, s in zip(docs, scores, strict=True)]
