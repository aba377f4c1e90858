"""Base vs adapted, from ``metrics.jsonl`` alone: eval table, plots and ``report.md``.

Everything here reads the run directory's files and nothing else, so the CLI, the studio
and a second machine can rebuild a report for any run, finished, crashed or still going.

The headline numbers are the change of each eval set's loss against step 0 (the base
model): a negative change on the domain set is the gain, a positive change on the general
set is forgetting. Both the table and the plots compute that change from the logged losses
with one definition, so they cannot disagree.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from steep.artifacts.atomic import write_text
from steep.artifacts.fmt import cell, change_pct
from steep.artifacts.longctx import lengths_markdown, long_context_markdown
from steep.artifacts.metrics import read_events, read_metrics
from steep.artifacts.scores import finite, rel_change
from steep.workspace import METRICS_FILE, REPORT_FILE

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

PLOTS_DIR = "plots"
DPI = 120
_TRAIN_COLOR = "0.2"  # train loss in near-black so the eval sets own the palette
_EVAL_STYLE: dict[str, Any] = {"marker": "o", "ms": 4, "lw": 1.2}
_NOTE_STYLE: dict[str, Any] = {"fontsize": "small", "color": "0.35"}
_NO_CHANGE = 1e-3  # |rel_change| below 0.1% reads as "no change" in the report


# --------------------------------------------------------------------------- eval table


def _set_names(eval_records: Sequence[dict]) -> list[str]:
    """Eval set names in order of first appearance (stable colors and row order)."""
    names: dict[str, None] = {}
    for rec in eval_records:
        for name in rec["sets"]:
            names.setdefault(name, None)
    return list(names)


def _series(eval_records: Sequence[dict], name: str) -> tuple[list[int], list[float]]:
    """(steps, losses) of one eval set, over the records that measured it."""
    steps, losses = [], []
    for rec in eval_records:
        m = rec["sets"].get(name)
        if isinstance(m, dict) and m.get("loss") is not None:
            steps.append(rec["step"])
            losses.append(float(m["loss"]))
    return steps, losses


def eval_table(eval_records: list[dict]) -> list[dict]:
    """One row per eval set: step-0 (base) loss, last loss, and the change between them.

    The base is the set's earliest eval, which is step 0 by contract (step 0 is always
    evaluated); ``base_step`` records it so a set added mid-run is not mistaken for one
    compared with the base model.
    """
    rows = []
    records = sorted(eval_records, key=lambda r: r["step"])
    for name in _set_names(records):
        steps, losses = _series(records, name)
        if not steps:
            continue
        base, final = losses[0], losses[-1]
        rows.append(
            {
                "set": name,
                "base_loss": base,
                "final_loss": final,
                "abs_change": final - base,
                "rel_change": rel_change(final, base),
                "final_step": steps[-1],
                "base_step": steps[0],
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table for the terminal, the final step in the title line."""
    if not rows:
        return "eval loss: no eval records yet"
    final_step = max(r["final_step"] for r in rows)
    header = ("set", "step 0 loss", "final loss", "change", "change %")
    body = [
        (
            str(r["set"]),
            f"{r['base_loss']:.4f}",
            f"{r['final_loss']:.4f}",
            f"{r['abs_change']:+.4f}",
            change_pct(r["rel_change"]),
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        # set name left-aligned, numbers right-aligned so the decimal points line up
        parts = [cells[0].ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    title = f"eval loss at step {final_step} vs step 0 (base model); negative change = gain"
    return "\n".join([title, line(header), rule, *(line(b) for b in body)])


# --------------------------------------------------------------------------- plots


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Centered moving average that skips non-finite points and does not shrink at the ends.

    Centered (not an EMA) so the smoothed line does not lag behind the raw one.
    """
    n, half = len(values), window // 2
    out = []
    for i in range(n):
        chunk = [v for v in values[max(0, i - half) : i + half + 1] if math.isfinite(v)]
        out.append(sum(chunk) / len(chunk) if chunk else math.nan)
    return out


def _new_figure(title: str, xlabel: str, ylabel: str) -> tuple[Figure, Axes]:
    """A figure outside pyplot: no global state, no GUI backend, safe in a web server."""
    # deferred: matplotlib loads only when a plot is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 4.5), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    return fig, ax


def _save(fig: Figure, path: Path) -> Path:
    """Tight layout, then an atomic write so a reader never sees half a PNG."""
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        if hi - lo < 2:  # one step only (a fresh run): show whole steps around it
            mid = round((lo + hi) / 2)
            ax.set_xlim(mid - 1, mid + 1)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _legend_right(ax: Axes, title: str | None = None) -> None:
    """Legend outside the plot area, so it never hides a curve."""
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", title=title)


def _set_colors(names: Sequence[str]) -> dict[str, str]:
    """One tab10 color per eval set, the same in every plot."""
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def plot_run(run_dir: Path) -> list[Path]:
    """Write loss.png, lr.png and eval_change.png under ``run_dir/plots``.

    A plot with nothing to show is not written (no lr.png before the first train step,
    no eval_change.png before the first eval), so the returned list is what exists.
    """
    run_dir = Path(run_dir)
    train, evals = read_metrics(run_dir / METRICS_FILE)
    out_dir = run_dir / PLOTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    names = _set_names(evals)
    colors = _set_colors(names)
    written: list[Path] = []

    train_steps = [r["step"] for r in train if r.get("loss") is not None]
    train_loss = [float(r["loss"]) for r in train if r.get("loss") is not None]

    if train_steps or evals:
        fig, ax = _new_figure("Loss", "step", "loss")
        if train_steps:
            window = min(max(len(train_loss) // 20, 1), 51)
            if window > 1:
                raw = {"alpha": 0.25, "lw": 0.8, "label": "train (raw)"}
                ax.plot(train_steps, train_loss, color=_TRAIN_COLOR, **raw)
                smooth = _smooth(train_loss, window)
                label = f"train (mean of {window})"
                ax.plot(train_steps, smooth, color=_TRAIN_COLOR, lw=1.6, label=label)
            else:
                ax.plot(train_steps, train_loss, color=_TRAIN_COLOR, lw=1.4, label="train")
        for name in names:
            steps, losses = _series(evals, name)
            ax.plot(steps, losses, color=colors[name], label=f"eval: {name}", **_EVAL_STYLE)
        _legend_right(ax)
        written.append(_save(fig, out_dir / "loss.png"))

    lr_points = [(r["step"], float(r["lr"])) for r in train if r.get("lr") is not None]
    if lr_points:
        fig, ax = _new_figure("Learning rate", "step", "learning rate")
        ax.plot([s for s, _ in lr_points], [v for _, v in lr_points], color="C0", lw=1.4)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        ax.set_ylim(bottom=0)
        written.append(_save(fig, out_dir / "lr.png"))

    if evals:
        title = "Eval loss change vs step 0 (base model)"
        fig, ax = _new_figure(title, "step", "loss change vs step 0 (%)")
        ax.axhline(0.0, color="0.3", lw=1.0, ls="--")
        for name in names:
            steps, losses = _series(evals, name)
            rels = (rel_change(v, losses[0]) for v in losses)
            pct = [math.nan if r is None else 100 * r for r in rels]
            ax.plot(steps, pct, color=colors[name], label=name, **_EVAL_STYLE)
        # keep a band on both sides of 0 so each corner label sits on its own side of the line
        lo, hi = ax.get_ylim()
        pad = max(0.12 * (hi - lo), 1.0)  # at least +-1%: a flat start is not noise-sized
        ax.set_ylim(min(lo, -pad), max(hi, pad))
        for y, va, text in ((0.98, "top", "above 0: forgetting (loss up)"),
                            (0.02, "bottom", "below 0: gain (loss down)")):  # fmt: skip
            ax.text(0.01, y, text, transform=ax.transAxes, va=va, ha="left", **_NOTE_STYLE)
        ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:+g}%" if v else "0%")
        _legend_right(ax, title="eval set")
        written.append(_save(fig, out_dir / "eval_change.png"))

    return written


# --------------------------------------------------------------------------- report


def _summary(train: Sequence[dict], evals: Sequence[dict]) -> list[str]:
    """Summary bullets: steps, tokens, realised mixture, throughput, eval rounds."""
    if not train:
        lines = ["- steps: 0 (no training steps logged yet)"]
    else:
        last = train[-1]
        lines = [f"- steps: {last['step']:,}"]
        if last.get("tokens") is not None:
            lines.append(f"- tokens seen: {int(last['tokens']):,}")
        by_source = last.get("tokens_by_source") or {}
        total = sum(by_source.values())
        if by_source and total:
            parts = [f"{cell(k)} {int(v):,} ({100 * v / total:.1f}%)" for k, v in by_source.items()]
            lines.append("- tokens per source (realised share): " + ", ".join(parts))
        # the first logged step carries warm-up (allocation, compile), so it is left out
        steady = train[1:]
        rates = [float(r["tokens_per_s"]) for r in steady if r.get("tokens_per_s")]
        if rates:
            line = (
                f"- mean throughput: {sum(rates) / len(rates):,.1f} tokens/s "
                f"(over {len(rates)} steps, first step excluded)"
            )
            per_device = [r.get("tokens_per_s_per_device") for r in steady]
            if None not in per_device and per_device != rates:
                line += f"; {sum(per_device) / len(per_device):,.1f} per device"
            mfu = [r.get("mfu") for r in steady]
            if None not in mfu:
                line += f"; MFU {sum(mfu) / len(mfu):.1%}"
            lines.append(line)
        else:
            lines.append("- mean throughput: n/a (needs more than one step)")
        if last.get("peak_mem_gib") is not None:
            lines.append(f"- peak memory (rank 0): {last['peak_mem_gib']:.2f} GiB")
    if evals:
        steps = ", ".join(str(r["step"]) for r in evals)
        lines.append(f"- eval rounds: {len(evals)} (steps {steps})")
    else:
        lines.append("- eval rounds: 0")
    return lines


def _reading(rel: float) -> str:
    """Plain words for a loss change, so gain and forgetting are read the same way."""
    if not finite(rel):
        return "n/a"
    if abs(rel) < _NO_CHANGE:
        return "no change"
    return "gain (loss down)" if rel < 0 else "regression (loss up)"


def _eval_markdown(rows: Sequence[dict]) -> list[str]:
    """The eval table as markdown, with a 'reading' column for gain / regression."""
    if not rows:
        return ["No eval records yet."]
    final_step = max(r["final_step"] for r in rows)
    lines = [
        f"Loss per held-out set at step {final_step} against step 0 (the base model). "
        "Lower is better: a negative change is a gain, a positive one is forgetting.",
        "",
        "| set | step 0 loss | final loss | change | change % | reading |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {cell(r['set'])} | {r['base_loss']:.4f} | {r['final_loss']:.4f} "
            f"| {r['abs_change']:+.4f} | {change_pct(r['rel_change'])} | {_reading(r['rel_change'])} |"
        )
    late = [r["set"] for r in rows if r.get("base_step", 0) != 0]
    if late:
        lines += [
            "",
            f"Not evaluated at step 0 (compared with their first eval): {', '.join(late)}.",
        ]
    return lines


def write_report(run_dir: Path, title: str, notes: dict[str, str] | None = None) -> Path:
    """Write ``run_dir/report.md`` (and its plots) from the run's metrics; return its path.

    Plots are regenerated first so the report never links a stale or missing image.
    """
    run_dir = Path(run_dir)
    train, evals = read_metrics(run_dir / METRICS_FILE)
    plots = plot_run(run_dir)

    lines = [f"# {' '.join(title.split())}", "", "## Summary", "", *_summary(train, evals)]
    lines += ["", "## Eval loss", "", *_eval_markdown(eval_table(evals))]
    events = read_events(run_dir / METRICS_FILE)
    extra = long_context_markdown(events)
    extra += lengths_markdown(events, (train[-1].get("tokens_by_source") or {}) if train else {})
    lines += ["", *extra] if extra else []
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- **{cell(k)}**: {cell(v)}" for k, v in notes.items()]
    if plots:
        lines += ["", "## Plots", ""]
        for p in plots:
            rel = p.relative_to(run_dir).as_posix()
            lines += [f"![{p.stem}]({rel})", ""]
    path = run_dir / REPORT_FILE
    write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
