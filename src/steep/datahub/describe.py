"""Views of datasets: `steep data list` and `steep data show`, and the studio's dataset page."""

from __future__ import annotations

from collections import defaultdict

from steep.artifacts.fmt import data_size, num, text_table
from steep.data.docshards import read_docs
from steep.datahub.catalog import Catalog, DatasetVersion
from steep.datahub.exclusions import read_exclusions

PAGE_ROWS = 20_000  # a page reads at most this many exclusions for its examples


def _langs(manifest: dict, top: int = 4) -> str:
    langs = manifest.get("languages") or {}
    total = sum(langs.values()) or 1
    shown = [f"{k} {v / total:.0%}" for k, v in list(langs.items())[:top]]
    if len(langs) > top:
        shown.append(f"+{len(langs) - top} more")
    return ", ".join(shown) or "-"


def list_datasets(catalog: Catalog) -> str:
    names = catalog.names()
    if not names:
        return "no datasets yet: steep data add NAME PATH..."
    rows = [("dataset", "versions", "documents", "size", "languages", "made by")]
    for name in names:
        latest = catalog.get(name)
        m = latest.manifest
        made = m["created_by"]["command"] + (f" from {m['parent']}" if m.get("parent") else "")
        versions = ",".join(map(str, catalog.versions(name)))
        rows.append(
            (latest.ref, versions, f"{m['documents']:,}", data_size(m["bytes"]), _langs(m), made)
        )
    return text_table(rows, rule=True)


def show_dataset(ds: DatasetVersion, examples: int = 2, example_chars: int = 160) -> str:
    m = ds.manifest
    out = [
        f"{ds.ref}  ({ds.path})",
        f"created {m['created']} by `steep data {m['created_by']['command']}`",
    ]
    if m.get("parent"):
        out.append(f"parent: {m['parent']}")
    made = m["created_by"]
    if made["command"] == "mine":
        langs = f", languages {', '.join(made['languages'])}" if made.get("languages") else ""
        out.append(f"mined with classifier {made['classifier']} at >= {made['threshold']}{langs}")
        sample = made.get("labelled")
        if sample:
            out.append(
                f"labelled sample ({sample['documents']} documents): precision "
                f"{num(sample['precision'], '.3f', 'n/a')}, recall {num(sample['recall'], '.3f', 'n/a')}"
            )
    out.append(
        f"documents: {m['documents']:,}   text: {data_size(m['bytes'])}   shards: {len(ds.shards)}"
    )
    out.append(f"languages: {_langs(m, top=8)}")
    inputs = m.get("inputs", [])
    out.append(f"inputs: {len(inputs)} files")
    for item in inputs[:10]:
        skipped = sum(item.get("skipped", {}).values())
        note = f", {skipped} skipped" if skipped else ""
        out.append(
            f"  {item['path']}  sha256 {item['sha256'][:12]}  {item['documents']:,} docs{note}"
        )
    if len(inputs) > 10:
        out.append(f"  ... and {len(inputs) - 10} more")
    if m.get("skipped"):
        out.append("skipped at ingest: " + ", ".join(f"{v} {k}" for k, v in m["skipped"].items()))
    out += format_lines(m)
    out += preview_lines(ds)
    if m.get("funnel"):
        out.append("")
        out.append(funnel_table(m["funnel"]))
    drops = drop_examples(ds, examples, example_chars)
    if drops:
        out.append("")
        out.append(
            f"examples (up to {examples} per reason; all of them in {ds.path / 'exclusions'}):"
        )
        for d in drops:
            out.append(f"  [{d['step']}] {d['action']} {d['reason']}")
            for r in d["examples"]:
                detail = f" ({r['detail']})" if r["detail"] else ""
                out.append(f"    {r['where']}{detail}")
                if r["text"]:
                    out.append(f"      {r['text']}")
    return "\n".join(out)


def format_lines(manifest: dict) -> list[str]:
    """Per input format (``data add``'s): files read, documents extracted, skips by reason."""
    formats = manifest.get("formats") or {}
    if not formats:
        return []
    out = ["by format:"]
    for name, f in formats.items():
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(f["skipped"].items()))
        out.append(
            f"  {name}: {f['files']:,} files read, {f['documents']:,} documents extracted"
            + (f", skipped {skipped}" if skipped else "")
        )
    made = manifest.get("created_by", {})
    if made.get("template"):
        out.append(f"template ({made['template']['origin']}): {made['template']['source']!r}")
    return out


def preview_lines(ds: DatasetVersion, n: int = 2, chars: int = 160) -> list[str]:
    """The first documents beside their source (file:line, title, URL): what was extracted
    from what."""
    out = []
    for doc in preview(ds, n, chars * 2):
        title = f"  {doc['title']!r}" if doc.get("title") else ""
        out.append(f"  {doc['where']}{title}")
        out.append(f"    {_short(doc['text'], chars)}")
    return ["", f"first documents (of {ds.manifest['documents']:,}):", *out] if out else []


def funnel_table(funnel: list[dict]) -> str:
    rows = [("step", "docs in", "docs out", "kept", "chars out", "edited", "top drop reasons")]
    for f in funnel:
        kept = f["docs_out"] / f["docs_in"] if f["docs_in"] else 1.0
        top = sorted(f["dropped"].items(), key=lambda kv: -kv[1])[:3]
        reasons = ", ".join(f"{r} {n}" for r, n in top) or "-"
        rows.append(
            (
                f["step"],
                f"{f['docs_in']:,}",
                f"{f['docs_out']:,}",
                f"{kept:.1%}",
                f"{f['chars_out']:,}",
                f"{sum(f['edited'].values()):,}",
                reasons,
            )
        )
    return text_table(rows, rule=True)


def exclusion_examples(
    ds: DatasetVersion, per_reason: int, max_rows: int | None = None
) -> dict[tuple[str, str, str], list[dict]]:
    """Up to ``per_reason`` rows per (step, action, reason), reading at most ``max_rows``
    (a page must not read a million exclusions to show three)."""
    found: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for n, row in enumerate(read_exclusions(ds.exclusions)):
        if max_rows is not None and n >= max_rows:
            break
        key = (row["step"], row["action"], row["reason"])
        if len(found[key]) < per_reason:
            found[key].append(row)
    return dict(found)


def drop_examples(
    ds: DatasetVersion, per_reason: int, example_chars: int = 160, max_rows: int | None = None
) -> list[dict]:
    """Each (step, action, reason) with up to ``per_reason`` examples, as ``steep data show``
    prints them and the studio's dataset page lists them: where, detail, the text cut short;
    ``count`` is how many the funnel (or ingest) says the reason took."""
    out = []
    for (step, action, reason), rows in exclusion_examples(ds, per_reason, max_rows).items():
        examples = [
            {
                "where": _where(r),
                "detail": r["detail"] or "",
                "text": _short(r["text"], example_chars),
            }
            for r in rows
        ]
        out.append({"step": step, "action": action, "reason": reason,
                    "count": _reason_count(ds.manifest, step, action, reason),
                    "examples": examples})  # fmt: skip
    return out


def _reason_count(manifest: dict, step: str, action: str, reason: str) -> int | None:
    if step == "ingest":
        return (manifest.get("skipped") or {}).get(reason)
    for f in manifest.get("funnel") or []:
        if f["step"] == step:
            return (f["dropped"] if action == "drop" else f["edited"]).get(reason)
    return None


def _short(text: str | None, chars: int) -> str:
    text = " ".join((text or "").split())
    return text[:chars] + "..." if len(text) > chars else text


def preview(ds: DatasetVersion, n: int = 3, chars: int = 600) -> list[dict]:
    """The first ``n`` documents of a version (id, language, text cut at ``chars``): what
    the studio's dataset page shows of the text itself. Reads one batch, not the shards."""
    out: list[dict] = []
    for shard in ds.shards:
        for doc in read_docs(shard, batch_size=max(n, 1)):
            text = doc.text if len(doc.text) <= chars else doc.text[:chars] + "..."
            out.append({"id": doc.id, "lang": doc.meta.get("lang"), "text": text,
                        "where": _source(doc.meta), "title": doc.meta.get("title")})  # fmt: skip
            if len(out) >= n:
                return out
    return out


def _source(meta: dict) -> str:
    """Where a document came from: its URL, a repository's file, or file:line."""
    if meta.get("url"):
        return meta["url"]
    source = meta.get("source") or ""
    if meta.get("format") == "code":  # a file of the repository, or the whole of it
        return f"{source}/{meta['path']}" if "language" in meta else source
    return f"{source}:{meta['line']}" if meta.get("line") is not None else source


def skipped_at_ingest(ds: DatasetVersion, per_reason: int = 3) -> list[dict]:
    """What ``data add`` could not read, by reason: count, and examples as file:line."""
    counts = ds.manifest.get("skipped") or {}
    if not counts:
        return []
    examples = exclusion_examples(ds, per_reason, max_rows=PAGE_ROWS)
    out = []
    for reason, n in counts.items():
        rows = [r for (step, _, why), rs in examples.items() if step == "ingest" and why == reason
                for r in rs]  # fmt: skip
        out.append({"reason": reason, "count": n, "where": [_where(r) for r in rows],
                    "detail": [r["detail"] for r in rows]})  # fmt: skip
    return out


def _where(row: dict) -> str:
    if not row["path"]:
        return row["id"] or ""
    return f"{row['path']}:{row['line']}" if row["line"] is not None else row["path"]
