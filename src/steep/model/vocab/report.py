"""The extension report: its file name and its plain-text table."""

from __future__ import annotations

from typing import Any

REPORT_FILE = "vocab_report.json"


def format_report(report: dict[str, Any]) -> str:
    """The extension report as a plain-text table."""
    old, new = report["fertility"]["old"], report["fertility"]["new"]
    lines = [
        f"added {report['added']:,} tokens ({report['merges_added']:,} merges); "
        f"held-out: {report['heldout_documents']:,} documents",
        "",
        f"{'tokenizer':<12}{'tokens/char':>12}{'tokens/word':>12}{'chars/token':>12}{'tokens':>10}",
    ]
    for name, f in (("old", old), ("new", new)):
        lines.append(
            f"{name:<12}{f['tokens_per_char']:>12.3f}{f['tokens_per_word']:>12.3f}"
            f"{f['chars_per_token']:>12.2f}{f['tokens']:>10,}"
        )
    cut = 1 - new["tokens"] / max(old["tokens"], 1)
    usage = report["usage"]
    lines.append(
        f"{cut:.1%} fewer tokens; new tokens are {usage['new_token_share']:.1%} of the held-out "
        f"tokens ({usage['new_tokens_seen']:,} of {usage['new_tokens']:,} seen)"
    )
    if report.get("initial_bpb"):
        lines += ["", f"{'initial model':<20}{'bits/byte':>10}"]
        for name, value in report["initial_bpb"].items():
            label = "base (old tok.)" if name == "base" else f"init {name}"
            lines.append(f"{label:<20}{value:>10.4f}")
        lines.append(f"(on {report['eval_characters']:,} held-out characters)")
    if report.get("examples"):
        lines.append("first new tokens: " + " | ".join(repr(t) for t in report["examples"][:12]))
    return "\n".join(lines)
