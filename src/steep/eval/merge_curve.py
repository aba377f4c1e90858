"""``steep models merge``: the alpha curve of a CPT model against its base, on the run's
own eval sets under training's eval rule.

Each alpha's weights are streamed into one loaded model (``steep.model.merge``) and scored
exactly as ``steep eval --run-windows`` scores a model (``steep.eval.run_windows``), so
alpha 0 gives the run's step-0 losses and alpha 1 its final losses; domain gain and
general regression are ``steep.artifacts.scores``'s, against the base (alpha 0).
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steep.artifacts.fmt import pct
from steep.artifacts.lineage import Lineage, read_lineage
from steep.artifacts.scores import loss_headline
from steep.config import ModelSection, RunConfig
from steep.errors import MissingInputError
from steep.eval.merge_spec import CHAT_VECTOR, LINEAR, MergeSpec, pick
from steep.eval.run_windows import load_scored, logged_losses, run_config, score_loaded
from steep.model.io import load_tokenizer
from steep.model.merge import (
    MergeError,
    Plan,
    Weights,
    chat_vectored,
    interpolated,
    load_into,
    plan_merge,
    vocab_relation,
)
from steep.model.mergekit_run import (
    DEFAULT_DENSITY,
    DENSITY_METHODS,
    MERGEKIT_METHODS,
    mergekit_config,
    run_mergekit,
)
from steep.train.evaluate import window_rule
from steep.train.forward import use_document_mask
from steep.train.inputs import run_eval_sets
from steep.train.runtime import Runtime
from steep.workspace import steep_home


@dataclass
class Parents:
    """The merge's inputs, opened: weights, the plan and what the vocabulary check found."""

    cpt: Weights
    base: Weights
    instruct: Weights | None
    plan: Plan
    new_tokens: int
    instruct_rows: list[int]
    lineage: Lineage | None
    scratch: Path | None = None  # mergekit's output folders, one point at a time
    density: float | None = None

    def stream(self, method: str, x: float) -> Iterator[Any]:
        """The merged tensors at alpha (or weight) ``x``, one at a time."""
        if method in MERGEKIT_METHODS:
            return self._mergekit(method, x)
        if method == CHAT_VECTOR:
            assert self.instruct is not None
            return chat_vectored(
                self.plan, self.cpt, self.instruct, self.base, x, self.instruct_rows
            )
        return interpolated(self.plan, self.base, self.cpt, x)

    def _mergekit(self, method: str, x: float) -> Iterator[Any]:
        """mergekit's merge at ``x`` written into the scratch folder, read back tensor by
        tensor in the plan's order and dtypes, then removed."""
        assert self.scratch is not None
        config = mergekit_config(method, self.base.folder, self.cpt.folder, x, self.density)
        log = self.scratch.parent / f"mergekit-{method}-{x:g}.log"
        folder = run_mergekit(config, Path(tempfile.mkdtemp(dir=self.scratch)) / "model", log)
        try:
            with ExitStack() as stack:
                merged = Weights(folder, stack)
                for name in self.plan.names:
                    if name not in merged.names:
                        raise MergeError(f"mergekit's {method} output has no tensor {name}")
                    yield name, merged.get(name).to(self.plan.dtypes[name])
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)


def default_base(model_dir: Path) -> Path:
    """The folder the run started from, as its steep.json records it."""
    lineage = read_lineage(model_dir)
    path = lineage.base_path if lineage else None
    if not path or not (Path(path) / "config.json").is_file():
        raise MissingInputError(
            f"{model_dir}: its steep.json names no local base folder to merge with; give --base"
        )
    return Path(path)


def open_parents(spec: MergeSpec, stack: ExitStack, scratch: Path | None = None) -> Parents:
    """Open the models and check them: one architecture and shapes, and a tokenizer that is
    the base's or extends it (with extension lineage). Refusals name what differs.
    ``scratch``: where mergekit's points are written (a temporary folder in it)."""
    base_dir = spec.base or default_base(spec.model)
    cpt = Weights(spec.model, stack)
    base = Weights(base_dir, stack)
    base_vocab = load_tokenizer(str(base_dir)).get_vocab()
    new_tokens = vocab_relation(base_vocab, load_tokenizer(str(spec.model)).get_vocab(), spec.model)
    others = {"base": base}
    instruct, rows = None, []
    if spec.method == CHAT_VECTOR:
        assert spec.instruct is not None
        instruct = Weights(spec.instruct, stack)
        tok = load_tokenizer(str(spec.instruct))
        vocab_relation(base_vocab, tok.get_vocab(), spec.instruct)
        others["instruct"] = instruct
        rows = sorted(set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {})))
        plan_merge(instruct, {"base": base}, extension=False)  # the delta: same shapes
    plan = plan_merge(cpt, others, extension=new_tokens > 0)
    parents = Parents(cpt, base, instruct, plan, new_tokens, rows, read_lineage(spec.model))
    if spec.method in MERGEKIT_METHODS:
        if new_tokens:
            raise MergeError(
                f"--method {spec.method}: {spec.model} extends the base's vocabulary; merge "
                "it with --method linear or chat-vector (steep's rules for the new rows)"
            )
        parents.scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=scratch)))
        parents.density = spec.density
    return parents


def score_curve(
    spec: MergeSpec, parents: Parents, say: Callable[[str], None] = print
) -> dict[str, Any]:
    """Score every point of the curve on the run's eval sets; the result is merge.json's
    body (``picked`` filled by ``pick``)."""
    config = _config(spec.model)
    runtime = Runtime.from_config(config.train, 0)
    sets, sep = run_eval_sets(config, load_tokenizer(str(spec.model)), steep_home())
    roles = parents.lineage.roles() if parents.lineage else {}
    spec_model = ModelSection(
        base=str(spec.model), document_separator=config.model.document_separator
    )
    model = load_scored(spec_model, config, runtime)
    try:
        load_into(model, parents.stream(LINEAR, 0.0))
        base_losses = score_loaded(model, config, sets, sep, runtime)
        curve = []
        for x in spec.points:
            say(f"[merge] {spec.key} {x:g}: scoring on {len(sets)} eval sets")
            if spec.method != CHAT_VECTOR and x == 0.0:  # every such method: the base
                losses = base_losses
            else:
                load_into(model, parents.stream(spec.method, x))
                losses = score_loaded(model, config, sets, sep, runtime)
            head = loss_headline(base_losses, losses, roles)
            curve.append(
                {
                    spec.key: x,
                    "sets": {n: {"loss": v, "role": roles.get(n)} for n, v in losses.items()},
                    "domain_gain": head.domain_gain,
                    "general_regression": head.general_regression,
                }
            )
    finally:
        del model
        gc.collect()
    step0, final, step = logged_losses(spec.model.parent)
    return {
        "method": spec.method,
        **engine(spec),
        "base": str(parents.base.folder),
        "model": str(spec.model),
        "instruct": str(parents.instruct.folder) if parents.instruct else None,
        "rule": window_rule(
            config.data.seq_len,
            config.eval.max_windows,
            config.train.precision,
            use_document_mask(config, runtime),
        ),
        "base_losses": base_losses,
        "logged": {"step0": step0, "final": final, "final_step": step},
        "curve": curve,
        "max_regression": spec.max_regression,
        "picked": pick(curve, spec.key, spec.max_regression),
        "vocab": vocab_note(parents),
    }


def _config(model_dir: Path) -> RunConfig:
    try:
        return run_config(model_dir)
    except MissingInputError:
        raise MergeError(
            f"{model_dir}: scoring a merge needs a model a `steep train` run saved (its "
            "steep.json holds the run's eval sets)"
        ) from None


def engine(spec: MergeSpec) -> dict[str, Any]:
    """For a mergekit method: its version and the density it was given (merge.json and the
    lineage record them); nothing for steep's own methods."""
    if spec.method not in MERGEKIT_METHODS:
        return {}
    from importlib.metadata import version  # only for mergekit methods: the extra's version

    density = spec.density if spec.density is not None else DEFAULT_DENSITY
    return {
        "mergekit": {
            "version": version("mergekit"),
            "density": density if spec.method in DENSITY_METHODS else None,
        }
    }


def vocab_note(parents: Parents) -> dict[str, Any]:
    """What the merge did with the embedding rows, in words and numbers."""
    plan = parents.plan
    note = "the same vocabulary: every row merged"
    if plan.new_rows:
        note = (
            f"extended vocabulary: {plan.new_rows} rows the base lacks (ids "
            f"{plan.shared_rows}+) come from the CPT model unmerged, in "
            f"{', '.join(plan.extended)}"
        )
    if parents.instruct_rows:
        note += (
            f"; the rows of the instruct tokenizer's {len(parents.instruct_rows)} special and "
            "chat tokens come from the instruct model"
        )
    return {
        "new_rows": plan.new_rows,
        "shared_rows": plan.shared_rows,
        "row_tensors": plan.extended,
        "instruct_rows": parents.instruct_rows,
        "note": note,
    }


def curve_table(result: dict[str, Any]) -> list[list[str]]:
    """The curve as rows: the point, each set's loss, domain gain, general regression."""
    key = "weight" if result["method"] == CHAT_VECTOR else "alpha"
    names = list(result["base_losses"])
    rows = [[key, *names, "domain gain", "general regression"]]
    rows.append(["base", *(f"{result['base_losses'][n]:.4f}" for n in names), "-", "-"])
    for p in result["curve"]:
        mark = " *" if p[key] == result.get("picked") else ""
        rows.append(
            [
                f"{p[key]:g}{mark}",
                *(f"{p['sets'][n]['loss']:.4f}" for n in names),
                pct(p["domain_gain"], 2, missing="-"),
                pct(p["general_regression"], 2, missing="-"),
            ]
        )
    return rows
