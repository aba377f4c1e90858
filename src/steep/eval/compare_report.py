"""Write a ``steep eval`` result: eval.json, eval.md and plots, plus the model's lineage.

The report folder is built aside and renamed into place, so a reader (the studio, the
Model Hub) sees the previous report or the new one, never half of one. The same report
goes to every place a user would look: the output folder (default ``MODEL/eval``), and
the training run's own directory when the model's ``steep.json`` names one that exists.
The model's ``steep.json`` gets the result (without the samples) under ``eval``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steep.artifacts.atomic import aside_dir, replace_dir
from steep.artifacts.fmt import change_pct, markdown_table, multiline_cell, num, signed
from steep.artifacts.lineage import record_eval
from steep.artifacts.longctx import POSITION_NOTE, passkey_markdown, position_markdown
from steep.eval.lineage import local_dir, model_lineage
from steep.workspace import LINEAGE_FILE, steep_home

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

JSON_FILE = "eval.json"
MARKDOWN_FILE = "eval.md"
NA = "n/a"  # an eval report says n/a where a number is unknown
PLOTS_DIR = "plots"
EVAL_DIR = "eval"
DPI = 120
_ROLE_COLORS = {"domain": "C0", "general": "C1", None: "0.6"}
_SERIES = (("base", "0.55"), ("adapted", "C2"))


# --------------------------------------------------------------------------- where


def destinations(
    result: dict[str, Any], model_spec: str, out_dir: str | None, update_lineage: bool = True
) -> list[Path]:
    """Report folders. ``--out`` is the one place written; ``--no-lineage`` leaves the
    model's and the run's folders alone (the report goes to STEEP_HOME/evals/); otherwise
    the model's ``eval/`` and the run directory named in its lineage."""
    if out_dir:
        return [Path(out_dir)]
    model_dir = local_dir(model_spec)
    if model_dir is None or not update_lineage:
        return [steep_home() / "evals" / f"eval-{datetime.now():%Y%m%d-%H%M%S}"]
    first = model_dir / EVAL_DIR
    dests = [first]
    run_dir = model_lineage(model_spec).run_dir
    if isinstance(run_dir, str) and Path(run_dir).is_dir():
        second = Path(run_dir) / EVAL_DIR
        if second.resolve() != first.resolve():
            dests.append(second)
    return dests


def publish(
    result: dict[str, Any], model_spec: str, out_dir: str | None, update_lineage: bool = True
) -> list[Path]:
    """Write the report everywhere it belongs and record it in the model's steep.json."""
    dests = destinations(result, model_spec, out_dir, update_lineage)
    result["reports"] = [str(d.resolve()) for d in dests]
    for dest in dests:
        write_report_dir(dest, result)
        print(f"eval report: {dest / MARKDOWN_FILE}", flush=True)
    model_dir = local_dir(model_spec)
    if update_lineage and model_dir is not None:
        record_in_lineage(model_dir, result)
    return dests


def record_in_lineage(model_dir: Path, result: dict[str, Any]) -> None:
    """Put the result (minus samples) under ``eval`` in steep.json, atomically.

    A folder without steep.json (a plain HF model) gets one holding only ``eval``; an
    unreadable one is left alone rather than overwritten.
    """
    if not record_eval(model_dir, result):
        log.warning("%s is unreadable: eval result not recorded there", model_dir / LINEAGE_FILE)


def write_report_dir(dest: Path, result: dict[str, Any]) -> Path:
    """Build eval.json, eval.md and plots/ in a hidden sibling folder, then swap it in."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = aside_dir(dest)
    try:
        plots = write_plots(tmp / PLOTS_DIR, result)
        doc = {**result, "files": {"markdown": MARKDOWN_FILE, "plots": plots}}
        (tmp / JSON_FILE).write_text(json.dumps(doc, indent=2, default=str) + "\n")
        (tmp / MARKDOWN_FILE).write_text(render_markdown(result, plots), encoding="utf-8")
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# --------------------------------------------------------------------------- markdown


def _headline_lines(head: dict[str, Any] | None) -> list[str]:
    if head is None:
        return ["No baseline given: the numbers below are the model's alone."]
    lines = []
    for label, block, what in (
        ("held-out sets", head, "bits per byte"),
        ("tasks", head["tasks"], "each task's main metric"),
    ):
        if not block["domain"] and not block["general"]:
            continue
        gain, reg = block["domain_gain"], block["general_regression"]
        if block["domain"]:
            lines.append(
                f"- **domain gain** ({label}, {what}; {', '.join(block['domain'])}): "
                f"**{change_pct(gain)}**"
            )
        if block["general"]:
            lines.append(
                f"- **general regression** ({label}, {what}; {', '.join(block['general'])}): "
                f"**{change_pct(reg)}**"
            )
    if not lines:
        return [
            "No set or task is marked domain or general (use --domain / --general), "
            "so there is no headline."
        ]
    return [
        *lines,
        "",
        "Gain: mean relative improvement over the base on the domain sets (bits per byte "
        "down, accuracy up). Regression: mean relative worsening on the general sets; "
        "negative means the general side improved too.",
    ]


def _run_windows_lines(block: dict[str, Any]) -> list[str]:
    """The run's own eval sets under training's rule, beside the numbers the run logged."""
    header = ["set", "windows", "base loss", "run step 0", "model loss", "run final", "change %"]
    rows = [
        [
            multiline_cell(name),
            str(r["windows"]),
            num(r["base"], ".4f", NA),
            num(r["in_run_step0"], ".4f", NA),
            num(r["adapted"], ".4f", NA),
            num(r["in_run_final"], ".4f", NA),
            change_pct(r["rel_change"]),
        ]
        for name, r in block["sets"].items()
    ]
    diff = block.get("max_abs_diff")
    return [
        "",
        f"## The run's eval sets, as training read them ({block['run']})",
        "",
        f"Read as: {block['rule']}; on {block['device']}.",
        "",
        *markdown_table(header, rows, right_from=1),
        "",
        "Largest difference from the run's own metrics.jsonl: "
        + (f"{diff:.2e}" if diff is not None else "n/a (no logged eval to compare)"),
    ]


def render_markdown(result: dict[str, Any], plots: Sequence[str]) -> str:
    has_base = result["baseline"] is not None
    model = result["model"]["spec"]
    title = f"# Evaluation: {model}" + (f" vs {result['baseline']['spec']}" if has_base else "")
    s = result["settings"]
    lines = [
        title,
        "",
        f"- model: `{result['model']['path']}`",
        f"- baseline: `{result['baseline']['path']}`" if has_base else "- baseline: none",
        f"- created: {result['created']}; seq_len {s['seq_len']}, {s['device']}, {s['dtype']}",
        "",
        "## Headline",
        "",
        *_headline_lines(result["headline"]),
    ]
    if result["sets"]:
        lines += [
            "",
            "## Held-out sets",
            "",
            "Bits per byte (bpb) is the total loss over the UTF-8 bytes of the documents: "
            "it compares models with different tokenizers. Loss (nats per token) and "
            "perplexity are per each model's own tokens. Lower is better.",
            "",
            f"Read as: {s.get('set_rule') or 'each document alone'}. Training's own eval "
            "reads fixed windows across documents instead (see `--run-windows`), so its "
            "losses on the same text differ.",
            "",
        ]
        if has_base:
            header = ["set", "role", "docs", "base bpb", "adapted bpb", "change", "change %"]
            header += ["base loss", "adapted loss", "base ppl", "adapted ppl"]
        else:
            header = ["set", "role", "docs", "bpb", "loss", "ppl", "tokens"]
        rows = []
        for name, r in result["sets"].items():
            a, b, c = r["adapted"], r["base"], r["change"]["bpb"]
            row = [multiline_cell(name), r["role"] or "", str(r["documents"])]
            if has_base:
                row += [
                    num(b["bpb"], ".4f", NA),
                    num(a["bpb"], ".4f", NA),
                    signed(c["abs"], 4, NA),
                    change_pct(c["rel"]),
                ]
                row += [
                    num(b["loss"], ".4f", NA),
                    num(a["loss"], ".4f", NA),
                    num(b["ppl"], ".2f", NA),
                    num(a["ppl"], ".2f", NA),
                ]
            else:
                row += [
                    num(a["bpb"], ".4f", NA),
                    num(a["loss"], ".4f", NA),
                    num(a["ppl"], ".2f", NA),
                    f"{a['tokens']:,}",
                ]
            rows.append(row)
        lines += markdown_table(header, rows, right_from=2)
    if result["tasks"]:
        lines += ["", "## Tasks", ""]
        header = ["task", "role", "source", "metric"]
        header += ["base", "adapted", "change", "change %"] if has_base else ["value"]
        rows = []
        for name, r in result["tasks"].items():
            metrics = [m for m in r["change"] if r["adapted"].get(m) is not None]
            metrics.sort(key=lambda m: m != r["primary"])  # the headline metric first
            for m in metrics:
                a = r["adapted"][m]
                row = [multiline_cell(name), r["role"] or "", r["source"], m]
                if has_base:
                    c = r["change"][m]
                    b = r["base"].get(m) if r["base"] else None
                    row += [
                        num(b, ".4f", NA),
                        num(a, ".4f", NA),
                        signed(c["abs"], 4, NA),
                        change_pct(c["rel"]),
                    ]
                else:
                    row += [num(a, ".4f", NA)]
                rows.append(row)
        lines += markdown_table(header, rows, right_from=4)
        lines += [
            "",
            "jsonl tasks: acc picks the most likely choice, acc_norm the most likely per "
            "character (lm-eval's normalisation).",
        ]
    if result.get("run_windows"):
        lines += _run_windows_lines(result["run_windows"])
    if result.get("passkey"):
        lines += ["", "## Passkey retrieval", "", *passkey_markdown(result["passkey"])]
    if result.get("position_loss"):
        lines += ["", "## Loss by position", "", POSITION_NOTE, ""]
        lines += position_markdown(result["position_loss"])
    if plots:
        lines += ["", "## Plots", ""]
        for p in plots:
            lines += [f"![{Path(p).stem}]({p})", ""]
    if result["samples"]:
        lines += ["", "## Samples", "", "Greedy completions of the same prompts.", ""]
        for i, smp in enumerate(result["samples"], 1):
            lines += [f"### Prompt {i}", "", "```text", smp["prompt"], "```", ""]
            if has_base:
                lines += markdown_table(
                    ["base", "adapted"],
                    [[multiline_cell(smp["base"]), multiline_cell(smp["adapted"])]],
                    2,
                )
            else:
                lines += markdown_table(["adapted"], [[multiline_cell(smp["adapted"])]], 1)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- plots


def _figure(title: str, ylabel: str, n_bars: int) -> tuple[Figure, Axes]:
    """A figure outside pyplot (Agg, no global state): safe in a server or a thread."""
    # deferred: matplotlib loads only when a plot is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.1 * n_bars + 3), 4.5), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    return fig, ax


def _grouped_bars(ax: Axes, labels: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    colors = dict(_SERIES)
    for k, (name, values) in enumerate(series.items()):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(labels))]
        vals = [v if v is not None else math.nan for v in values]
        ax.bar(xs, vals, width, label=name, color=colors.get(name, f"C{k}"))
    ax.set_xticks(range(len(labels)), labels)
    if len(series) > 1:  # outside the axes, so it never hides a bar
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def write_plots(out: Path, result: dict[str, Any]) -> list[str]:
    """bpb.png (per set), tasks.png (main metric per task), change.png (vs base).

    Returns the written files relative to the report folder; nothing to show, no file.
    """
    out.mkdir(parents=True, exist_ok=True)
    labels_used = ["base", "adapted"] if result["baseline"] else ["adapted"]
    written: list[str] = []

    def save(fig: Figure, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, format="png", dpi=DPI)
        written.append(f"{PLOTS_DIR}/{name}")

    sets = result["sets"]
    if sets:
        fig, ax = _figure(
            "Bits per byte by held-out set (lower is better)", "bits per byte", len(sets)
        )
        series = {lab: [(r[lab] or {}).get("bpb") for r in sets.values()] for lab in labels_used}
        _grouped_bars(ax, list(sets), series)
        save(fig, "bpb.png")

    tasks = {n: r for n, r in result["tasks"].items() if r["primary"]}
    if tasks:
        fig, ax = _figure("Tasks: main metric", "value", len(tasks))
        series = {
            lab: [(r[lab] or {}).get(r["primary"]) for r in tasks.values()] for lab in labels_used
        }
        _grouped_bars(ax, [f"{n}\n({r['primary']})" for n, r in tasks.items()], series)
        save(fig, "tasks.png")

    if result["baseline"]:
        rows = [(f"set {n}", r) for n, r in sets.items()]
        rows += [(f"task {n}", r) for n, r in tasks.items()]
        rows = [(n, r) for n, r in rows if r["improvement"] is not None]
        if rows:
            fig, ax = _figure(
                "Improvement over the base (> 0 is better)", "improvement (%)", len(rows)
            )
            values = [100 * r["improvement"] for _, r in rows]
            colors = [_ROLE_COLORS.get(r["role"], "0.6") for _, r in rows]
            ax.bar(range(len(rows)), values, 0.6, color=colors)
            ax.set_xticks(range(len(rows)), [n for n, _ in rows])
            ax.axhline(0.0, color="0.3", lw=1.0)
            # deferred: matplotlib loads only when a plot is drawn
            from matplotlib.patches import Patch

            handles = [Patch(color=c, label=str(k or "no role")) for k, c in _ROLE_COLORS.items()]
            ax.legend(
                handles=handles,
                fontsize="small",
                title="role",
                loc="upper left",
                bbox_to_anchor=(1.01, 1.0),
            )
            ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:+g}%" if v else "0%")
            save(fig, "change.png")
    return written
