"""``steep tokenizer extend``: corpus -> extended tokenizer -> grown model, measured, saved."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from steep import __version__
from steep.artifacts.fingerprint import file_sha256
from steep.artifacts.lineage import Lineage
from steep.config import ModelSection
from steep.data.documents import SkipLog, expand_paths, read_documents
from steep.data.tokenunits import is_heldout
from steep.datahub.catalog import Catalog, CatalogError
from steep.errors import MissingInputError
from steep.model.base_lr import UnknownBaseLR, published_peak
from steep.model.basenames import base_names
from steep.model.io import load_base, save_hf
from steep.model.vocab.embeddings import INITS, grow_embeddings
from steep.model.vocab.measure import _first_chars, _safe_bpb, fertility, new_token_usage
from steep.model.vocab.report import REPORT_FILE, format_report
from steep.model.vocab.tokenizer import (
    VocabError,
    _readable,
    backend_json,
    check_language,
    extend_tokenizer,
)
from steep.workspace import steep_home


@dataclass
class ExtendSpec:
    """Everything ``steep tokenizer extend`` was asked to do."""

    base: str
    corpus: list[str]
    add: int
    out: Path
    init: str = "mean"
    heldout: list[str] | None = None  # default: the corpus's own held-out split
    heldout_fraction: float = 0.05
    lang: str | None = None
    min_frequency: int = 2
    compare_inits: bool = True
    eval_chars: int = 20_000  # held-out characters scored for the initial bpb
    seq_len: int = 512
    base_max_lr: float | None = None
    seed: int = 0
    text_field: str = "text"


@dataclass
class ExtendResult:
    out: Path
    report: dict[str, Any] = field(default_factory=dict)


def read_corpus(spec: list[str], text_field: str = "text") -> tuple[list[str], dict[str, Any]]:
    """Documents of files/folders, or of a Data Hub dataset NAME[@VERSION]; plus lineage."""

    paths: list[str] = []
    lineage: dict[str, Any] = {"paths": spec}
    for item in spec:
        if Path(item).exists():
            paths.append(item)
            continue
        try:
            ds = Catalog().get(item)
        except CatalogError as exc:
            raise MissingInputError(
                f"--corpus {item}: no such file or folder, and not a Data Hub dataset ({exc})"
            ) from None
        paths += [str(p) for p in ds.shards]
        lineage.setdefault("datasets", []).append(ds.ref)
    lineage["files"] = [{"path": str(p), "sha256": file_sha256(p)} for p in expand_paths(paths)]
    skips = SkipLog()
    texts = [d.text for d in read_documents(paths, skips, text_field)]
    if not texts:
        raise VocabError(
            f"--corpus {', '.join(spec)} holds no documents"
            + (f" ({skips.summary()})" if skips.skips else "")
        )
    return texts, lineage


def extend_model(spec: ExtendSpec, progress: bool = True) -> ExtendResult:
    """Extend BASE's tokenizer on the corpus, grow and initialise the model, measure, save.

    Writes a plain HF directory at ``spec.out`` with steep.json lineage and
    ``vocab_report.json`` (fertility of old and new tokenizer, initial bits per byte of
    each initialisation), and prints the same as a table.
    """

    say = print if progress else (lambda *a, **k: None)
    started = time.time()
    if spec.init not in INITS:
        raise VocabError(f"--init must be one of {', '.join(INITS)}, got {spec.init!r}")
    texts, corpus_lineage = read_corpus(spec.corpus, spec.text_field)
    where = ", ".join(spec.corpus)
    if spec.heldout:
        train_texts = texts
        heldout, _ = read_corpus(spec.heldout, spec.text_field)
    else:
        train_texts = [t for t in texts if not is_heldout(t, spec.heldout_fraction)]
        heldout = [t for t in texts if is_heldout(t, spec.heldout_fraction)]
        if not heldout:
            raise VocabError(
                f"--corpus {where}: its held-out split ({spec.heldout_fraction:g} of "
                f"{len(texts)} documents) is empty; give --heldout FILES"
            )
    langs = check_language(train_texts, spec.lang, where) if spec.lang else {}

    cfg = ModelSection(base=spec.base)
    base = load_base(cfg, steep_home())
    old_tok = base.tokenizer
    backend_json(old_tok)  # fail on the tokenizer type before reading the corpus twice
    say(f"learning {spec.add:,} tokens from {len(train_texts):,} documents ...", flush=True)
    ext = extend_tokenizer(old_tok, train_texts, spec.add, spec.min_frequency, where)

    report: dict[str, Any] = {
        "base": spec.base,
        "corpus": corpus_lineage,
        "added": len(ext.new_tokens),
        "merges_added": len(ext.merges),
        "merges_reusing_old_tokens": ext.reused,
        "heldout_documents": len(heldout),
        "fertility": {"old": fertility(old_tok, heldout), "new": fertility(ext.tokenizer, heldout)},
        "usage": new_token_usage(ext, heldout),
        "examples": [_readable(t) for t in list(ext.new_tokens.values())[:20]],
    }
    eval_texts = _first_chars(heldout, spec.eval_chars)
    bpb: dict[str, float] = {}
    if spec.eval_chars > 0:
        say("initial bits per byte on held-out text ...", flush=True)
        bpb["base"] = _safe_bpb(base.model, old_tok, eval_texts, spec.seq_len)
    inits = [spec.init] + ([i for i in INITS if i != spec.init] if spec.compare_inits else [])
    chosen: PreTrainedModel | None = None
    for init in inits:
        model = (
            base.model
            if init == spec.init and not spec.compare_inits
            else copy.deepcopy(base.model)
        )
        grow_embeddings(model, old_tok, ext.new_tokens, init, spec.seed)
        if spec.eval_chars > 0:
            bpb[init] = _safe_bpb(model, ext.tokenizer, eval_texts, spec.seq_len)
        if init == spec.init:
            chosen = model
        else:
            del model
    assert chosen is not None
    report["initial_bpb"] = bpb
    report["eval_characters"] = sum(len(t) for t in eval_texts)
    if langs:
        report["corpus_languages"] = langs

    names = base_names(cfg) or base.info.get("lineage", {}).get("base_names", [])
    peak: dict[str, Any] | None = None
    if spec.base_max_lr is not None:
        peak = {"value": spec.base_max_lr, "source": "--base-max-lr"}
    else:
        try:
            lr, source = published_peak(*names)
            peak = {"value": lr, "source": source}
        except UnknownBaseLR:
            pass
    lineage = Lineage(
        kind="vocab_extension",
        steep_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        base=base.info,
        base_names=names,
        base_peak_lr=peak,
        corpus=corpus_lineage,
        vocab_extension={
            "added": len(ext.new_tokens),
            "init": spec.init,
            "old_vocab_size": len(old_tok),
            "first_new_id": ext.first_new_id,
            "new_vocab_size": len(ext.tokenizer),
            "min_frequency": spec.min_frequency,
            "learnt_merges": ext.learnt,
            "lang": spec.lang,
        },
        report=report,
    )
    out = save_hf(chosen, ext.tokenizer, spec.out, lineage)
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    say(format_report(report))
    say(f"model: {out} ({(time.time() - started) / 60:.1f} min)")
    return ExtendResult(out, report)
