"""``steep models ...``: the Model Hub's commands (list, show, export, rm, push, merge)."""

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


def _model_folder(spec: str) -> Path:
    """A model folder from what a user typed: a folder, a run folder (its model/), or the
    name of a model or run in the Model Hub."""
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.errors import MissingInputError
    from steep.hub import Hub
    from steep.workspace import MODEL_DIR

    path = Path(spec).expanduser()
    if (path / MODEL_DIR / "config.json").is_file():
        return path / MODEL_DIR
    if (path / "config.json").is_file():
        return path
    hub = Hub()
    for m in hub.models():
        if spec in (m["name"], m["run"]):
            return Path(m["path"])
    raise MissingInputError(f"{spec}: not a model folder, a run folder or a model in the hub")


def cmd_merge(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.artifacts.fmt import text_table
    from steep.errors import UsageError
    from steep.eval.merge_curve import curve_table
    from steep.eval.merge_save import MERGE_JSON, default_out, run_merge
    from steep.eval.merge_spec import MergeSpec
    from steep.workspace import Workspace, plain_name_problem

    spec = MergeSpec(
        model=_model_folder(args.model).resolve(),
        base=_model_folder(args.base).resolve() if args.base else None,
        alphas=list(args.alphas),
        method=args.method,
        instruct=_model_folder(args.instruct).resolve() if args.instruct else None,
        weight=args.weight,
        density=args.density,
        max_regression=args.max_regression,
        allow_extrapolation=args.allow_extrapolation,
    )
    save = None
    if args.save:
        problem = plain_name_problem(args.save, "--save")
        if problem:
            raise UsageError(problem)
        save = Workspace.current().models / args.save
    out = Path(args.out).expanduser().resolve() if args.out else default_out(spec.model)
    result = run_merge(spec, out, save)
    print(text_table(curve_table(result)))
    print(f"vocabulary: {result['vocab']['note']}")
    if result.get("picked") is not None and spec.max_regression is not None:
        print(
            f"picked {spec.key} {result['picked']:g} (largest within {_pct(spec.max_regression)})"
        )
    elif spec.max_regression is not None:
        print(f"no {spec.key} keeps general regression within {_pct(spec.max_regression)}")
    print(f"curve: {out / MERGE_JSON}")
    if save is not None:
        # deferred: keeps `steep --help` light (no torch until a command runs)
        from steep.hub import Hub

        try:  # the merged model is saved; the registry is a convenience
            print(f"model hub: registered as {Hub().register_model(save, None)!r}")
        except Exception as exc:
            print(f"warning: model hub: could not register {save}: {exc}")
    return 0


def _alphas(text: str) -> list[float]:
    # deferred: keeps `steep --help` light
    from steep.errors import UsageError
    from steep.eval.merge_spec import parse_alphas

    try:
        return parse_alphas(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_merge(msub: argparse._SubParsersAction) -> None:
    p = msub.add_parser(
        "merge",
        help="merge a CPT model with its base (alpha curve on the run's eval sets) or add a "
        "chat vector",
    )
    p.add_argument("model", help="the CPT model: a folder, a run folder, or a hub name")
    p.add_argument("--base", default=None, help="default: the base the run started from")
    p.add_argument(
        "--alphas",
        type=_alphas,
        default=[0.0, 0.25, 0.5, 0.75, 1.0],
        help="comma-separated: (1 - alpha) x base + alpha x model (default 0,0.25,0.5,0.75,1)",
    )
    p.add_argument("--max-regression", type=float, default=None,
                   help="pick the largest alpha whose general regression is at most this "
                   "fraction (0.02 = 2%%)")  # fmt: skip
    p.add_argument("--save", default=None, help="save the picked merge as this hub model")
    p.add_argument(
        "--out", default=None, help="new folder for merge.json/.md/.png (default: ./merge-RUN-TIME)"
    )
    p.add_argument("--method", default="linear",
                   help="linear (default), chat-vector, or through mergekit (pip install "
                   "'steep[merge]'): ties, dare_ties, slerp, task_arithmetic")  # fmt: skip
    p.add_argument("--density", type=float, default=None,
                   help="ties, dare_ties: the share of each delta kept (default 0.5)")  # fmt: skip
    p.add_argument("--instruct", default=None, help="chat-vector: the instruct model")
    p.add_argument("--weight", type=float, default=1.0,
                   help="chat-vector: model + W x (instruct - base); default 1")  # fmt: skip
    p.add_argument("--allow-extrapolation", action="store_true",
                   help="allow alphas outside [0, 1]")  # fmt: skip
    p.set_defaults(func=cmd_merge)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser(
        "models", help="Model Hub: list, show, export, remove, push and merge models"
    )
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

    _add_merge(msub)
