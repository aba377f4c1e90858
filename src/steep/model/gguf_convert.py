"""HF folder -> GGUF with llama.cpp's own converter, and llama.cpp's quantizer for the rest.

steep writes no GGUF itself: the tensor names, head permutations and tokenizer metadata
that llama.cpp and Ollama expect change with every llama.cpp release, and only its own
``convert_hf_to_gguf.py`` keeps up. That script ships in the sdist of the pinned
llama-cpp-python release (not in its wheel), so the first export downloads that sdist with
pip and keeps the converter (the script, its ``conversion`` package and its own
``gguf-py``) under ``$STEEP_HOME/cache/tools/``. The converter runs as a child process with
this Python, so its ``gguf-py`` never mixes with the ``gguf`` steep itself imports.

The converter writes f32, f16, bf16 and q8_0 directly; the other llama.cpp types
(q4_k_m, ...) are quantized from its f16 output by ``llama_model_quantize`` through
llama-cpp-python's bindings.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from steep.artifacts.atomic import aside_dir
from steep.errors import SteepError
from steep.workspace import Workspace

LLAMA_CPP_PYTHON = "0.3.36"  # = the gguf extra's pin in pyproject.toml (a test checks)
CONVERTER_ENV = "STEEP_LLAMA_CPP_DIR"  # a llama.cpp checkout to use instead (offline)
CONVERTER = "convert_hf_to_gguf.py"
EXTRA = "pip install 'steep[gguf]'"
DIRECT = ("f16", "bf16", "f32", "q8_0")  # what convert_hf_to_gguf.py writes itself
# what llama.cpp's quantizer makes from f16 without an importance matrix
QUANTIZED = ("q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k_s", "q3_k_m", "q3_k_l")
QUANTIZED += ("q4_k_s", "q4_k_m", "q5_k_s", "q5_k_m", "q6_k")
_SDIST_MEMBERS = (CONVERTER, "conversion/", "gguf-py/", "LICENSE")


class GgufError(SteepError):
    """A GGUF export that cannot be done; the message says why and what would work."""


def check_quant(quant: str) -> None:
    """Refuse an unknown type, or one whose libraries are missing, before any work."""
    if quant not in DIRECT + QUANTIZED:
        raise GgufError(
            f"unknown GGUF quantization {quant!r}: use {', '.join(DIRECT)} (llama.cpp's "
            f"converter) or {', '.join(QUANTIZED)} (llama.cpp's quantizer)"
        )
    if not _importable("sentencepiece"):  # the converter imports it for every Llama vocab
        raise GgufError(f"GGUF export needs llama.cpp's converter and its libraries: {EXTRA}")
    if quant in QUANTIZED and not _importable("llama_cpp"):
        raise GgufError(
            f"--quant {quant} needs llama.cpp's quantizer from llama-cpp-python ({EXTRA}); "
            f"without it steep writes {', '.join(DIRECT)}"
        )


def _importable(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: blocked, as a missing module
    return importlib.util.find_spec(module) is not None


def llama_cpp_release() -> str:
    """The llama-cpp-python version whose converter to use: the installed one, else the pin."""
    try:
        return importlib.metadata.version("llama-cpp-python")
    except importlib.metadata.PackageNotFoundError:
        return LLAMA_CPP_PYTHON


def converter_dir(home: Path) -> Path:
    """A folder holding ``convert_hf_to_gguf.py`` with its ``conversion/`` and ``gguf-py/``:
    ``$STEEP_LLAMA_CPP_DIR``, else the cached copy, else fetched from the release's sdist."""
    if env := os.environ.get(CONVERTER_ENV):
        folder = Path(env).expanduser()
        if not (folder / CONVERTER).is_file():
            raise GgufError(f"{CONVERTER_ENV}={env} has no {CONVERTER} (a llama.cpp checkout)")
        return folder
    ws, release = Workspace(home), llama_cpp_release()
    folder = ws.tools / f"llama-cpp-python-{release}"
    if (folder / CONVERTER).is_file():
        return folder
    sdist = _sdist(ws.downloads, release)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = aside_dir(folder)
    try:
        _extract_converter(sdist, tmp)
        os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / CONVERTER).is_file():  # not another process finishing first
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _sdist(downloads: Path, release: str) -> Path:
    """The llama-cpp-python sdist of ``release``: kept in downloads/, else fetched by pip."""
    found = sorted(downloads.glob(f"llama_cpp_python-{release}.tar.gz"))
    if found:
        return found[0]
    downloads.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:all:"]
    cmd += ["--quiet", "-d", str(downloads), f"llama-cpp-python=={release}"]
    print(f"fetching llama.cpp's converter (llama-cpp-python {release} sdist) ...", flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(downloads.glob(f"llama_cpp_python-{release}.tar.gz"))
    if done.returncode != 0 or not found:
        why = _last_line(done.stderr) or f"pip exited {done.returncode}"
        raise GgufError(
            f"cannot fetch llama.cpp's converter (llama-cpp-python=={release} sdist) into "
            f"{downloads}: {why}; put that .tar.gz there, or set {CONVERTER_ENV} to a "
            "llama.cpp checkout"
        )
    return found[0]


def _extract_converter(sdist: Path, dest: Path) -> None:
    with tarfile.open(sdist) as tar:
        top = tar.getmembers()[0].name.split("/")[0]
        prefix = f"{top}/vendor/llama.cpp/"
        members = []
        for m in tar.getmembers():
            rel = m.name.removeprefix(prefix)
            if m.name.startswith(prefix) and rel.startswith(_SDIST_MEMBERS):
                m.name = rel
                members.append(m)
        tar.extractall(dest, members=members, filter="data")
    if not (dest / CONVERTER).is_file():
        raise GgufError(f"{sdist} holds no vendor/llama.cpp/{CONVERTER}")


def convert(model_dir: Path, out_file: Path, quant: str, name: str, home: Path) -> str:
    """Write ``model_dir`` as ``out_file`` (a path the caller discards on failure); returns
    which tools did it, for the lineage."""
    check_quant(quant)
    converter = converter_dir(home)
    outtype = quant if quant in DIRECT else "f16"
    first = out_file if quant in DIRECT else out_file.with_name(f"{out_file.name}.f16")
    cmd = [sys.executable, str(converter / CONVERTER), str(model_dir), "--outfile", str(first)]
    cmd += ["--outtype", outtype, "--model-name", name]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        why = _converter_error(done.stderr or done.stdout)
        if "pre-tokenizer was not recognized" in why:
            why += (
                " (llama.cpp recognises a BPE tokenizer by the ids it gives a test text: "
                "those of published models; a changed or home-made one has no entry)"
            )
        raise GgufError(f"llama.cpp's converter could not convert {name} ({model_dir}): {why}")
    release = llama_cpp_release()
    where = f"llama-cpp-python {release}" if CONVERTER_ENV not in os.environ else str(converter)
    tools = f"llama.cpp's {CONVERTER} from {where}"
    if quant in QUANTIZED:
        try:
            quantize(first, out_file, quant)
        finally:
            first.unlink(missing_ok=True)
        tools += f", then llama_model_quantize (llama-cpp-python {release})"
    return tools


def quantize(src: Path, dst: Path, quant: str) -> None:
    """llama.cpp's own quantizer (what its llama-quantize tool runs), from f16."""
    import llama_cpp  # deferred: optional (the gguf extra) and only for these types

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}")
    params.nthread = os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(
        str(src).encode(), str(dst).encode(), ctypes.byref(params)
    )
    if code != 0 or not dst.is_file():
        raise GgufError(f"llama.cpp's quantizer failed on {src.name} -> {quant} (code {code})")


def _converter_error(output: str) -> str:
    """The converter's reason in one line: its last ERROR line, else the exception line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    if errors:
        return errors[-1].split(":", 2)[-1].strip()
    return _last_line(output) or "no message"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
