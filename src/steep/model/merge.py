"""Weight merging, one tensor at a time over safetensors shards.

Two methods, both a line of arithmetic per tensor, so they are written here rather than
through mergekit: interpolation ``(1 - alpha) x base + alpha x cpt`` (WiSE-FT) and the
chat vector ``cpt + w x (instruct - base)`` (Huang et al., ACL 2024). What steep adds is
the reading: each tensor is read from its shard (``safe_open``, memory-mapped), combined
in float32 and either copied into one loaded model (to score an alpha) or written into
a new shard; two full models are never in memory.

An extended vocabulary: the CPT model may have more embedding rows than the base (a
``steep tokenizer extend`` base). Rows the base lacks are the CPT model's own; the
shared rows are merged. In a chat vector the rows of the instruct tokenizer's special
and chat tokens are the instruct model's.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from steep.artifacts.lineage import read_lineage
from steep.errors import SteepError

SAFE_FILE = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
SHARD_BYTES = 2 * 2**30  # a written shard holds at most this much (one shard in memory)
GENERATION_FILE = "generation_config.json"


# safetensors' dtype codes -> torch's names
_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
           "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool"}  # fmt: skip


class MergeError(SteepError):
    """Models that cannot be merged (the message names the first tensor that differs)."""


class Weights:
    """A model folder's tensors, opened lazily: names, shapes, and one tensor on request."""

    def __init__(self, folder: Path, stack: ExitStack) -> None:
        from safetensors import safe_open  # deferred: only where weights are read

        self.folder = Path(folder)
        self.config = _read_json(self.folder / "config.json", self.folder)
        index = self.folder / SAFE_INDEX
        if index.is_file():
            files = dict(_read_json(index, self.folder).get("weight_map") or {})
        elif (self.folder / SAFE_FILE).is_file():
            files = {}
        else:
            raise MergeError(
                f"{self.folder}: no {SAFE_FILE} or {SAFE_INDEX}: merging reads safetensors "
                "(re-save the model with save_pretrained(safe_serialization=True))"
            )
        handles: dict[str, Any] = {}
        for shard in sorted(set(files.values())) or [SAFE_FILE]:
            handles[shard] = stack.enter_context(
                safe_open(str(self.folder / shard), framework="pt")
            )
        if not files:
            files = {k: SAFE_FILE for k in handles[SAFE_FILE].keys()}  # noqa: SIM118
        self._files = files
        self._handles = handles
        self.names = sorted(files)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handles[self._files[name]].get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        return self._handles[self._files[name]].get_tensor(name)

    def dtype(self, name: str) -> torch.dtype:
        code = self._handles[self._files[name]].get_slice(name).get_dtype()
        return getattr(torch, _DTYPES.get(code, "float32"))

    @property
    def vocab_size(self) -> int | None:
        size = self.config.get("vocab_size") or (self.config.get("text_config") or {}).get(
            "vocab_size"
        )
        return int(size) if size else None

    @property
    def architecture(self) -> tuple[str | None, tuple[str, ...]]:
        return self.config.get("model_type"), tuple(self.config.get("architectures") or ())


def _read_json(path: Path, folder: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MergeError(f"{folder} is not a Hugging Face model folder (no {path.name})") from None
    except (OSError, ValueError) as exc:
        raise MergeError(f"{path}: unreadable: {exc}") from None


@dataclass
class Plan:
    """What a merge reads: the tensor names in order, their output shape and dtype, and
    the embedding-like tensors whose rows past ``shared_rows`` come from the CPT model."""

    names: list[str]
    shapes: dict[str, tuple[int, ...]]
    dtypes: dict[str, torch.dtype]
    shared_rows: int | None = None  # the base's vocabulary; None: no extension
    row_tensors: list[str] = field(default_factory=list)

    @property
    def new_rows(self) -> int:
        if not self.row_tensors or self.shared_rows is None:
            return 0
        return self.shapes[self.row_tensors[0]][0] - self.shared_rows

    @property
    def extended(self) -> list[str]:
        """The tensors whose rows past ``shared_rows`` are the CPT model's own."""
        if self.shared_rows is None:
            return []
        return [n for n in self.row_tensors if self.shapes[n][0] > self.shared_rows]


def plan_merge(cpt: Weights, others: dict[str, Weights], extension: bool) -> Plan:
    """Check ``others`` (base, instruct) against the CPT model: one architecture, the same
    tensors and shapes; with ``extension``, embedding-like tensors may have more rows in
    the CPT model (its vocabulary's size) than in the others (theirs). Refuses naming the
    first tensor that differs."""
    for label, w in others.items():
        if w.architecture != cpt.architecture:
            raise MergeError(
                f"architectures differ: {cpt.folder} is {cpt.architecture[0]} "
                f"{list(cpt.architecture[1])}, the {label} {w.folder} is {w.architecture[0]} "
                f"{list(w.architecture[1])}"
            )
        for name in sorted(set(cpt.names) ^ set(w.names)):
            has, lacks = (cpt, w) if name in cpt.names else (w, cpt)
            raise MergeError(f"tensor {name} is in {has.folder} but not in {lacks.folder}")
    plan = Plan(list(cpt.names), {}, {})
    for name in cpt.names:
        shape = cpt.shape(name)
        plan.shapes[name] = shape
        plan.dtypes[name] = cpt.dtype(name)
        for label, w in others.items():
            theirs = w.shape(name)
            if theirs == shape:
                continue
            rows = extension and _row_tensor(shape, theirs, cpt.vocab_size, w.vocab_size)
            if not rows:
                raise MergeError(
                    f"tensor {name} differs: {list(shape)} in {cpt.folder}, {list(theirs)} in "
                    f"the {label} {w.folder}"
                )
            if plan.shared_rows not in (None, theirs[0]):
                raise MergeError(f"tensor {name}: {theirs[0]} rows, others have {plan.shared_rows}")
            plan.shared_rows = theirs[0]
            if name not in plan.row_tensors:
                plan.row_tensors.append(name)
        if shape and shape[0] == cpt.vocab_size and name not in plan.row_tensors:
            plan.row_tensors.append(name)  # a row per token: a chat vector's rows may override
    return plan


def _row_tensor(
    mine: tuple[int, ...], theirs: tuple[int, ...], my_vocab: int | None, their_vocab: int | None
) -> bool:
    """An embedding-like tensor of an extended vocabulary: more rows, the same row shape."""
    return (
        len(mine) >= 1
        and mine[1:] == theirs[1:]
        and mine[0] > theirs[0]
        and mine[0] == my_vocab
        and theirs[0] == their_vocab
    )


Combine = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def _stream(
    plan: Plan,
    cpt: Weights,
    others: dict[str, Weights],
    combine: Combine,
    overrides: dict[int, str] | None = None,
) -> Iterator[tuple[str, torch.Tensor]]:
    """Each output tensor in turn: ``combine`` of the float32 inputs on the shared rows,
    the CPT model's own rows past them; ``overrides`` (row id -> source label) copies
    those rows of the row tensors from one input."""
    for name in plan.names:
        if not plan.dtypes[name].is_floating_point:  # a buffer of ids or flags: the CPT's
            yield name, cpt.get(name)
            continue
        parts = {"cpt": cpt.get(name).float()}
        for label, w in others.items():
            parts[label] = w.get(name).float()
        if name in plan.row_tensors:
            n = plan.shared_rows if plan.shared_rows is not None else parts["cpt"].shape[0]
            out = parts["cpt"].clone()
            out[:n] = combine({k: v[:n] for k, v in parts.items()})
        else:
            out = combine(parts)
        for row, label in (overrides or {}).items():
            if name in plan.row_tensors and row < parts[label].shape[0]:
                out[row] = parts[label][row]
        yield name, out.to(plan.dtypes[name])


def interpolated(
    plan: Plan, base: Weights, cpt: Weights, alpha: float
) -> Iterator[tuple[str, torch.Tensor]]:
    """``(1 - alpha) x base + alpha x cpt``, tensor by tensor (alpha 0 is the base exactly,
    alpha 1 the CPT model exactly)."""

    def mix(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return (1.0 - alpha) * p["base"] + alpha * p["cpt"]

    return _stream(plan, cpt, {"base": base}, mix)


def chat_vectored(
    plan: Plan,
    cpt: Weights,
    instruct: Weights,
    base: Weights,
    weight: float,
    instruct_rows: Iterable[int] = (),
) -> Iterator[tuple[str, torch.Tensor]]:
    """``cpt + weight x (instruct - base)``, tensor by tensor; ``instruct_rows`` (the chat
    and special tokens' ids) are the instruct model's own rows."""

    def add(p: dict[str, torch.Tensor]) -> torch.Tensor:
        return p["cpt"] + weight * (p["instruct"] - p["base"])

    overrides = dict.fromkeys(instruct_rows, "instruct")
    return _stream(plan, cpt, {"instruct": instruct, "base": base}, add, overrides)


@torch.no_grad()
def load_into(model: torch.nn.Module, tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Copy merged tensors into a loaded model in place (its device and dtype): scoring an
    alpha needs one model in memory, not a saved folder."""
    state = model.state_dict()
    for name, tensor in tensors:
        if name not in state:
            raise MergeError(f"tensor {name} of the merge is not a weight of the loaded model")
        state[name].copy_(tensor)


def write_weights(plan: Plan, tensors: Iterable[tuple[str, torch.Tensor]], dest: Path) -> None:
    """Write the merged tensors into ``dest`` as safetensors shards of at most
    ``SHARD_BYTES`` each (one shard's tensors in memory at a time), with an index when
    there is more than one."""
    from safetensors.torch import save_file  # deferred: only where weights are written

    shards: list[list[str]] = [[]]
    size = total = 0
    for name in plan.names:
        nbytes = _nbytes(plan.shapes[name], plan.dtypes[name])
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
        total += nbytes
    files = (
        [SAFE_FILE]
        if len(shards) == 1
        else [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    )
    where = {n: f for f, names in zip(files, shards, strict=True) for n in names}
    stream = iter(tensors)
    for file, names in zip(files, shards, strict=True):
        chunk: dict[str, torch.Tensor] = {}
        for _ in names:
            name, tensor = next(stream)
            chunk[name] = tensor.contiguous()
        save_file(chunk, str(dest / file), metadata={"format": "pt"})
        del chunk
    if len(files) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": where}
        (dest / SAFE_INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def _nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    n = 1
    for d in shape:
        n *= d
    return n * torch.empty((), dtype=dtype).element_size()


def copy_files(src: Path, dest: Path, names: Iterable[str]) -> None:
    """Copy the named small files (config, generation config) that exist in ``src``."""
    for name in names:
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, dest / name)


# --- tokenizers -------------------------------------------------------------------------------


def vocab_relation(base_vocab: dict[str, int], cpt_vocab: dict[str, int], cpt_dir: Path) -> int:
    """How many tokens the CPT tokenizer adds to the base's: 0 for the same vocabulary.

    A larger one is accepted only when it extends the base (every base token keeps its id)
    and the CPT model's lineage records a vocabulary extension; else a one-line refusal.
    """
    if base_vocab == cpt_vocab:
        return 0
    moved = next((t for t, i in base_vocab.items() if cpt_vocab.get(t) != i), None)
    if moved is not None or len(cpt_vocab) <= len(base_vocab):
        shown = moved if moved is not None else "(sizes)"
        raise MergeError(
            f"the tokenizers differ (token {shown!r}: base id {base_vocab.get(shown)}, CPT id "
            f"{cpt_vocab.get(shown)}): merge models that share a tokenizer or extend it"
        )
    if not extension_lineage(cpt_dir):
        raise MergeError(
            f"{cpt_dir}'s tokenizer has {len(cpt_vocab) - len(base_vocab)} tokens the base's "
            "lacks, and its steep.json records no vocabulary extension (`steep tokenizer extend`)"
        )
    return len(cpt_vocab) - len(base_vocab)


def extension_lineage(model_dir: Path) -> bool:
    """Whether the model, or a base it was trained from, is a vocabulary extension."""
    lineage = read_lineage(model_dir)
    node: dict[str, Any] | None = lineage.dump() if lineage else None
    while isinstance(node, dict):
        if node.get("kind") == "vocab_extension" or node.get("vocab_extension"):
            return True
        node = (node.get("base") or {}).get("lineage")
    return False
