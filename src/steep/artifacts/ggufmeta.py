"""A GGUF file's metadata and tensor names, read with gguf-py's reader: one reader for
``steep plan`` (a GGUF base's shape), the base model's names (its peak LR) and an export's
record. gguf-py is imported only here, and only when a GGUF file is read.

gguf-py decodes every field up front, the tokenizer's vocabulary and merges included: 2-5 s
for SmolLM2-135M on a 2-core CPU, and the studio's form and ``steep validate`` ask on every
check. A file is immutable for a given (path, size, mtime), so its small fields and tensor
names are kept: in this process, and as JSON under ``STEEP_HOME/cache/gguf-meta`` for the
next process. A long array (the vocabulary) is not kept; asking for one reads the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from steep.artifacts.atomic import write_text
from steep.workspace import Workspace

CACHE_VERSION = 1
_SHORT = 64  # arrays up to this length are kept in the cache; longer ones are read on demand


class GgufMetadata:
    """``get(key)`` a metadata value as Python (None when absent or unreadable) and
    ``tensors``, the tensor names, of one GGUF file; small values come from the cache."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        stat = self.path.stat()
        kept, long_keys, tensors = _kept(str(self.path.resolve()), stat.st_size, stat.st_mtime_ns)
        self._kept: dict[str, Any] = kept
        self._long: frozenset[str] = long_keys
        self.tensors: list[str] = list(tensors)

    def get(self, key: str) -> Any:
        if key in self._kept:
            return self._kept[key]
        if key not in self._long:
            return None
        return _value(_reader(self.path).fields.get(key))


def _reader(path: Path) -> Any:
    from gguf import GGUFReader  # deferred: gguf-py only where a GGUF file is read

    return GGUFReader(str(path))


def _value(field: Any) -> Any:
    try:
        return field.contents() if field is not None else None
    except Exception:  # a malformed or unexpected field type: as if absent
        return None


@lru_cache(maxsize=16)
def _kept(path: str, size: int, mtime_ns: int) -> tuple[dict[str, Any], frozenset[str], tuple]:
    """(small fields, names of long ones, tensor names) of the file at this size and mtime."""
    key = hashlib.sha256(f"{CACHE_VERSION}\0{path}\0{size}\0{mtime_ns}".encode()).hexdigest()
    cached = Workspace.current().gguf_meta / f"{key[:32]}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        data = json.loads(cached.read_text())
        return data["kept"], frozenset(data["long"]), tuple(data["tensors"])
    reader = _reader(Path(path))
    kept: dict[str, Any] = {}
    long_keys: list[str] = []
    for name, field in reader.fields.items():
        if len(field.data) > _SHORT:
            long_keys.append(name)
            continue
        value = _value(field)
        if value is not None and _json_safe(value):
            kept[name] = value
    tensors = tuple(t.name for t in reader.tensors)
    with contextlib.suppress(OSError):  # a read-only workspace: no cache, still correct
        os.makedirs(cached.parent, exist_ok=True)
        write_text(cached, json.dumps({"kept": kept, "long": long_keys, "tensors": tensors}))
    return kept, frozenset(long_keys), tensors


def _json_safe(value: Any) -> bool:
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False
