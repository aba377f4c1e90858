"""``steep eval``: arguments to an ``EvalSpec``; the work is in ``steep.eval.compare``."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from steep.errors import UsageError
from steep.model.passkey_spec import LONG_CONTEXT_FLAGS

NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def _named_paths(items: list[str], flag: str, need_name: bool) -> dict[str, list[str]]:
    """``NAME=PATH`` (or, where allowed, a bare PATH named by its file stem); a repeated
    NAME collects several paths into one set."""

    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            if need_name:
                raise UsageError(f"{flag} {item!r}: expected NAME=PATH, e.g. domain=heldout.jsonl")
            name, path = Path(item).stem, item
        if not NAME.match(name) or not path:
            raise UsageError(
                f"{flag} {item!r}: NAME may hold letters, digits, '_', '-', '.' and PATH must "
                "not be empty"
            )
        out.setdefault(name, []).append(path)
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (no torch until a command runs)
    from steep.cli.common import quiet_libraries
    from steep.eval.compare import EvalSpec, run_eval
    from steep.eval.lineage import lineage_baseline, local_dir
    from steep.hub import attach_eval_report
    from steep.model.passkey_spec import parse_depths, parse_lengths

    quiet_libraries()
    sets = _named_paths(args.sets, "--sets", need_name=True)
    tasks = _named_paths(args.tasks, "--tasks", need_name=False)
    for name, paths in tasks.items():
        if len(paths) > 1:
            raise UsageError(f"--tasks: task '{name}' given twice ({', '.join(paths)})")
    if args.temperature < 0:
        raise UsageError(f"--temperature {args.temperature:g}: give 0 (greedy) or more")
    both = sorted(set(args.domain) & set(args.general))
    if both:
        raise UsageError(f"marked both --domain and --general: {', '.join(both)}")
    baseline = None
    if args.baseline and args.no_baseline:
        raise UsageError("give --baseline or --no-baseline, not both")
    if args.baseline:
        baseline = args.baseline
    elif not args.no_baseline:
        baseline = lineage_baseline(args.model)
        if baseline:
            print(f"baseline: {baseline} (the base named in the model's steep.json)")
    spec = EvalSpec(
        model=args.model,
        baseline=baseline,
        sets=sets,
        roles={**{n: "general" for n in args.general}, **{n: "domain" for n in args.domain}},
        tasks={name: paths[0] for name, paths in tasks.items()},
        harness_tasks=list(args.harness_tasks),
        harness_include=list(args.harness_include),
        harness_limit=args.harness_limit,
        harness_fewshot=args.num_fewshot,
        prompts=args.prompts,
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        device=args.device,
        dtype=args.dtype,
        text_field=args.text_field,
        out_dir=args.out,
        update_lineage=not args.no_lineage,
        run_windows=args.run_windows,
        passkey=parse_lengths(args.passkey) if args.passkey else [],
        passkey_depths=parse_depths(args.passkey_depths),
        passkey_trials=args.passkey_trials,
        position_loss=args.position_loss,
        position_windows=args.position_windows,
    )
    result = run_eval(spec)
    model_dir = local_dir(args.model)
    if spec.update_lineage and model_dir is not None:
        attach_eval_report(model_dir)  # the Model Hub row and the model card (README.md)
    head = result.get("headline") or {}
    for key in ("domain_gain", "general_regression"):
        if head.get(key) is not None:
            print(f"{key.replace('_', ' ')} (bpb): {100 * head[key]:+.2f}%")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    many = {"nargs": "+", "action": "extend", "default": []}
    e = sub.add_parser(
        "eval",
        help="evaluate a model against its base: held-out bpb, tasks, samples, report",
        description="Give MODEL first: the list options take several values each.",
    )
    e.add_argument("model", help="model directory (or .gguf file / hub id) to evaluate")
    e.add_argument(
        "--baseline",
        metavar="BASE",
        help="model to compare with (default: the base named in MODEL/steep.json, if present)",
    )
    e.add_argument("--no-baseline", action="store_true", help="evaluate MODEL alone")
    e.add_argument("--sets", metavar="NAME=PATH", help="held-out text (files or folders)", **many)
    e.add_argument("--domain", metavar="NAME", help="sets/tasks that count as domain", **many)
    e.add_argument("--general", metavar="NAME", help="sets/tasks that count as general", **many)
    e.add_argument(
        "--tasks", metavar="[NAME=]FILE", help="multiple-choice / cloze jsonl tasks", **many
    )
    e.add_argument("--harness-tasks", metavar="TASK", help="lm-evaluation-harness tasks", **many)
    e.add_argument(
        "--harness-include", metavar="DIR", help="folders of local lm_eval task YAML", **many
    )
    e.add_argument("--harness-limit", type=int, help="at most this many examples per lm_eval task")
    e.add_argument("--num-fewshot", type=int, help="few-shot examples for lm_eval tasks")
    e.add_argument("--prompts", metavar="FILE", help="prompts for samples (.txt lines or .jsonl)")
    e.add_argument("--max-new-tokens", type=int, default=48, help="sample length (default 48)")
    e.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="sample at this temperature (default 0: greedy, the same text every run)",
    )
    e.add_argument("--seq-len", type=int, help="window length (default: 1024 or the model's max)")
    e.add_argument("--batch-size", type=int, default=4)
    e.add_argument("--device", default="auto", help="auto (GPU if any), cpu, cuda, cuda:1, ...")
    e.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    e.add_argument("--text-field", default="text", help="jsonl/parquet field with the text")
    e.add_argument("--out", metavar="DIR", help="report folder (default: MODEL/eval)")
    e.add_argument(
        "--run-windows",
        action="store_true",
        help="also score the run's own eval sets as its training did (its windows, length, "
        "precision): reproduces the losses in metrics.jsonl",
    )
    for flag, kwargs in LONG_CONTEXT_FLAGS.items():  # the studio's eval form reads them too
        e.add_argument(flag, **kwargs)
    e.add_argument(
        "--no-lineage", action="store_true", help="do not record the result in MODEL/steep.json"
    )
    e.set_defaults(func=cmd_eval)
