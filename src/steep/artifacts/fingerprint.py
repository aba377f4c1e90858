"""Content hashes that lineage and caches record: a file's bytes, a tokenizer's vocabulary."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    path = Path(path) if isinstance(path, str) else path
    with path.open("rb") as f:  # a Path, or a UPath for a URL (steep.data.locations)
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of the vocabulary (any object with HF's ``get_vocab``): same ids for the same
    strings is what token shards depend on."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    payload = json.dumps(vocab, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
