"""What a base is called and what its steep.json carries, from metadata only and torch-free,
so ``steep validate``, the studio's form and ``steep plan`` check a config without loading
torch or the model (``steep.model.io`` loads it, and re-exports these)."""

from __future__ import annotations

import json
from pathlib import Path

from steep.artifacts.ggufmeta import GgufMetadata
from steep.artifacts.lineage import Lineage, LineageError, read_lineage
from steep.config import ModelSection
from steep.config.locate import ModelLoadError, resolve_base
from steep.workspace import LINEAGE_FILE


def gguf_of(cfg: ModelSection) -> Path | None:
    """The GGUF file a model section names (``model.base`` a .gguf, or a folder plus
    ``model.gguf_file``); None for an HF folder or hub id."""
    if cfg.base is None:
        return None
    base = resolve_base(cfg.base)
    if cfg.gguf_file:
        return Path(base) / cfg.gguf_file
    return Path(base) if base.endswith(".gguf") else None


def lineage_of(path: Path) -> Lineage | None:
    """The base's steep.json, or None; an unreadable one is a load error naming the file."""
    try:
        return read_lineage(path)
    except LineageError as exc:
        raise ModelLoadError(str(exc)) from None


def base_names(cfg: ModelSection) -> list[str]:
    """Names the base goes by, best first, for the peak-LR table; reads metadata only."""
    if cfg.base is None:
        return []
    base = resolve_base(cfg.base)
    path = Path(base)
    if (gguf := gguf_of(cfg)) is not None:
        return gguf_names(gguf) if gguf.is_file() else [gguf.name]
    names: list[str] = []
    if (lineage := lineage_of(path)) is not None:
        names += lineage.base_names
    if (path / "config.json").exists():
        names.append(str(json.loads((path / "config.json").read_text()).get("_name_or_path", "")))
    names.append(base)
    return [n for n in names if n]


def lineage_peak_lr(cfg: ModelSection) -> tuple[float, str] | None:
    """The base's peak LR that a steep-made model's steep.json carries (``base_peak_lr``),
    so a derived model whose own name is in no table (a vocabulary extension of a base given
    --base-max-lr) still resolves lr_fraction."""
    if cfg.base is None:
        return None
    folder = Path(resolve_base(cfg.base))
    lineage = lineage_of(folder) if folder.is_dir() else None
    carried = lineage.base_peak_lr if lineage is not None else None
    if not isinstance(carried, dict) or not carried.get("value"):
        return None
    value = float(carried["value"])
    where = folder / LINEAGE_FILE
    return value, f"base peak {value:g} from {where} ({carried.get('source', 'lineage')})"


def gguf_names(gguf: Path) -> list[str]:
    """Names the GGUF metadata gives the model, best first, for the peak-LR table."""
    meta = GgufMetadata(gguf)

    def get(key: str) -> str:
        value = meta.get(key)
        return "" if value is None else str(value)

    names = []
    if get("general.basename") and get("general.size_label"):
        names.append(f"{get('general.basename')}-{get('general.size_label')}")
    names += [get("general.name"), gguf.name]
    return [n for n in names if n]
