"""A Data Hub version's ``manifest.json``: what the dataset is and how it was made.

Written once by ``steep.datahub.catalog.Catalog.publish`` (ingest, prepare, mine) and read
by the catalog, the hub, training and ``steep data show``. ``format_version`` 1; unknown
fields are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from steep.artifacts.validate import validate
from steep.errors import SteepError
from steep.workspace import MANIFEST_FILE

FORMAT = "steep-dataset"
FORMAT_VERSION = 1


class ManifestError(SteepError):
    """A manifest.json that cannot be read; names the file and the field."""


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class FunnelStep(_Open):
    """One recipe step: documents and characters in and out, drops by reason, edits."""

    step: str
    params: dict[str, Any] = Field(default_factory=dict)
    docs_in: int | None = None
    docs_out: int | None = None
    chars_in: int | None = None
    chars_out: int | None = None
    dropped: dict[str, int] = Field(default_factory=dict)
    edited: dict[str, int] = Field(default_factory=dict)  # reason -> documents changed


class InputFile(_Open):
    path: str
    sha256: str | None = None
    size: int | None = None
    documents: int | None = None
    skipped: dict[str, int] | int | None = None


class Manifest(_Open):
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    name: str | None = None
    version: int | None = None
    created: str | None = None
    created_by: dict[str, Any] = Field(default_factory=dict)  # command, argv, recipe, ...
    parent: str | None = None  # name@N this version was prepared or mined from
    inputs: list[InputFile] = Field(default_factory=list)
    documents: int = 0
    bytes: int = 0
    languages: dict[str, int] = Field(default_factory=dict)
    skipped: dict[str, int] = Field(default_factory=dict)
    funnel: list[FunnelStep] = Field(default_factory=list)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def read_manifest(version_dir: Path) -> Manifest:
    path = Path(version_dir) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: unreadable: {exc}") from None
    return validate(Manifest, data, str(path), ManifestError)


def manifest_text(manifest: Manifest) -> str:
    return json.dumps(manifest.dump(), indent=2, ensure_ascii=False) + "\n"
