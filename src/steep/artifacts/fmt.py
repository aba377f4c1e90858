"""How numbers and table cells are written in reports, cards and terminal tables.

One place, so "unknown" reads the same everywhere: ``MISSING`` for None, NaN or a value
that is not a number (see ``steep.artifacts.scores`` for when a score is None).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from steep.artifacts.scores import finite

MISSING = "–"


def pct(x: Any, digits: int = 2, missing: str = MISSING) -> str:
    """A fraction as a signed percent: 0.0123 -> '+1.23%'."""
    return f"{100 * x:+.{digits}f}%" if finite(x) else missing


def num(x: Any, spec: str = ".4f", missing: str = MISSING) -> str:
    """A number with a format spec ('.4f', ',', '.3g', 'g'); MISSING for anything else."""
    return format(x, spec) if finite(x) else missing


def signed(x: Any, digits: int = 4, missing: str = MISSING) -> str:
    return f"{x:+.{digits}f}" if finite(x) else missing


def change_pct(rel: Any) -> str:
    """A relative change for the run report: '-10.9%', two decimals under 1% so a small
    general-domain regression still shows, '0.00%' for no change, 'n/a' when unknown."""
    if not finite(rel):
        return "n/a"
    value = 100 * rel
    text = f"{value:+.2f}%" if abs(value) < 1 else f"{value:+.1f}%"
    return "0.00%" if text in ("+0.00%", "-0.00%") else text


def data_size(n: float) -> str:
    """Bytes of data in decimal units, as disks and downloads count: '20.9 GB', '512 B'."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"


def memory_size(gib: float) -> str:
    """Device memory in binary units, as the driver counts: '12.3 GiB', '512 MiB'."""
    return f"{gib:.1f} GiB" if gib >= 0.1 else f"{gib * 1024:.0f} MiB"


def duration(seconds: float) -> str:
    """A span from milliseconds to years, three figures: '850 ms', '42 s', '3.5 h', '12 days'."""
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} h"
    days = seconds / 86400
    return f"{days:.3g} days" if days < 1000 else f"{days:,.0f} days"


def clock(seconds: float) -> str:
    """A wait or an ETA as a clock reads: '4m05s', '1h12m'."""
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def timestamp(value: Any, missing: str = "") -> str:
    """When something happened, one way everywhere: '2026-12-07 22:56 UTC', from epoch
    seconds or an ISO 8601 string (one without a zone is read as UTC); ``missing`` else."""
    if isinstance(value, bool) or value in (None, ""):
        return missing
    try:
        if isinstance(value, int | float):
            when = datetime.fromtimestamp(float(value), timezone.utc)
        else:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return str(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cell(x: Any) -> str:
    """One line of markdown: whitespace runs collapsed, pipes escaped, so a value cannot
    break a table or a list."""
    return " ".join(str(x).split()).replace("|", "\\|")


def multiline_cell(x: Any) -> str:
    """A markdown table cell that keeps its lines (as <br>): for text samples."""
    text = str(x).replace("|", "\\|").replace("\r", "")
    return "<br>".join(line.rstrip() for line in text.split("\n")) or " "


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int
) -> list[str]:
    """A markdown table; columns from ``right_from`` on are right-aligned (numbers)."""
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def text_table(rows: Sequence[Sequence[str]], rule: bool = False) -> str:
    """Left-aligned columns for a terminal; the first row is the header, underlined with
    dashes when ``rule``."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
