"""A GGUF file's metadata and tensor names, read with gguf-py's reader: one reader for
``steep plan`` (a GGUF base's shape), the base model's names (its peak LR) and an export's
record. gguf-py is imported only here, and only when a GGUF file is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class GgufMetadata:
    """``get(key)`` a metadata value as Python (None when absent or unreadable) and
    ``tensors``, the tensor names, of one GGUF file; values are decoded when asked for
    (a tokenizer's vocabulary is large)."""

    def __init__(self, path: Path) -> None:
        from gguf import GGUFReader  # deferred: gguf-py only where a GGUF file is read

        reader = GGUFReader(str(path))
        self._fields = reader.fields
        self.tensors = [t.name for t in reader.tensors]

    def get(self, key: str) -> Any:
        field = self._fields.get(key)
        try:
            return field.contents() if field is not None else None
        except Exception:  # a malformed or unexpected field type: as if absent
            return None
