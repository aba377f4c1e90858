"""What ``steep models merge`` writes: the curve (merge.json, merge.md, merge.png) and, with
``--save``, the merged model at the picked alpha with its lineage.

Both folders are built aside and renamed into place whole (``steep.artifacts.atomic``):
a full disk or a crash leaves neither half-written, and an existing folder is refused.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from steep import __version__
from steep.artifacts.atomic import new_folder, umask_permissions
from steep.artifacts.fingerprint import tokenizer_fingerprint
from steep.artifacts.fmt import pct, text_table
from steep.artifacts.lineage import BaseInfo, Lineage, TrainMetrics, lineage_text
from steep.errors import UsageError
from steep.eval.merge_curve import Parents, curve_table, open_parents, score_curve
from steep.eval.merge_spec import CHAT_VECTOR, MergeSpec
from steep.model.io import load_tokenizer
from steep.model.merge import GENERATION_FILE, MergeError, copy_files, write_weights
from steep.workspace import LINEAGE_FILE, stamp

MERGE_JSON, MERGE_MD, MERGE_PNG = "merge.json", "merge.md", "merge.png"


def run_merge(spec: MergeSpec, out: Path, save: Path | None = None) -> dict[str, Any]:
    """Score the curve, write ``out`` (refused if it exists) and, with ``save``, the model
    at the picked point (the only point when one was asked; else ``--max-regression``'s)."""
    spec.check(saving=save is not None)
    if out.exists():
        raise UsageError(f"--out {out} already exists: choose a new folder")
    if save is not None and save.exists():
        raise UsageError(f"--save: {save} already exists: choose a new name")
    with ExitStack() as stack:
        # mergekit's points are written beside --out (its disk), removed after each
        parents = open_parents(spec, stack, out.parent if out.parent.is_dir() else None)
        result = score_curve(spec, parents)
        if len(spec.points) == 1 and result["picked"] is None and spec.max_regression is None:
            result["picked"] = spec.points[0]
        # everything is written aside first; the two renames at the end need no room
        with new_folder(out) as tmp_out:
            if save is not None and result["picked"] is not None:
                with new_folder(save) as tmp_model:
                    save_model(spec, parents, result, tmp_model)
                    result["saved"] = str(save)
                    # the curve it was picked from: the studio's Compare page finds it here
                    (tmp_model / MERGE_JSON).write_text(
                        json.dumps(result, indent=2) + "\n", encoding="utf-8"
                    )
                    write_report(result, tmp_out)
            else:
                write_report(result, tmp_out)
    if save is not None and result["picked"] is None:
        raise MergeError(
            f"no {spec.key} keeps general regression within {pct(spec.max_regression)}: "
            f"nothing saved; the curve is in {out}"
        )
    return result


def write_report(result: dict[str, Any], folder: Path) -> None:
    """merge.json, merge.md (the table) and merge.png (the curve) into ``folder``."""
    (folder / MERGE_JSON).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    key = "weight" if result["method"] == CHAT_VECTOR else "alpha"
    lines = [
        f"# Merge: {result['method']}",
        "",
        f"- model: `{result['model']}`",
        f"- base: `{result['base']}`",
    ]
    if result.get("instruct"):
        lines.append(f"- instruct: `{result['instruct']}`")
    lines += [
        f"- rule: {result['rule']}",
        f"- vocabulary: {result['vocab']['note']}",
        "",
        "```",
        text_table(curve_table(result)),
        "```",
        "",
        "Domain gain and general regression against the base (alpha 0); gain above 0 is "
        "better, regression above 0 is worse.",
    ]
    if result.get("max_regression") is not None:
        picked = result.get("picked")
        lines.append(
            f"Largest {key} within {pct(result['max_regression'])} general regression: "
            + (f"{picked:g} (*)." if picked is not None else "none.")
        )
    if result.get("saved"):
        lines.append(f"Saved as `{result['saved']}`.")
    (folder / MERGE_MD).write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_curve(result, folder / MERGE_PNG)


def plot_curve(result: dict[str, Any], path: Path) -> None:
    """Left: each set's loss against alpha; right: domain gain against general regression,
    each point labelled with its alpha (the trade-off the dial moves along)."""
    # deferred: matplotlib loads only when a plot is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    key = "weight" if result["method"] == CHAT_VECTOR else "alpha"
    curve = result["curve"]
    fig = Figure(figsize=(10, 4.2), dpi=110)  # outside pyplot: no global state, no GUI
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    xs = [p[key] for p in curve]
    for name in result["base_losses"]:
        left.plot(xs, [p["sets"][name]["loss"] for p in curve], marker="o", label=name)
    left.set_xlabel(key)
    left.set_ylabel("eval loss (nats per token)")
    left.set_title(f"Loss along the merge ({result['method']})")
    left.grid(True, alpha=0.3)
    left.legend(fontsize="small")
    pts = [p for p in curve if p["domain_gain"] is not None and p["general_regression"] is not None]
    gx = [100 * p["general_regression"] for p in pts]
    gy = [100 * p["domain_gain"] for p in pts]
    right.plot(gx, gy, marker="o", color="C3")
    for p, x, y in zip(pts, gx, gy, strict=True):
        right.annotate(f"{p[key]:g}", (x, y), textcoords="offset points", xytext=(4, 4))
    if result.get("max_regression") is not None:
        right.axvline(100 * result["max_regression"], color="C3", ls="--", lw=1.0)
    right.set_xlabel("general regression (%; right = more forgetting)")
    right.set_ylabel("domain gain (%; up = better)")
    right.set_title("Trade-off, against the base")
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")


def save_model(spec: MergeSpec, parents: Parents, result: dict[str, Any], dest: Path) -> None:
    """The merged model at ``result['picked']``: weights streamed shard by shard, the CPT
    model's config and tokenizer (a chat vector: the instruct model's chat template and
    generation config), and a steep.json naming every parent."""
    x = result["picked"]
    write_weights(parents.plan, parents.stream(spec.method, x), dest)
    copy_files(spec.model, dest, ["config.json", GENERATION_FILE])
    tokenizer = load_tokenizer(str(spec.model))
    if parents.instruct is not None:
        instruct_tok = load_tokenizer(str(parents.instruct.folder))
        if getattr(instruct_tok, "chat_template", None):
            tokenizer.chat_template = instruct_tok.chat_template
        copy_files(parents.instruct.folder, dest, [GENERATION_FILE])
    tokenizer.save_pretrained(dest)
    point = next(p for p in result["curve"] if p[spec.key] == x)
    (dest / LINEAGE_FILE).write_text(
        lineage_text(merge_lineage(spec, parents, result, point, tokenizer)), encoding="utf-8"
    )
    umask_permissions(dest)


def merge_lineage(
    spec: MergeSpec, parents: Parents, result: dict[str, Any], point: dict[str, Any], tok: Any
) -> Lineage:
    """steep.json of a merged model: kind ``merge``, the base as its base, every parent,
    the method and its number, the vocabulary rule, and the curve point's losses."""
    cpt = parents.lineage
    parent_paths = {"base": result["base"], "model": result["model"]}
    if result.get("instruct"):
        parent_paths["instruct"] = result["instruct"]
    return Lineage(
        kind="merge",
        steep_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        base=BaseInfo(
            source=result["base"], path=result["base"], tokenizer_sha256=tokenizer_fingerprint(tok)
        ),
        base_names=list(cpt.base_names) if cpt else [],
        config=cpt.config if cpt else None,
        metrics=TrainMetrics(
            baseline=dict(result["base_losses"]),
            final={n: s["loss"] for n, s in point["sets"].items()},
        ),
        merge={
            "method": spec.method,
            spec.key: point[spec.key],
            "parents": parent_paths,
            "parent_kinds": {"model": cpt.kind if cpt else None},
            "vocab": result["vocab"],
            "domain_gain": point["domain_gain"],
            "general_regression": point["general_regression"],
            "max_regression": result.get("max_regression"),
            "rule": result["rule"],
            **({"mergekit": result["mergekit"]} if result.get("mergekit") else {}),
        },
    )


def default_out(model_dir: Path) -> Path:
    """Where the curve goes without ``--out``: a new folder in the working directory."""
    return Path.cwd() / f"merge-{Path(model_dir).parent.name}-{stamp()}"
