"""The demo's two offline corpora, built from what a package registry can give.

Domain: the Python standard library's own documentation (module, class and function
docstrings, read with ``ast`` so nothing is imported, plus ``pydoc_data.topics``).
General replay: the English Wikipedia articles shipped as test data in the gensim wheel.
Independent general eval set: the 300 ABC news articles of the Lee corpus from the same
wheel, text the run never trains on, so forgetting is measured off the replay distribution.
Both are written once as jsonl with a sidecar saying what they hold; later calls reuse them.
"""

from __future__ import annotations

import ast
import bz2
import hashlib
import io
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from steep.data.formats import wiki
from steep.data.formats.base import Extracted
from steep.errors import SteepError

GENSIM_SPEC = "gensim==4.4.0"
NEWS_MEMBER = "gensim/test/test_data/lee_background.cor"  # one article per line, Latin-1
WIKI_MEMBER = (
    "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
)
# Parts of the stdlib that are tests, tools or vendored code rather than documentation.
_SKIP_PARTS = {
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "site-packages",
    "dist-packages",
    "turtledemo",
}
MIN_DOC_CHARS = 200
MIN_ARTICLE_CHARS = 500


class CorpusError(SteepError):
    """A demo corpus could not be built (and what to do about it)."""


@dataclass(frozen=True)
class CorpusInfo:
    path: Path
    documents: int
    characters: int
    sha256: str


# ---------------------------------------------------------------- Python docs


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    try:
        return ast.unparse(node.args)
    except Exception:  # pragma: no cover - unparse handles every valid tree
        return "..."


def _module_text(source: str, module: str) -> str | None:
    """One document per module: its docstring, then each documented class and function."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    parts: list[str] = []
    doc = ast.get_docstring(tree)
    if doc:
        parts.append(f"Module {module}\n\n{doc}")

    def visit(body: Iterable[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(f"class {prefix}{node.name}\n\n{doc}")
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.name.startswith("_") and node.name != "__init__":
                    continue
                doc = ast.get_docstring(node)
                if doc:
                    parts.append(f"def {prefix}{node.name}({_signature(node)})\n\n{doc}")

    visit(tree.body, "")
    return "\n\n".join(parts) if parts else None


def _stdlib_modules(stdlib: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(stdlib.rglob("*.py")):
        rel = path.relative_to(stdlib)
        if any(part in _SKIP_PARTS or part.startswith("test_") for part in rel.parts):
            continue
        name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        yield name, path


def python_docs(stdlib: Path | None = None) -> Iterator[str]:
    """Documents of the standard library at ``stdlib`` (default: this interpreter's)."""
    stdlib = stdlib or Path(sysconfig.get_paths()["stdlib"])
    for module, path in _stdlib_modules(stdlib):
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        text = _module_text(source, module)
        if text and len(text) >= MIN_DOC_CHARS:
            yield text
    try:
        from pydoc_data.topics import topics  # deferred: a 2 MB module only the demo corpus reads
    except ImportError:  # some distributions strip pydoc_data
        return
    for key in sorted(topics):
        text = topics[key].strip()
        if len(text) >= MIN_DOC_CHARS:
            yield text


# ---------------------------------------------------------------- Wikipedia


def _download_gensim(cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache_dir.glob("gensim-4.4.0-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["--quiet", "-d", str(cache_dir), GENSIM_SPEC]
        print(f"downloading the {GENSIM_SPEC} wheel for its Wikipedia test data ...")
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(cache_dir.glob("gensim-4.4.0-*.whl"))
        if done.returncode != 0 or not wheels:
            raise CorpusError(
                f"could not download {GENSIM_SPEC} from the package index into {cache_dir}:\n"
                f"{done.stderr.strip()[-2000:]}\n"
                "Put a gensim 4.4.0 wheel in that folder by hand to build the demo offline."
            )
    return wheels[-1]


def wikipedia_articles(dump_bz2: bytes) -> Iterator[str]:
    """Plain text of each main-namespace, non-redirect article in a MediaWiki XML dump, read
    by the Data Hub's own dump reader (``steep.data.formats.wiki``), the title first."""
    for item in wiki.pages(io.BytesIO(bz2.decompress(dump_bz2))):
        if isinstance(item, Extracted) and len(item.text) >= MIN_ARTICLE_CHARS:
            title = item.meta.get("title", "")
            yield f"{title}\n\n{item.text}" if title else item.text


def _member(wheel: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(member)
    except (zipfile.BadZipFile, KeyError, OSError) as err:
        raise CorpusError(f"{wheel}: no usable {member} ({err})") from err


def wikipedia_from_wheel(wheel: Path) -> Iterator[str]:
    yield from wikipedia_articles(_member(wheel, WIKI_MEMBER))


def news_from_wheel(wheel: Path) -> Iterator[str]:
    for line in _member(wheel, NEWS_MEMBER).decode("latin-1").splitlines():
        if line.strip():
            yield line.strip()


# ---------------------------------------------------------------- writing


def write_corpus(texts: Iterable[str], path: Path, source: str) -> CorpusInfo:
    """Write ``{"text": ...}`` lines atomically, plus ``<path>.info.json``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    digest = hashlib.sha256()
    documents = characters = 0
    with tmp.open("w", encoding="utf-8") as f:
        for text in texts:
            line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
            f.write(line)
            digest.update(line.encode("utf-8"))
            documents += 1
            characters += len(text)
        f.flush()
        os.fsync(f.fileno())
    if documents == 0:
        tmp.unlink()
        raise CorpusError(f"{source}: no documents found for {path.name}")
    os.replace(tmp, path)
    info = CorpusInfo(path, documents, characters, digest.hexdigest())
    sidecar = {**asdict(info), "path": str(path), "source": source}
    _info_path(path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return info


def _info_path(path: Path) -> Path:
    return path.with_name(path.name + ".info.json")


def _cached(path: Path) -> CorpusInfo | None:
    try:
        meta = json.loads(_info_path(path).read_text())
        if not path.is_file():
            return None
        return CorpusInfo(path, meta["documents"], meta["characters"], meta["sha256"])
    except (OSError, ValueError, KeyError):
        return None


def build_python_docs(out: Path, stdlib: Path | None = None) -> CorpusInfo:
    where = stdlib or Path(sysconfig.get_paths()["stdlib"])
    return write_corpus(python_docs(stdlib), out, f"python {sys.version.split()[0]} at {where}")


def build_wikipedia(out: Path, cache_dir: Path) -> CorpusInfo:
    wheel = _download_gensim(cache_dir)
    return write_corpus(wikipedia_from_wheel(wheel), out, f"{wheel.name}:{WIKI_MEMBER}")


def build_news(out: Path, cache_dir: Path) -> CorpusInfo:
    wheel = _download_gensim(cache_dir)
    return write_corpus(news_from_wheel(wheel), out, f"{wheel.name}:{NEWS_MEMBER}")


def build_demo_corpora(out_dir: Path, cache_dir: Path) -> dict[str, CorpusInfo]:
    """The demo corpora (domain, replay, independent news), built once and reused."""
    out = {}
    for name, build in (
        ("python_docs", lambda p: build_python_docs(p)),
        ("wikipedia", lambda p: build_wikipedia(p, cache_dir)),
        ("news", lambda p: build_news(p, cache_dir)),
    ):
        path = out_dir / f"{name}.jsonl"
        out[name] = _cached(path) or build(path)
    return out
