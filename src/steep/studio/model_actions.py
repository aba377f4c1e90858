"""The command line of each Model Hub action, built once for the job and for the page's hint.

A studio action runs the CLI command itself (``steep.studio.model_jobs``); these functions
say which one, with which arguments, and refuse bad input in one line before a process
starts: an export folder outside the workspace or already there, an unknown GGUF type
(the CLI's own check), a repo id that is not ``org/name``, a generation too large for
this machine's memory (``steep plan``'s arithmetic against the RAM available now).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steep.artifacts.fmt import memory_size
from steep.errors import SteepError
from steep.eval.merge_spec import CHAT_VECTOR, LINEAR, METHODS, MergeSpec, parse_alphas
from steep.hub.publish import EXPORT_FORMATS, new_export_dest
from steep.model.gguf_convert import DIRECT, QUANTIZED, check_quant
from steep.model.passkey_spec import LONG_CONTEXT_FLAGS, parse_lengths
from steep.plan.devices import available_memory_bytes
from steep.plan.memory import generation_bytes
from steep.plan.shapes import from_hf_config
from steep.studio.confine import HUB_ID, inside
from steep.studio.model_jobs import OUT_DIR, PROMPTS_FILE
from steep.workspace import Workspace, plain_name_problem

QUANTS = DIRECT + QUANTIZED  # the types `steep models export --quant` takes
MAX_NEW_TOKENS = 512  # the generate box's ceiling: a try, not a batch job
PASSKEY_HELP = LONG_CONTEXT_FLAGS["--passkey"][
    "help"
]  # the eval form's field says what the flag says


class ActionError(SteepError):
    """An action refused before it starts; the message is one line."""


def eval_argv(model: dict[str, Any], passkey: str = "") -> list[str] | None:
    """``steep eval MODEL`` against the base its steep.json names (the command's default),
    on its run's eval sets: the held-out splits as training read them (``--run-windows``)
    and the extra ``data.eval_sets``; with ``passkey`` (lengths, parsed as the CLI's
    ``--passkey``) passkey retrieval too. None when there is nothing to evaluate on."""
    lineage = model.get("lineage") or {}
    data = (lineage.get("config") or {}).get("data") or {}
    heldout = [s for s in data.get("sources") or [] if (s or {}).get("heldout_fraction")]
    extra = data.get("eval_sets") or {}
    hub_sets = [n for n, v in extra.items() if isinstance(v, dict)]  # {dataset: NAME@N}
    argv = ["eval", str(model["path"])]
    if (heldout or hub_sets) and lineage.get("run_dir"):
        argv.append("--run-windows")  # also scores data.eval_sets, Data Hub ones included
    for name, files in extra.items():
        for path in files if isinstance(files, list) else []:
            argv += ["--sets", f"{name}={path}"]
    if passkey.strip():
        try:
            lengths = parse_lengths(passkey)
        except SteepError as exc:
            raise ActionError(str(exc)) from None
        argv += ["--passkey", ",".join(map(str, lengths))]
    return argv if len(argv) > 2 else None


def export_argv(name: str, dest: str, fmt: str, quant: str | None, home: Path) -> list[str]:
    """``steep models export NAME DEST --format F [--quant Q]``; DEST (relative: under the
    workspace) must be a new folder inside the workspace."""
    if fmt not in EXPORT_FORMATS:
        raise ActionError(f"format {fmt!r}: use {' or '.join(EXPORT_FORMATS)}")
    if not dest.strip():
        raise ActionError("destination: give a new folder inside the workspace")
    root = home.resolve()
    path = Path(dest) if Path(dest).is_absolute() else root / dest
    if not inside(path, root):
        raise ActionError(f"destination {dest!r} is outside the workspace {root}")
    path = new_export_dest(path)
    argv = ["models", "export", name, str(path), "--format", fmt]
    if fmt == "gguf":
        quant = quant or "f16"
        check_quant(quant)  # the CLI's own check: an unknown type, a missing extra
        argv += ["--quant", quant]
    return argv


# the model page's methods: an alpha curve against the base (the chat vector needs a third
# model, which the page does not pick; the CLI does)
MERGE_METHODS = tuple(m for m in METHODS if m != CHAT_VECTOR)


def merge_argv(
    model: dict[str, Any],
    alphas: str,
    max_regression: float | None,
    save: str,
    home: Path,
    method: str = LINEAR,
) -> list[str]:
    """``steep models merge MODEL --alphas A,B --out out [--max-regression X] [--save NAME]
    [--method M]`` on the run's eval sets, checked by the command's own ``MergeSpec.check``
    first (a mergekit method without the extra: its one line)."""
    if not (model.get("lineage") or {}).get("config"):
        raise ActionError(
            f"model {model['name']}: merging is scored on a run's eval sets, and this model "
            "has no run; use `steep models merge` with --base from the CLI"
        )
    if method not in MERGE_METHODS:
        raise ActionError(f"method {method!r}: use one of {', '.join(MERGE_METHODS)}")
    spec = MergeSpec(
        Path(model["path"]),
        alphas=parse_alphas(alphas),
        max_regression=max_regression,
        method=method,
    )
    spec.check(saving=bool(save))
    argv = [
        "models",
        "merge",
        str(model["path"]),
        "--alphas",
        ",".join(f"{a:g}" for a in spec.alphas),
    ]
    argv += ["--out", OUT_DIR]
    if method != LINEAR:
        argv += ["--method", method]
    if max_regression is not None:
        argv += ["--max-regression", f"{max_regression:g}"]
    if save:
        problem = plain_name_problem(save, "save as")
        if problem:
            raise ActionError(problem)
        if (Workspace(home).models / save).exists():
            raise ActionError(f"save as {save!r}: {Workspace(home).models / save} already exists")
        argv += ["--save", save]
    return argv


def push_argv(name: str, repo_id: str, private: bool) -> list[str]:
    """``steep models push NAME REPO_ID [--private]``."""
    if not HUB_ID.fullmatch(repo_id) or "/" not in repo_id:
        raise ActionError(f"repo id {repo_id!r}: give a Hugging Face repo as org/name")
    return ["models", "push", name, repo_id, *(["--private"] if private else [])]


def generate_argv(path: str, max_new_tokens: int, temperature: float) -> list[str]:
    """``steep eval MODEL --prompts`` on the model alone: its samples, no report kept in
    the model (the job's folder holds the prompt and the output)."""
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ActionError(f"max new tokens {max_new_tokens}: give 1 to {MAX_NEW_TOKENS}")
    if not 0 <= temperature <= 10:
        raise ActionError(f"temperature {temperature:g}: give 0 (greedy) to 10")
    fits = generation_problem(Path(path), max_new_tokens)
    if fits:
        raise ActionError(fits)
    return [
        "eval", path, "--no-baseline", "--no-lineage", "--device", "cpu",
        "--prompts", PROMPTS_FILE, "--out", OUT_DIR,
        "--max-new-tokens", str(max_new_tokens), "--temperature", f"{temperature:g}",
    ]  # fmt: skip


def generation_problem(model_dir: Path, max_new_tokens: int) -> str | None:
    """A line when ``steep plan``'s memory for generating from the model (float32, as
    ``steep eval`` loads it, on the CPU) is more than this machine has available now."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # the eval itself says what is wrong with the folder
    shape = from_hf_config(cfg, str(model_dir))
    positions = int(cfg.get("max_position_embeddings") or 2048)
    need = generation_bytes(shape, min(positions, 1024 + max_new_tokens))
    have = available_memory_bytes()
    if need <= have:
        return None
    return (
        f"generating from {model_dir.name} needs about {memory_size(need / 2**30)} of memory (steep plan: "
        f"float32 weights and KV cache) but this machine has {memory_size(have / 2**30)} available"
    )
