"""docs/architecture.md names every module, and its layer list is the one test_layers checks
(#28 item 11): a module added without a word in the map fails here.

The convention: a package's row in the "Packages" table (first cell `` `train/` ``) names
each of its modules in backticks by file name without ``.py`` (`` `loop` ``); a subpackage
is named `` `runfolder/` `` in its parent's row, and its modules there too (`` `create` ``
or `` `runfolder/create` ``); a module at the top of ``steep`` has its own row
(`` `errors.py` ``).
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.test_layers import MODULES, RANK, TOP

MAP = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def _section(title: str) -> str:
    text = MAP.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _rows() -> dict[str, set[str]]:
    """First cell of each row of the Packages table -> the backticked names in the row."""
    rows = {}
    for line in _section("Packages").splitlines():
        cells = line.split("|")
        if len(cells) < 3 or not cells[1].strip().startswith("`"):
            continue
        rows[cells[1].strip().strip("`")] = set(re.findall(r"`([^`]+)`", line))
    return rows


def _unnamed() -> list[str]:
    rows = _rows()
    missing = []
    for module in sorted(MODULES):
        parts = module.split(".")[1:]
        if not parts or parts[0] in TOP:
            continue
        if len(parts) == 1:  # steep/errors.py or a package's __init__
            if f"{parts[0]}.py" not in rows and f"{parts[0]}/" not in rows:
                missing.append(module)
            continue
        names = rows.get(f"{parts[0]}/")
        if names is None:
            missing.append(f"{module} (no row `{parts[0]}/`)")
            continue
        *subs, leaf = parts[1:]
        if MODULES[module].name == "__init__.py":  # a subpackage: `runfolder/`
            needed = [f"{s}/" for s in parts[1:]]
        else:
            needed = [f"{s}/" for s in subs]
            if leaf not in names and "/".join(parts[1:]) not in names:
                needed.append(leaf)
        if any(n not in names for n in needed):
            missing.append(module)
    return missing


def test_every_module_is_named_in_the_map() -> None:
    missing = _unnamed()
    assert not missing, (
        "modules docs/architecture.md does not name (add each, in backticks, to its "
        "package's row of the Packages table, with what it does):\n  " + "\n  ".join(missing)
    )


def test_every_row_of_the_map_is_a_package_or_module() -> None:
    names = {m.split(".")[1] for m in MODULES if "." in m}
    stale = [first for first in _rows() if first.removesuffix("/").removesuffix(".py") not in names]
    assert not stale, f"rows of the Packages table with no such package or module: {stale}"


def test_the_layer_list_is_the_one_the_layer_test_checks() -> None:
    """The numbered list under "The layer rule", bottom to top, against test_layers.LAYERS."""
    doc_rank = {}
    for line in _section("The layer rule").splitlines():
        m = re.match(r"(\d+)\. (.*)", line)
        if m:
            for name in re.findall(r"`([^`/]+)/?`", m.group(2).split("(")[0]):
                doc_rank[name] = int(m.group(1))
    assert set(doc_rank) == set(RANK), f"layer list vs test_layers: {set(doc_rank) ^ set(RANK)}"
    for a in RANK:
        for b in RANK:
            if RANK[a] < RANK[b]:
                assert doc_rank[a] <= doc_rank[b], f"the map puts {a} above {b}"
            if RANK[a] == RANK[b]:
                assert doc_rank[a] == doc_rank[b], f"the map splits {a} and {b} apart"
