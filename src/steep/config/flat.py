"""A config dict as dotted keys (``train.steps``, ``data.sources.0.name``): one flattener
for what a resume compares (``train.runfolder.create.differing_keys``) and for the params
a tracker records (``train.trackers``)."""

from __future__ import annotations

from typing import Any


def dotted(tree: dict[str, Any], lists: bool = False, prefix: str = "") -> dict[str, Any]:
    """``{"train": {"steps": 5}}`` -> ``{"train.steps": 5}``. A dict with keys is opened; an
    empty one is a value. With ``lists``, a list of dicts is opened by index too
    (``data.sources.0.name``); without, it stays one value (``data.sources``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(dotted(value, lists, f"{name}."))
        elif lists and _dict_list(value):
            for i, item in enumerate(value):
                out.update(dotted(item, lists, f"{name}.{i}.") if item else {f"{name}.{i}": item})
        else:
            out[name] = value
    return out


def _dict_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
