"""The language-adaptation demo: SmolLM2-135M learns Vietnamese, with and without new tokens.

Offline apart from two package downloads (Debian's ``libreoffice-help-vi`` and
``manpages-vi`` via ``apt-get download``, the gensim wheel for English Wikipedia), on a CPU:

1. build the Vietnamese corpus and the English replay corpus;
2. ``steep tokenizer extend``: 1,024 Vietnamese tokens on top of SmolLM2's tokenizer, with
   the fertility / initial bits-per-byte report;
3. two runs of examples/demo-vi.yaml with the same token budget: SmolLM2 as it is, and the
   extended model with an embeddings-only warm stage first;
4. bits per byte of the base, the extended-but-untrained model and both runs on the same
   held-out Vietnamese and English documents (per-token loss cannot compare tokenizers).
"""

from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from steep.artifacts.lineage import read_lineage
from steep.config import RunConfig, load_config
from steep.data.documents import SkipLog, read_documents
from steep.data.tokenunits import is_heldout
from steep.demos.corpora import CorpusInfo, _cached, build_news, build_wikipedia
from steep.demos.debian import build_vietnamese
from steep.demos.runs import cpu_precision, drop_checkpoints
from steep.hub import record_run
from steep.model.heldout import TextSet, evaluate_set, tokenize_set
from steep.model.io import gguf_to_hf, resolve_base
from steep.model.vocab import REPORT_FILE, ExtendSpec, extend_model, fertility, format_report
from steep.train.loop import RunResult, train
from steep.workspace import Workspace, steep_home

VI_CONFIG = Path(__file__).resolve().parents[3] / "examples" / "demo-vi.yaml"
ADD_TOKENS = 1024  # the corpus supports ~2,000; 1,024 already cut Vietnamese tokens by 60%
WARM_STEPS = 4  # embeddings-only steps before full CPT in the extended run
EVAL_CHARS = 10_000  # held-out characters per language scored for the bpb table
RESULTS_FILE = "results.json"


@dataclass
class ViDemoResult:
    plain: RunResult
    extended: RunResult
    results: dict[str, Any]


def run_vietnamese_demo(
    overrides: list[str] | None = None, config_path: Path = VI_CONFIG, add: int = ADD_TOKENS
) -> ViDemoResult:
    started = time.time()
    overrides = [*cpu_precision(), *(overrides or [])]
    home = steep_home()
    os.environ["STEEP_HOME"] = str(home)  # demo-vi.yaml names its corpora under ${STEEP_HOME}
    out = Workspace(home).demo / "vi"

    print("[1/4] corpora", flush=True)
    corpora = Workspace(home).demo / "corpora"
    vi = build_vietnamese(corpora / "vietnamese.jsonl", Workspace(home).downloads / "debian")
    wiki_path = corpora / "wikipedia.jsonl"
    en = _cached(wiki_path) or build_wikipedia(wiki_path, Workspace(home).downloads)
    news_path = corpora / "news.jsonl"  # the independent general eval set
    news = _cached(news_path) or build_news(news_path, Workspace(home).downloads)
    for name, info in (("vietnamese", vi), ("wikipedia", en), ("news", news)):
        print(f"corpus {name}: {info.documents:,} documents, {info.characters / 1e6:.2f}M chars")
    config = load_config(config_path, overrides)
    fractions = {s.name: s.heldout_fraction for s in config.data.sources}

    print(f"[2/4] vocabulary extension: +{add:,} Vietnamese tokens", flush=True)
    base_dir = _base_dir(config, home)
    ext_dir = out / f"smollm2-vi-{add}"
    _extend_once(base_dir, vi, add, ext_dir, fractions.get("vi", 0.05))

    print("[3/4] CPT with SmolLM2's own tokenizer", flush=True)
    t0 = time.time()
    plain = train(load_config(config_path, [*overrides, "run.name=demo-vi-plain"]))
    record_run(plain.run_dir)
    drop_checkpoints(plain.run_dir)
    plain_s = time.time() - t0
    print(f"[3/4] CPT with the extended tokenizer ({WARM_STEPS} embeddings-only steps first)")
    t0 = time.time()
    ext_overrides = [
        *overrides,
        "run.name=demo-vi-extended",
        f"model.base={ext_dir}",
        f"train.embedding_warmup_steps={WARM_STEPS}",
    ]
    extended = train(load_config(config_path, ext_overrides))
    record_run(extended.run_dir)
    drop_checkpoints(extended.run_dir)
    ext_s = time.time() - t0

    print("[4/4] bits per byte on held-out Vietnamese and English", flush=True)
    sets = {
        "vi": _heldout_texts(vi.path, fractions.get("vi", 0.05)),
        "en": _heldout_texts(en.path, fractions.get("en", 0.05)),
    }
    models = {
        "base (SmolLM2-135M)": base_dir,
        f"base + {add:,} vi tokens, untrained": ext_dir,
        "CPT, SmolLM2 tokenizer": plain.model_dir,
        f"CPT, extended tokenizer ({WARM_STEPS} warm steps)": extended.model_dir,
    }
    rows = {name: _score(path, sets, config.data.seq_len) for name, path in models.items()}
    results = {
        "tokens_per_run": config.train.steps * config.train.global_batch_tokens,
        "steps": config.train.steps,
        "train_minutes": {"plain": plain_s / 60, "extended": ext_s / 60},
        "eval_characters": {k: sum(len(t) for t in v) for k, v in sets.items()},
        "models": {name: {**row, "path": str(models[name])} for name, row in rows.items()},
        "extension": json.loads((ext_dir / REPORT_FILE).read_text()),
        "minutes": (time.time() - started) / 60,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(format_report(results["extension"]))
    print()
    print(format_results(results))
    print(f"results: {out / RESULTS_FILE}\ndemo finished in {results['minutes']:.1f} min")
    return ViDemoResult(plain, extended, results)


def _base_dir(config: RunConfig, home: Path) -> Path:
    """The base as a plain HF directory (a GGUF base is converted once and cached)."""
    base = resolve_base(str(config.model.base))
    if base.endswith(".gguf"):
        return gguf_to_hf(Path(base), Workspace(home).base_models)
    return Path(base)


def _extend_once(base: Path, vi: CorpusInfo, add: int, out: Path, heldout_fraction: float) -> None:
    """Extend unless ``out`` already holds this extension of this corpus."""
    done = read_lineage(out) if (out / REPORT_FILE).exists() else None
    if done is not None:
        same = (done.vocab_extension or {}).get("added") == add
        files = (done.corpus or {}).get("files") or [{}]
        if same and files[0].get("sha256") == vi.sha256:
            print(f"reusing {out}")
            return
    spec = ExtendSpec(
        base=str(base),
        corpus=[str(vi.path)],
        add=add,
        out=out,
        lang="vi",
        heldout_fraction=heldout_fraction,
        eval_chars=EVAL_CHARS,
    )
    extend_model(spec)
    gc.collect()


def _heldout_texts(path: Path, fraction: float, limit: int = EVAL_CHARS) -> list[str]:
    """The run's own held-out documents (same hash split as training), up to ``limit`` chars."""
    texts = [d.text for d in read_documents([path], SkipLog()) if is_heldout(d.text, fraction)]
    out, total = [], 0
    for text in texts:
        out.append(text[: limit - total])
        total += len(out[-1])
        if total >= limit:
            break
    return out


def _score(model_dir: Path, sets: dict[str, list[str]], seq_len: int) -> dict[str, float]:
    """Bits per byte of each set, and Vietnamese characters per token, for one model."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    row: dict[str, float] = {}
    for name, texts in sets.items():
        tset = tokenize_set(TextSet(name, [], texts, 0), tokenizer, seq_len)
        row[f"{name}_bpb"] = evaluate_set(model, tset, 4, torch.device("cpu"))["bpb"]
    row["vi_chars_per_token"] = fertility(tokenizer, sets["vi"])["chars_per_token"]
    del model
    gc.collect()
    return row


def format_results(results: dict[str, Any]) -> str:
    """The demo's table: one row per model, bits per byte (lower is better)."""
    lines = [
        f"{'model':<44}{'vi bpb':>8}{'en bpb':>8}{'vi chars/tok':>14}",
    ]
    for name, row in results["models"].items():
        lines.append(
            f"{name:<44}{row['vi_bpb']:>8.3f}{row['en_bpb']:>8.3f}{row['vi_chars_per_token']:>14.2f}"
        )
    mins = results["train_minutes"]
    lines.append(
        f"each run: {results['steps']} steps, {results['tokens_per_run']:,} tokens "
        f"(plain {mins['plain']:.1f} min, extended {mins['extended']:.1f} min); "
        f"scored on {results['eval_characters']['vi']:,} vi / "
        f"{results['eval_characters']['en']:,} en held-out characters"
    )
    return "\n".join(lines)
