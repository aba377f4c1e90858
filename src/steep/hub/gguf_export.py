"""``steep models export NAME OUT --format gguf``: a registered model for llama.cpp and Ollama.

OUT is a new folder holding ``NAME-QUANT.gguf``, an Ollama ``Modelfile`` that points at it,
and ``steep.json``: the model's own lineage plus an ``export`` block saying which file was
made from which folder, by which converter, with its checksum. The folder is built aside
and renamed at the end, so a failed conversion leaves no half-written OUT.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steep import __version__
from steep.artifacts.atomic import new_folder, write_text
from steep.artifacts.ggufmeta import GgufMetadata
from steep.artifacts.lineage import Lineage, try_read_lineage, write_lineage
from steep.hub.publish import new_export_dest
from steep.model import gguf_convert
from steep.model.io import file_sha256

if TYPE_CHECKING:
    from steep.hub.registry import Hub

MODELFILE = "Modelfile"


def gguf_file_name(name: str, quant: str) -> str:
    return f"{name}-{quant}.gguf"


def export_gguf(hub: Hub, name: str, dest: Path, quant: str = "f16") -> Path:
    """Convert model ``name`` to ``dest/NAME-QUANT.gguf`` (+ Modelfile, steep.json)."""
    gguf_convert.check_quant(quant)  # before any work: a wrong type or missing extra
    info = hub.model(name)
    src, dest = Path(info["path"]), new_export_dest(dest)
    lineage, why = try_read_lineage(src)
    with new_folder(dest) as tmp:
        gguf = tmp / gguf_file_name(name, quant)
        tools = gguf_convert.convert(src, gguf, quant, name, hub.home)
        write_text(tmp / MODELFILE, modelfile(name, gguf.name, quant))
        record = lineage or Lineage()
        record.export = export_record(name, src, gguf, quant, tools)
        if why:
            record.export["lineage_error"] = why  # the model's own steep.json was unreadable
        write_lineage(tmp, record)
    return dest


def export_record(name: str, src: Path, gguf: Path, quant: str, tools: str) -> dict[str, Any]:
    """The ``export`` block of steep.json: what was made, from what, by which tools."""
    meta = GgufMetadata(gguf)
    return {
        "format": "gguf",
        "quant": quant,
        "file": gguf.name,
        "sha256": file_sha256(gguf),
        "bytes": gguf.stat().st_size,
        "architecture": meta.get("general.architecture"),
        "tensors": len(meta.tensors),
        "model": name,
        "model_path": str(src),
        "converter": tools,
        "steep_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def modelfile(name: str, gguf_name: str, quant: str) -> str:
    """Ollama's recipe for the file beside it. No TEMPLATE and no stop words: a
    continued-pretraining model is a base model that completes raw text, which is what
    Ollama does with a model that has no template."""
    return (
        f"FROM ./{gguf_name}\n"
        f"# {name} ({quant}), exported by steep {__version__}: a base model, so no TEMPLATE;\n"
        "# Ollama passes the prompt through as it is and the model continues it.\n"
        f"#   ollama create {name} -f {MODELFILE}\n"
        f'#   ollama run {name} "Once upon a time"\n'
    )
