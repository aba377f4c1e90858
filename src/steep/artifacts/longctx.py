"""Passkey and loss-by-position results as markdown: one definition for ``steep eval``'s
eval.md and a run's report.md (torch-free, so the report and the hub read it cheaply)."""

from __future__ import annotations

POSITION_NOTE = (
    "Each window is one document read alone: at position p the model has p tokens of "
    "context. Loss that keeps falling with position means the far context is used."
)


def skipped_line(block: dict[str, object]) -> str | None:
    """The one line that says which lengths were not run, or None."""
    skipped = block.get("skipped") or []
    if not skipped:
        return None
    lengths = ", ".join(str(n) for n in skipped)  # type: ignore[union-attr]
    return (
        f"passkey lengths {lengths} are beyond the model's {block['max_positions']} positions: "
        "not run (extend its context with model.rope_scaling and train on long text first)"
    )


def passkey_markdown(blocks: dict[str, dict[str, object]]) -> list[str]:
    """Accuracy (key loss) by length x depth, one table per model."""
    lines: list[str] = []
    for label, block in blocks.items():
        grid: dict = block["grid"]  # type: ignore[assignment]
        depths = [f"{d:g}" for d in block["depths"]]  # type: ignore[union-attr]
        lines += [
            f"**{label}**: exact-match accuracy (key loss, nats per key token) by length and "
            f"depth, {block['trials']} keys per cell",
            "",
            "| length | " + " | ".join(f"depth {d}" for d in depths) + " |",
            "|---:|" + "---:|" * len(depths),
        ]
        for length, row in grid.items():
            cells = [f"{row[d]['accuracy']:.0%} ({row[d]['key_loss']:.2f})" for d in depths]
            lines.append(f"| {length} | " + " | ".join(cells) + " |")
        note = skipped_line(block)
        lines += (["", note] if note else []) + [""]
    return lines


def position_markdown(blocks: dict[str, dict[str, dict[str, object]]]) -> list[str]:
    """One table per eval set: rows are position buckets, columns the models."""
    lines: list[str] = []
    sets = sorted({s for per_model in blocks.values() for s in per_model})
    for name in sets:
        models = [m for m in blocks if name in blocks[m]]
        first = blocks[models[0]][name]
        lines += [
            f"**{name}**: mean loss (nats/token) by position, {first['windows']} windows of "
            f"{first['seq_len']} tokens, each from one document",
            "",
            "| positions | " + " | ".join(models) + " |",
            "|---|" + "---:|" * len(models),
        ]
        for i, b in enumerate(first["buckets"]):  # type: ignore[arg-type]
            cells = [f"{blocks[m][name]['buckets'][i]['loss']:.4f}" for m in models]  # type: ignore[index]
            lines.append(f"| {b['positions']} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def long_context_markdown(events: list[dict]) -> list[str]:
    """report.md's section for a run past its base's context: its ``long_context`` events
    at step 0 and at the end, side by side."""
    events = [e for e in events if e.get("event") == "long_context"]
    if not events:
        return []
    first, last = events[0], events[-1]
    pair = [first] if first is last else [first, last]
    label = {id(e): f"step {e['step']}" for e in pair}
    old, seq_len = first["old_len"], first["seq_len"]
    lines = [
        "## Long context",
        "",
        f"data.seq_len {seq_len} is past the {old} positions the base knew: passkey retrieval "
        "and loss by position at step 0 and at the end show whether the new positions are "
        f"used; the eval sets at the old length ({old}) show what short-context ability the "
        "extension cost.",
        "",
        "### Passkey retrieval",
        "",
        *passkey_markdown({label[id(e)]: e["passkey"] for e in pair}),
    ]
    positions = {label[id(e)]: e.get("position_loss") or {} for e in pair}
    if any(positions.values()):
        lines += ["### Loss by position", "", POSITION_NOTE, "", *position_markdown(positions)]
    missing = first.get("no_long_documents") or []
    if missing:
        lines += [f"No held-out document of {seq_len + 1} tokens in: {', '.join(missing)}.", ""]
    short_first, short_last = first.get("short") or {}, last.get("short") or {}
    if short_first:
        lines += [
            f"### Eval sets at the old length ({old})",
            "",
            "| set | step 0 loss | final loss | change |",
            "|---|---:|---:|---:|",
        ]
        for name, was in short_first.items():
            now = short_last.get(name, was)
            lines.append(f"| {name} | {was:.4f} | {now:.4f} | {now - was:+.4f} |")
        lines.append("")
    return lines


def lengths_markdown(events: list[dict], tokens_by_source: dict[str, int]) -> list[str]:
    """report.md's tokens by document-length bucket, per source: each bucket's share of the
    source's stream as the run reads it, and the tokens trained from it (that share of the
    source's tokens: exact over whole epochs, expected within one)."""
    event = next((e for e in events if e.get("event") == "data_lengths"), None)
    if event is None:
        return []
    seq_len = event["seq_len"]
    lines = [
        "## Tokens by document length",
        "",
        "Each source's stream as the run reads it (after its length rule; an upsampled "
        "document counted each time it is read). A window holds parts of every document it "
        f"spans; documents of {seq_len + 1}+ tokens fill a window of {seq_len} alone.",
        "",
    ]
    for name, rec in event["sources"].items():
        total = sum(b["tokens"] for b in rec["buckets"].values()) or 1
        trained = tokens_by_source.get(name)
        lines += [
            f"**{name}** ({rec['rule']}; longest {rec['longest']:,} tokens)",
            "",
            "| document length | documents | share of tokens | tokens trained |",
            "|---|---:|---:|---:|",
        ]
        for label, b in rec["buckets"].items():
            share = b["tokens"] / total
            read = f"{round(share * trained):,}" if trained is not None else "-"
            lines.append(f"| {label} | {b['documents']:,} | {share:.1%} | {read} |")
        lines.append("")
    return lines
