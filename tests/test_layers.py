"""The layer rule (docs/architecture.md), read from the import graph of src/steep.

Bottom to top: errors, workspace, artifacts, config; then data, datahub, model; then train
and eval; then hub; then sweep, launch, studio, demos and cli. A module may import its own
layer or a lower one, never a higher one; packages of one layer import each other without
cycles; and an import inside a function (deferred) is allowed only with a comment saying
why (a heavy or optional library, or a cli command keeping ``steep --help`` light).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "steep"

LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("workspace",),
    ("artifacts",),
    ("config",),
    ("plan",),
    ("data", "datahub", "model"),
    ("train", "eval"),
    ("hub",),
    ("sweep", "launch", "studio", "demos", "cli"),
]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
TOP = {"__init__", "__main__"}  # steep/__init__ (version) and python -m steep
MAX_LINES = 500
MAX_FUNCTION_LINES = 150  # a function longer than this does several jobs: name each one


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, int, bool, str]]:
    """(imported steep module, line, deferred?, source line) for every import of steep."""
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import module` imports that module; `from steep import __version__`
            # names steep itself
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [s if s in MODULES else node.module for s in subs]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            found.append((name, node.lineno, node.col_offset > 0, lines[node.lineno - 1]))
    return found


def _type_only(tree: ast.AST) -> set[int]:
    """Line numbers of imports under ``if TYPE_CHECKING:`` (never run)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    lines.add(sub.lineno)
    return lines


def _commented(path: Path, lineno: int) -> bool:
    lines = path.read_text(encoding="utf-8").splitlines()
    here = lines[lineno - 1]
    above = lines[lineno - 2].strip() if lineno > 1 else ""
    return "#" in here or above.startswith("#")


MODULES = _modules()


def test_every_package_has_a_layer() -> None:
    packages = {_package(m) for m in MODULES} - TOP
    assert packages <= set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"


def test_no_module_imports_a_higher_layer() -> None:
    bad = []
    for module, path in MODULES.items():
        pkg = _package(module)
        if pkg in TOP:
            continue
        for name, lineno, _, _ in _imports(path):
            if not name.startswith("steep.") and name != "steep":
                continue
            target = _package(name)
            if target in TOP or target not in RANK:
                continue
            if RANK[target] > RANK[pkg]:
                bad.append(f"{path.relative_to(SRC.parent)}:{lineno} {pkg} -> {target}")
    assert not bad, "imports of a higher layer:\n" + "\n".join(bad)


def test_packages_do_not_import_each_other_in_a_cycle() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        pkg = _package(module)
        for name, _, _, _ in _imports(path):
            if name.startswith("steep.") and _package(name) not in TOP | {pkg}:
                graph[pkg].add(_package(name))

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(p for p in list(graph) if p in reach(p))
    assert not cycles, f"packages in an import cycle: {cycles} ({dict(graph)})"


def test_modules_do_not_import_each_other_in_a_cycle() -> None:
    """Every import of a steep module is an edge: at the top, inside a function (a cycle
    dodged by deferring one side is still two modules that need each other, #28 item 11)
    and under ``TYPE_CHECKING`` (a type that points back up is the same knot)."""
    graph = {
        m: {n for n, _, _, _ in _imports(p) if n in MODULES and n != m and not n.endswith("steep")}
        for m, p in MODULES.items()
    }

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    reached = {m: reach(m) for m in graph}
    knots = {
        tuple(sorted(x for x in reached[m] if m in reached[x])) for m in graph if m in reached[m]
    }
    assert not knots, "modules that import each other in a cycle: " + "; ".join(
        " <-> ".join(k) for k in sorted(knots)
    )


def test_deferred_imports_say_why() -> None:
    bad = []
    for path in MODULES.values():
        for name, lineno, deferred, _ in _imports_all(path):
            if deferred and not _commented(path, lineno):
                bad.append(f"{path.relative_to(SRC.parent)}:{lineno} import {name}")
    assert not bad, (
        "imports inside functions need a comment saying why (heavy or optional "
        "dependency):\n" + "\n".join(bad)
    )


def _imports_all(path: Path) -> list[tuple[str, int, bool, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    out = []
    skip = _type_only(tree)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            out.append((node.module or ".", node.lineno, node.end_lineno, node.col_offset > 0))
        elif isinstance(node, ast.Import):
            out.append((node.names[0].name, node.lineno, node.end_lineno, node.col_offset > 0))
    # a block of deferred imports shares the comment of its first line
    out.sort(key=lambda x: x[1])
    merged, prev_end, prev_ok = [], -10, False
    for name, lineno, end, deferred in out:
        if deferred and lineno == prev_end + 1 and prev_ok:
            merged.append((name, lineno, False, ""))  # covered by the block's comment
        else:
            merged.append((name, lineno, deferred, ""))
            prev_ok = deferred and _commented(path, lineno)
        prev_end = end
    return merged


def test_modules_are_small() -> None:
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in MODULES.items()}
    big = {m: n for m, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by job): {big}"


def test_functions_are_short() -> None:
    """No def (nested ones included) runs over MAX_FUNCTION_LINES, counted from its ``def``
    line to its last line: the training loop once ran 323 lines in one body."""
    long = {}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{module}.{node.name}:{node.lineno}"] = lines
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them by job): {long}"


def test_steep_help_does_not_load_torch() -> None:
    """Building the parser (``steep --help``, every command's start) imports no torch,
    transformers or ray: the cli modules defer their feature imports."""
    import subprocess
    import sys

    code = (
        "import sys; from steep.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
