"""Model cards: MODEL/README.md rendered from the lineage and the eval report.

A card steep wrote carries ``CARD_MARK``, so a sync may rewrite it; a README.md someone
else wrote is kept. Numbers are written with ``steep.artifacts.fmt`` and changes scored with
``steep.artifacts.scores``, so an undefined change (a zero or non-finite baseline) reads "–".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steep.artifacts.atomic import write_text
from steep.artifacts.fingerprint import file_sha256
from steep.artifacts.fmt import MISSING, cell, num, pct
from steep.artifacts.lineage import Lineage, parse_lineage, try_read_lineage
from steep.artifacts.scores import CHANGE_LEGEND, rel_change, role_changes
from steep.data.selection import slice_label
from steep.hub.scan import eval_report_path, norm_ref, read_json
from steep.workspace import CARD_FILE, EVAL_DIR, EVAL_JSON, LINEAGE_FILE, MANIFEST_FILE, Workspace

CARD_MARK = "<!-- steep model card:"
LEGEND_LINE = f"{CHANGE_LEGEND[0].upper()}{CHANGE_LEGEND[1:]}."  # under each table of changes  # a README.md with this line is ours to rewrite


def training_change(model: dict[str, Any]) -> dict[str, Any] | None:
    """Domain gain and general regression from the run's own eval (loss, step 0 vs end).

    For a model no ``steep eval`` has scored yet: the training run already measured both on
    its held-out sets, by the same rule as the eval report (fractions; gain > 0 is better,
    regression > 0 is worse). None when the run logged no eval of either role.
    """
    lineage, _ = try_read_lineage(Path(model["path"])) if model.get("path") else (None, None)
    head = lineage.training_headline() if lineage else None
    if head is None:
        return None
    return {
        "domain_gain": head.domain_gain,
        "general_regression": head.general_regression,
        "metric": "train eval loss",
    }


def listed_change(model: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Domain gain and general regression as the model lists show them, and whether any
    came from training: the ``steep eval`` report's, each one it left unknown (it scored
    no set of that role, e.g. only ``--run-windows`` or samples) taken from the run's own
    step-0-vs-end eval. An eval report with no headline used to hide what training measured."""
    ev = model.get("eval") or {}
    train = training_change(model) or {}
    out, from_training = {}, False
    for key in ("domain_gain", "general_regression"):
        out[key] = ev.get(key)
        if out[key] is None and train.get(key) is not None:
            out[key], from_training = train[key], True
    return out, from_training


def try_write_card(model_dir: Path, name: str, home: Path | None = None) -> None:
    try:
        write_model_card(model_dir, name, home)
    except OSError as exc:
        print(f"warning: could not write the model card in {model_dir}: {exc}")


def write_model_card(
    model_dir: Path, name: str | None = None, home: Path | None = None
) -> Path | None:
    """(Re)write MODEL/README.md from the lineage and the eval report.

    A README.md someone else wrote (no steep marker) is kept; returns None then.
    """
    model_dir = Path(model_dir)
    card = model_dir / CARD_FILE
    current = card.read_text(encoding="utf-8", errors="replace") if card.exists() else None
    if current is not None and CARD_MARK not in current:
        return None
    lineage, _ = try_read_lineage(model_dir)
    report, _ = read_json(eval_report_path(model_dir))
    text = render_model_card(name or model_dir.name, lineage or Lineage(), report, home)
    if current == text:
        return card
    write_text(card, text)
    return card


def manifest_hash(home: Path | None, ref: str | None) -> str | None:
    """sha256 of a dataset version's manifest (which lists its inputs' hashes)."""
    name, _, version = (norm_ref(ref) or "").partition("@")
    if home is None or not version:
        return None
    path = Workspace(Path(home)).dataset_version(name, int(version)) / MANIFEST_FILE
    try:
        return file_sha256(path)
    except OSError:
        return None


def render_model_card(
    name: str,
    lineage: Lineage | Mapping[str, Any],
    report: dict[str, Any] | None,
    home: Path | None = None,
) -> str:
    """A Hugging Face model card: front matter, base, data, recipe, metrics, eval table.

    ``home`` is the workspace, to hash the manifests of the dataset versions the run read.
    """
    lin = lineage if isinstance(lineage, Lineage) else parse_lineage(dict(lineage))
    config = lin.config or {}
    train = config.get("train") if isinstance(config.get("train"), dict) else {}
    source = str(lin.base_source or "unknown")
    hub_id = source.removeprefix("hub:") if source.startswith("hub:") else None
    names = lin.base_names
    lines = ["---", "library_name: transformers", "tags:", "- steep", "- continued-pretraining"]
    if lin.kind == "merge":
        lines.append("- merge")
    if hub_id:
        lines.append(f"base_model: {hub_id}")
    lines += [
        "---",
        f"{CARD_MARK} generated from {LINEAGE_FILE} and {EVAL_DIR}/{EVAL_JSON}; edits are"
        " overwritten -->",
        "",
        f"# {name}",
        "",
    ]
    shown = names[0] if names else source
    if lin.kind == "cpt":
        lines.append(
            f"Continued pretraining of **{shown}** with steep {lin.steep_version or ''}"
            f" ({lin.created or ''})."
        )
    elif lin.kind == "base":
        lines.append(f"Base model converted from `{lin.converted_from}`.")
    elif lin.kind == "merge" and isinstance(lin.merge, dict):
        lines += merge_lines(lin.merge)
    ext = lin.vocab_extension
    if isinstance(ext, dict):
        lines.append(
            f"Vocabulary extension of **{shown}**: {ext.get('added')} new tokens"
            f" ({ext.get('lang') or 'target language'}; ids {ext.get('first_new_id')}+), new"
            f" embedding rows initialised by `{ext.get('init')}`. Not trained yet: continue"
            " pretraining from it (`train.embedding_warmup_steps` trains the new rows first)."
        )
    lines += ["", "## Base model", ""]
    lines.append(f"- source: `{source}`")
    if names:
        lines.append(f"- known as: {', '.join(map(str, names))}")
    if lin.base and (lin.base.lineage or {}).get("kind") == "cpt":
        lines.append("- itself a steep continued-pretraining model (see its own card)")
    if lin.gguf_sha256:
        lines.append(f"- GGUF sha256: `{lin.gguf_sha256}`")
    if lin.base and lin.base.tokenizer_sha256:
        lines.append(f"- tokenizer sha256: `{lin.base.tokenizer_sha256}`")
    lines += _data_section(lin, home) + _mix_section(lin)
    lines += _recipe_section(lin, config, train)
    lines += _training_loss_section(lin)
    ev = report or lin.eval
    if isinstance(ev, dict):
        lines += _eval_section(ev)
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'model = AutoModelForCausalLM.from_pretrained("PATH_OR_REPO")',
        'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_REPO")',
        "```",
        "",
        f"Full lineage (config, data hashes, metrics) is in `{LINEAGE_FILE}`.",
        "",
    ]
    return "\n".join(lines)


def merge_lines(merge: dict[str, Any]) -> list[str]:
    """What a ``steep models merge`` model is: its parents, the method, its number."""
    parents = merge.get("parents") or {}
    if merge.get("method") == "chat-vector":
        what = (
            f"Chat-vector merge: **{parents.get('model')}** (continued pretraining) + "
            f"{num(merge.get('weight'), 'g')} x (**{parents.get('instruct')}** (instruct) - "
            f"**{parents.get('base')}** (base)); the instruct model's chat template and "
            "generation config are carried over. Not fine-tuned after the merge."
        )
    elif merge.get("mergekit"):
        a, kit = merge.get("alpha"), merge["mergekit"]
        density = f", density {num(kit.get('density'), 'g')}" if kit.get("density") else ""
        what = (
            f"{merge.get('method')} merge by mergekit {kit.get('version')}: **{parents.get('model')}** "
            f"(continued pretraining) at weight {num(a, 'g')}{density} onto **{parents.get('base')}** "
            "(base). Not trained after the merge."
        )
    else:
        a = merge.get("alpha")
        what = (
            f"Linear weight merge: (1 - {num(a, 'g')}) x **{parents.get('base')}** (base) + "
            f"{num(a, 'g')} x **{parents.get('model')}** (continued pretraining), alpha "
            f"{num(a, 'g')}. Not trained after the merge."
        )
    vocab = (merge.get("vocab") or {}).get("note")
    lines = [what, ""]
    if vocab:
        lines.append(f"Embedding rows: {vocab}.")
    lines.append(
        f"On the run's eval sets ({merge.get('rule') or 'its eval rule'}): domain gain "
        f"{pct(merge.get('domain_gain'), 2)}, general regression "
        f"{pct(merge.get('general_regression'), 2)} against the base."
    )
    return lines


def _data_section(lin: Lineage, home: Path | None) -> list[str]:
    if not lin.data:
        return []
    lines = [
        "",
        "## Training data",
        "",
        "| source | weight | share | dataset | files (sha256) | train split tokens | tokens trained on |",
        "|---|---:|---:|---|---|---:|---:|",
    ]
    seen = lin.tokens_by_source
    for d in lin.data:
        ds = d.dataset or {}
        ref = ds.get("ref") if isinstance(ds.get("ref"), str) else None
        files = d.files
        if ds:
            hashes = f"manifest {(manifest_hash(home, ref) or 'not found')[:16]}"
        else:
            hashes = "<br>".join(
                f"`{Path(str(f.get('path', ''))).name}` {str(f.get('sha256', ''))[:16]}"
                for f in files[:5]
                if isinstance(f, dict)
            )
            if len(files) > 5:
                hashes += f"<br>... {len(files) - 5} more"
        tokens = (d.splits.get("train") or {}).get("tokens")
        lines.append(
            f"| {cell(d.name)} | {num(d.weight, 'g')} | "
            f"{num(d.share, '.1%')} | {cell(slice_label(norm_ref(ref) or ref, ds) if ref else MISSING)} | "
            f"{hashes} | {num(tokens, ',')} | {num(seen.get(d.name) if d.name else None, ',')} |"
        )
    return lines


def _mix_section(lin: Lineage) -> list[str]:
    """Phases, changes of mix on resume and the forgetting budget's actions, when any."""
    lines: list[str] = []
    if lin.tokens_by_phase:
        sources = sorted({s for p in lin.tokens_by_phase.values() for s in p})
        lines += [
            "",
            "## Tokens per phase",
            "",
            "| phase | " + " | ".join(map(cell, sources)) + " |",
        ]
        lines.append("|---|" + "---:|" * len(sources))
        for phase, row in lin.tokens_by_phase.items():
            lines.append(
                f"| {cell(phase)} | " + " | ".join(num(row.get(s), ",") for s in sources) + " |"
            )
    for change in lin.mixture_changes:
        what = "; ".join(map(str, change.get("changed", [])))
        lines += ["", f"- mixture changed on resume at step {change.get('step')}: {cell(what)}"]
    budget = lin.forgetting_budget
    if isinstance(budget, dict):
        lines += ["", "## Forgetting budget", ""]
        lines.append(
            f"- max general regression {num(budget.get('max_regression'), '.2%')} on "
            f"{', '.join(map(str, budget.get('sets') or []))}; action {budget.get('action')}"
        )
        for act in budget.get("actions") or []:
            lines.append(f"- step {act.get('step')}: {cell(str(act.get('reason')))}")
        if not budget.get("actions"):
            lines.append("- no action was needed")
    return lines


def _recipe_section(lin: Lineage, config: dict[str, Any], train: dict[str, Any]) -> list[str]:
    if not train:
        return []
    steps, batch = train.get("steps"), train.get("global_batch_tokens")
    tokens = steps * batch if isinstance(steps, int) and isinstance(batch, int) else None
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    lines = [
        "",
        "## Recipe",
        "",
        "| lr_fraction | max LR | schedule | steps | tokens/step | tokens | seq_len |",
        "|---:|---:|---|---:|---:|---:|---:|",
        f"| {num(train.get('lr_fraction'), 'g')} | {num(lin.max_lr, '.3g')} | "
        f"{cell(train.get('schedule', MISSING))} | {num(steps, ',')} | {num(batch, ',')} | "
        f"{num(tokens, ',')} | {num(data.get('seq_len'), ',')} |",
    ]
    if lin.max_lr_source:
        lines += ["", f"Max LR = lr_fraction x {lin.max_lr_source}."]
    m = lin.method or {}
    if m:
        trained, total = m.get("trainable_params"), m.get("total_params")
        share = f" ({trained / total:.2%})" if trained and total else ""
        lines += [
            "",
            f"Method: **{cell(m.get('name', MISSING))}**, rank {num(m.get('rank'), 'd')}, alpha "
            f"{num(m.get('alpha'), 'g')} on {cell(', '.join(m.get('target_modules') or []))}; "
            f"embeddings {cell(m.get('embeddings', MISSING))} at "
            f"{num(m.get('embedding_lr_ratio'), 'g')} x max LR; {num(trained, ',')} of "
            f"{num(total, ',')} parameters trained{share}. This model has the adapter merged "
            f"in; the adapter alone is `{cell(m.get('adapter', MISSING))}/` in the run folder.",
        ]
    return lines


def _training_loss_section(lin: Lineage) -> list[str]:
    metrics = lin.metrics
    if metrics is None or not metrics.final:
        return []
    step = metrics.step if metrics.step is not None else "?"
    lines = [
        "",
        f"## Held-out loss during training (step 0 -> step {step})",
        "",
        "| set | base | final | change |",
        "|---|---:|---:|---:|",
    ]
    for set_name, loss in metrics.final.items():
        b = metrics.baseline.get(set_name)
        change = pct(rel_change(loss, b))  # "–" when the baseline is missing, 0 or not finite
        lines.append(f"| {cell(set_name)} | {num(b)} | {num(loss)} | {change} |")
    return [*lines, "", LEGEND_LINE]


def _eval_section(ev: dict[str, Any]) -> list[str]:
    head = ev.get("headline") or {}
    lines = ["", "## Evaluation", ""]
    if head:
        metric = head.get("metric", "bpb")
        roles = role_changes(head)  # the tables' sign: negative is better
        lines.append(
            f"Against the base ({metric}), the mean change on the domain sets "
            f"**{pct(roles['domain'])}**, on the general sets **{pct(roles['general'])}**."
        )
        lines.append("")
    lines += [
        "| set | role | base bpb | adapted bpb | change |",
        "|---|---|---:|---:|---:|",
    ]
    for set_name, s in (ev.get("sets") or {}).items():
        if not isinstance(s, dict):
            continue
        base, adapted = (s.get("base") or {}).get("bpb"), (s.get("adapted") or {}).get("bpb")
        lines.append(
            f"| {cell(set_name)} | {s.get('role') or MISSING} | {num(base)} | {num(adapted)} | "
            f"{pct(rel_change(adapted, base))} |"
        )
    lines += ["", LEGEND_LINE]
    tasks = ev.get("tasks") or {}
    if tasks:
        lines += ["", "| task | role | improvement (> 0 is better) |", "|---|---|---:|"]
        for task, t in tasks.items():
            if isinstance(t, dict):
                lines.append(
                    f"| {cell(task)} | {t.get('role') or MISSING} | {pct(t.get('improvement'))} |"
                )
    return lines
