"""The demo: adapt SmolLM2-135M to Python documentation on a CPU (minutes:
BENCHMARKS.md times it).

It builds the two corpora (nothing from a model or dataset hub: the Python standard
library and the gensim wheel's Wikipedia sample), then runs examples/demo.yaml.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from steep.config import load_config
from steep.demos.corpora import build_demo_corpora
from steep.demos.demo_vi import run_vietnamese_demo
from steep.demos.runs import cpu_precision, drop_checkpoints
from steep.hub import record_run
from steep.train.loop import RunResult, train
from steep.workspace import Workspace, steep_home

DEMO_CONFIG = Path(__file__).resolve().parents[3] / "examples" / "demo.yaml"


def run_demo(
    overrides: list[str] | None = None,
    config_path: Path = DEMO_CONFIG,
    recipe: str = "python-docs",
) -> RunResult:
    if recipe == "vietnamese":  # language adaptation, with and without vocabulary extension
        return run_vietnamese_demo(overrides).extended
    started = time.time()
    home = steep_home()
    ws = Workspace(home)
    os.environ["STEEP_HOME"] = str(home)  # demo.yaml names its corpora under ${STEEP_HOME}
    corpora = build_demo_corpora(ws.demo / "corpora", ws.downloads)
    for name, info in corpora.items():
        print(f"corpus {name}: {info.documents:,} documents, {info.characters / 1e6:.1f}M chars")
    config = load_config(config_path, [*cpu_precision(), *(overrides or [])])
    print("domain = Python standard library docs, general = Wikipedia (replay)")
    result = train(config)
    record_run(result.run_dir)  # the Model Hub row and the model card, now
    drop_checkpoints(result.run_dir)
    print(f"demo finished in {(time.time() - started) / 60:.1f} min")
    return result
