"""``steep plan``: memory per device, FLOPs, step time and days of a run, before any work."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from steep.cli.common import positive
from steep.config import load_config


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value:g}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value:g}")
    return value


def cmd_plan(args: argparse.Namespace) -> int:
    # deferred: keeps `steep --help` light (the plan itself is torch-free)
    from steep.plan.estimate import make_plan, resolve_device
    from steep.plan.shapes import shape_from_file
    from steep.plan.text import render

    config = load_config(args.config, args.set)
    device = resolve_device(config, args.gpu, args.peak_tflops, args.memory_gib)
    shape = shape_from_file(Path(args.model_config)) if args.model_config else None
    plan = make_plan(config, args.gpus, device, args.mfu, shape, config_name=args.config)
    predicted = None
    if args.sweep:
        # deferred: the sweep package (and its torch) loads only when a prediction is asked
        from steep.sweep.predict import predict_run

        predicted = predict_run(Path(args.sweep).resolve(), config)
    if args.json:
        out = plan.to_dict()
        if predicted is not None:
            out["prediction"] = predicted
        print(json.dumps(out, indent=2))
        return 0
    print(render(plan))
    if predicted is not None:
        from steep.sweep.predreport import run_lines  # deferred: as predict_run above

        print("\n" + "\n".join(run_lines(predicted)))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="memory per device, FLOPs, step time and days of a run; what to change if it "
        "will not fit",
    )
    p.add_argument("config", help="run config (YAML)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value"
    )
    p.add_argument("--gpus", type=positive, default=1, metavar="N", help="devices (default 1)")
    p.add_argument(
        "--gpu",
        metavar="NAME",
        help="H100, H200, A100, A100-40GB, L40S, A10G, RTX4090, MI300X, B200, cpu, ... "
        "(default: this machine's GPU, else its CPU)",
    )
    p.add_argument(
        "--peak-tflops", type=_positive_float, metavar="X", help="dense bf16 peak per device"
    )
    p.add_argument("--memory-gib", type=_positive_float, metavar="Y", help="memory per device")
    p.add_argument(
        "--mfu", type=_fraction, default=0.4, metavar="M", help="assumed MFU (default 0.4)"
    )
    p.add_argument(
        "--model-config",
        metavar="CONFIG.json",
        help="the model's config.json, for a base the plan cannot find offline",
    )
    p.add_argument(
        "--sweep",
        metavar="SWEEP_DIR",
        help="also the domain gain and general regression the sweep's fitted law predicts for "
        "this run (after `steep sweep --predict SWEEP_DIR --at TOKENS`)",
    )
    p.add_argument("--json", action="store_true", help="the plan as JSON")
    p.set_defaults(func=cmd_plan)
