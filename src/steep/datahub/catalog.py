"""Named, versioned, explained datasets under ``$STEEP_HOME/datasets``.

A version is a folder that never changes once written::

    datasets/<name>/v<N>/
        manifest.json        what it is: inputs and hashes, counts, languages, how it was made
        shards/*.parquet     documents (id, text, meta) -- see steep.datahub.steps.base
        exclusions/*.parquet every document dropped, changed or skipped, with step and reason

It is built in a hidden sibling folder and renamed into place, so a crash leaves either
the whole version or nothing (plus a partial folder a rerun can resume from).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steep.artifacts.manifest import Manifest, read_manifest
from steep.errors import SteepError
from steep.workspace import (
    MANIFEST_FILE,
    PLACEMENT_FILE,
    Workspace,
    parse_version_dir,
    plain_name_problem,
    version_dir_name,
)

MANIFEST = MANIFEST_FILE
PUBLISH_TRIES = 100  # versions another process may publish while this one renames


class CatalogError(SteepError, ValueError):
    """A dataset name, version or folder a user asked for does not work (and why)."""


@dataclass(frozen=True)
class DatasetRef:
    name: str
    version: int | None  # None: the latest

    @classmethod
    def parse(cls, text: str) -> DatasetRef:
        name, _, version = text.partition("@")
        check_name(name)
        if not version:
            return cls(name, None)
        digits = version.removeprefix("v")
        if not digits.isdigit() or int(digits) < 1:
            raise CatalogError(f"{text!r}: version must be a number >= 1, as in {name}@2")
        return cls(name, int(digits))

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"


def check_name(name: str) -> str:
    problem = plain_name_problem(name, "dataset name")  # the rule configs check too
    if problem:
        raise CatalogError(problem)
    return name


@dataclass(frozen=True)
class DatasetVersion:
    name: str
    version: int
    path: Path
    manifest: dict[str, Any]  # manifest.json as checked by steep.artifacts.manifest.Manifest

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def shards(self) -> list[Path]:
        return sorted((self.path / "shards").glob("*.parquet"))

    @property
    def exclusions(self) -> list[Path]:
        return sorted((self.path / "exclusions").glob("*.parquet"))


class Catalog:
    """The datasets folder: look up, list and create versions."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Workspace.current().datasets

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        found = []
        for p in folder.iterdir():
            version = parse_version_dir(p.name)
            if version is not None and p.is_dir() and (p / MANIFEST).is_file():
                found.append(version)
        return sorted(found)

    def get(self, ref: str | DatasetRef) -> DatasetVersion:
        ref = DatasetRef.parse(ref) if isinstance(ref, str) else ref
        versions = self.versions(ref.name)
        if not versions:
            known = ", ".join(self.names()) or "none yet (steep data add NAME PATH...)"
            raise CatalogError(f"no dataset named {ref.name!r}; datasets: {known}")
        version = ref.version or versions[-1]
        if version not in versions:
            raise CatalogError(
                f"{ref.name} has no version {version}; versions: {', '.join(map(str, versions))}"
            )
        path = self.root / ref.name / version_dir_name(version)
        return DatasetVersion(ref.name, version, path, read_manifest(path).dump())

    def next_version(self, name: str) -> int:
        versions = self.versions(check_name(name))
        return (versions[-1] + 1) if versions else 1

    def staging(self, name: str, key: str) -> Path:
        """A partial folder for building the next version; the same key finds it again."""
        path = self.root / check_name(name) / f".partial-{key}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(
        self, name: str, staging: Path, manifest: dict[str, Any], executor: Any = None
    ) -> DatasetVersion:
        """Write the manifest and rename the staging folder to the next version number.

        ``executor``'s record of which host ran each unit goes beside the manifest
        (``placement.json``), not in it: the manifest says what the data is, the same on
        any cluster.

        Versions are appends: when another process published that number first (two
        different prepares of one dataset at once), this one takes the number after it.
        """
        for scratch in ("work",):
            shutil.rmtree(staging / scratch, ignore_errors=True)
        placement = getattr(executor, "placement", None)
        if placement is not None:
            write_json(staging / PLACEMENT_FILE, placement.record())
        for _ in range(PUBLISH_TRIES):
            version = self.next_version(name)
            checked = Manifest.model_validate(
                {
                    "name": name,
                    "version": version,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    **manifest,
                }
            )
            write_json(staging / MANIFEST, checked.dump())
            target = self.root / name / version_dir_name(version)
            try:
                os.rename(staging, target)  # fails if another process published v<N> first
                break
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not target.is_dir():
                    raise CatalogError(
                        f"could not publish {name}@{version} at {target}: {exc}"
                    ) from exc
        else:
            raise CatalogError(
                f"could not publish {name}: {PUBLISH_TRIES} versions taken meanwhile"
            )
        # no call up to the hub: its sync asks this catalog on every query, so the new
        # version is listed at the next one
        return self.get(DatasetRef(name, version))


def write_json(path: Path, data: Any) -> None:
    """Write JSON via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
