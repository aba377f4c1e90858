"""Did the data change between a checkpoint and its resume?

A tokenized source's cache folder is named by a key over its input bytes (or dataset
version), the tokenizer, the separator and the split: the same name means the same tokens.
Each checkpoint records those names and the input files' hashes; a resume that finds
others refuses, naming what changed, because continuing would train the rest of the run
on other data, move the held-out sets under the step-0 baseline and leave a lineage that
names only the new files. ``--allow-data-change`` continues on purpose: the change, its
step and the baseline re-measured on the new held-out sets go into the checkpoint state
and the model's lineage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from steep.errors import DataError
from steep.train.checkpoint import checkpoint_dirs


class DataChangedError(DataError):
    """A resume found other data than its checkpoint trained on."""


def identity(info: dict[str, Any], cache_name: str) -> dict[str, Any]:
    """What names a tokenized source's content: its cache folder, files and tokenizer."""
    return {
        "cache": cache_name,
        "dataset": (info.get("dataset") or {}).get("ref"),
        "files": {f["path"]: f.get("sha256") for f in info.get("files", [])},
        "tokenizer": (info.get("tokenizer") or {}).get("sha256"),
    }


def describe_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One line per source or eval set whose content differs (empty: the same data)."""
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old is None or new is None:
            lines.append(f"'{name}' was {'added' if old is None else 'removed'}")
            continue
        if old["cache"] == new["cache"]:
            continue
        what = []
        if old.get("tokenizer") != new.get("tokenizer"):
            what.append("the tokenizer changed")
        if old.get("dataset") != new.get("dataset"):
            what.append(f"dataset {old.get('dataset')} -> {new.get('dataset')}")
        for path in sorted(set(old["files"]) | set(new["files"])):
            a, b = old["files"].get(path), new["files"].get(path)
            if a != b:
                if a is None or b is None:
                    what.append(f"{path} {'added' if a is None else 'removed'}")
                else:
                    what.append(f"{path} sha256 {str(a)[:12]} -> {str(b)[:12]}")
        lines.append(f"'{name}': {', '.join(what) or 'tokenized differently'}")
    return lines


def refusal(checkpoint: str, lines: list[str]) -> DataChangedError:
    return DataChangedError(
        f"the data changed since checkpoint {checkpoint}: {'; '.join(lines)}. Resume on the "
        "data it trained on, or pass --allow-data-change to go on with the new data (the "
        "change and a re-measured baseline are recorded)"
    )


def check_drift(
    root: Path, now: dict[str, Any], allow: bool, sources_may_change: bool = False
) -> dict[str, Any] | None:
    """None when the data is what the newest checkpoint trained on (or it predates the
    record); raises when it is not, unless ``allow``; then what changed.
    ``sources_may_change`` (``--allow-mixture-change``): a source added or removed is a
    change of the mix (``steep.train.mixcontrol``), not of a kept source's data."""
    dirs = checkpoint_dirs(root)
    if not dirs:
        return None
    before = json.loads((dirs[-1] / "state.json").read_text()).get("data")
    if before is not None and sources_may_change:
        before = {k: v for k, v in before.items() if k in now or k.startswith("eval:")}
        now = {k: v for k, v in now.items() if k in before or k.startswith("eval:")}
    lines = describe_changes(before, now) if before is not None else []
    if not lines:
        return None
    if not allow:
        raise refusal(dirs[-1].name, lines)
    print(f"warning: going on with changed data ({'; '.join(lines)}); the baseline is "
          "measured again on the new held-out sets", file=sys.stderr)  # fmt: skip
    return {"changed": lines, "before": before, "after": now}
