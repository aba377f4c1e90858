"""``steep models ...``: the Model Hub's commands (list, show, export, rm, push)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from steep.artifacts.fmt import num, pct, text_table, timestamp
from steep.artifacts.lineage import parse_lineage
from steep.data.selection import slice_label


def _pct(x: Any) -> str:
    return pct(x, 1, missing="-")


def cmd_list(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.hub import Hub, listed_change

    models = Hub().models()
    if args.json:
        print(json.dumps(models, indent=2, default=str))
        return 0
    if not models:
        print("no models yet: `steep train CONFIG.yaml` registers the one it makes")
        return 0
    rows = [["NAME", "KIND", "RUN", "CREATED", "DOMAIN GAIN", "GENERAL REGR.", "PATH"]]
    from_training = False
    for m in models:
        ev, trained = listed_change(m)  # unknown in the eval: the run's own step-0-vs-end
        from_training |= trained
        rows.append(
            [
                m["name"],
                m["kind"] or "-",
                m["run"] or "-",
                timestamp(m["created"], missing="-"),
                _pct(ev.get("domain_gain")),
                _pct(ev.get("general_regression")),
                m["path"],
            ]
        )
    print(text_table(rows))
    if from_training:
        print(
            "(no `steep eval` score yet for some models or roles: their change is the training run's"
        )
        print(" own held-out loss, step 0 vs end; `steep eval MODEL` scores bits per byte)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.hub import Hub

    hub = Hub()
    m = hub.model(args.name)
    if args.json:
        print(json.dumps(m, indent=2, default=str))
        return 0
    lineage = parse_lineage(m["lineage"] or {}, m["path"])
    train = (lineage.config or {}).get("train") or {}
    print(f"model    {m['name']} ({m['kind'] or 'unknown kind'})")
    print(f"path     {m['path']}")
    print(f"created  {m['created']}")
    print(f"base     {m['base'] or '-'}")
    if m["run"]:
        run = hub.run(m["run"])
        if run["base_model"]:
            print(f"         (registered model {run['base_model']})")
        print(f"run      {run['name']} [{run['status']}] {run['path']}")
        # the run's config says each source's language filter: two slices of one version
        configured = {
            src.get("name"): src
            for src in ((lineage.config or {}).get("data") or {}).get("sources") or []
            if isinstance(src, dict)
        }
        for s in run["sources"]:
            what = (
                slice_label(s["ref"], configured.get(s["source"]))
                if s["ref"]
                else ", ".join(s["paths"] or [])
            )
            print(f"  data   {s['source']}: {what} (weight {s['weight']:g})")
    if train:
        print(
            f"recipe   lr_fraction {train.get('lr_fraction')}, {train.get('steps')} steps x "
            f"{train.get('global_batch_tokens')} tokens, max LR {num(lineage.max_lr, '.3g', missing='-')}"
        )
    metrics = m["metrics"] or {}
    for name, loss in (metrics.get("final") or {}).items():
        base = (metrics.get("baseline") or {}).get(name)
        print(f"  loss   {name}: {base if base is None else f'{base:.4f}'} -> {loss:.4f}")
    ev = m["eval"]
    if ev:
        print(
            f"eval     domain gain {_pct(ev.get('domain_gain'))}, general regression "
            f"{_pct(ev.get('general_regression'))} ({ev.get('metric') or 'bpb'})"
        )
    print(f"card     {m['card'] or '-'}")
    deps = m["dependents"]
    print(f"used by  {', '.join(deps) if deps else '-'} (runs that start from it)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.errors import UsageError
    from steep.hub import Hub
    from steep.hub.publish import EXPORT_FORMATS

    if args.format not in EXPORT_FORMATS:
        raise UsageError(
            f"unknown export format {args.format!r}: use {' or '.join(EXPORT_FORMATS)}"
        )
    if args.format == "hf":
        if args.quant is not None:
            raise UsageError("--quant applies to --format gguf (an HF folder keeps its weights)")
        dest = Hub().export_model(args.name, Path(args.dest))
        print(f"exported {args.name} -> {dest}")
        return 0
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.hub.gguf_export import MODELFILE, export_gguf, gguf_file_name

    quant = args.quant or "f16"
    dest = export_gguf(Hub(), args.name, Path(args.dest), quant)
    print(f"exported {args.name} -> {dest / gguf_file_name(args.name, quant)}")
    print(f"  Ollama: cd {dest} && ollama create {args.name} -f {MODELFILE}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.hub import Hub

    hub = Hub()
    path = hub.model(args.name)["path"]
    hub.remove_model(args.name, force=args.force)
    print(f"removed {args.name} ({path})")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.hub import Hub

    url = Hub().push_model(args.name, args.repo_id, private=args.private)
    print(f"pushed {args.name} -> {url}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="Model Hub: list, show, export, remove and push models")
    msub = m.add_subparsers(dest="models_command", required=True)

    p = msub.add_parser("list", help="every registered model (syncs the registry first)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = msub.add_parser("show", help="a model's lineage, recipe, metrics and eval summary")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="everything, with steep.json and eval")
    p.set_defaults(func=cmd_show)

    p = msub.add_parser(
        "export", help="copy a model folder (HF files, steep.json, README.md) or write a GGUF"
    )
    p.add_argument("name")
    p.add_argument("dest", help="new folder; an existing one is refused")
    p.add_argument(
        "--format",
        default="hf",
        help="hf (the folder as it is, default) or gguf (llama.cpp / Ollama: NAME-QUANT.gguf "
        "+ Modelfile + steep.json; needs pip install 'steep[gguf]')",
    )
    p.add_argument(
        "--quant",
        default=None,
        help="GGUF type: f16 (default), bf16, f32, q8_0 (llama.cpp's converter), or q4_0, "
        "q4_k_m, q5_k_m, q6_k, ... (llama.cpp's quantizer)",
    )
    p.set_defaults(func=cmd_export)

    p = msub.add_parser("rm", help="delete a model (refused while a run starts from it)")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="delete even if runs depend on it")
    p.set_defaults(func=cmd_rm)

    p = msub.add_parser("push", help="upload a model to a Hugging Face repo (needs network)")
    p.add_argument("name")
    p.add_argument("repo_id", help="e.g. user/my-model")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.set_defaults(func=cmd_push)
