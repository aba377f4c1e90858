"""steep's jsonl tasks score exactly as lm-evaluation-harness's ``hf`` model does.

The same questions go to lm_eval's own API (``simple_evaluate`` on a local task YAML that
reads the jsonl file) and to steep's task scoring, on one tiny random model. Two
tokenizers: one like SmolLM2's, which has a BOS token but does not add it (lm_eval then
reads the text with no prefix), and one whose post-processor adds the BOS (lm_eval keeps
it). acc, acc_norm and every choice's log-likelihood must agree.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from steep.eval.tasks import evaluate_task, prefix_rule, read_task, task_requests
from steep.model.io import load_tokenizer
from steep.model.scoring import score_requests
from tests.conftest import TINY_LLAMA

CPU = torch.device("cpu")
BOS = "<|im_start|>"
EOS = "<|endoftext|>"

WORDS = ["river", "stone", "cloud", "winter", "lamp", "forest", "bread", "quiet", "north", "copper"]


def _tokenizer(adds_bos: bool) -> PreTrainedTokenizerFast:
    """Byte-level BPE with a BOS token; the post-processor adds it only if ``adds_bos``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges = [("Ġ", "r"), ("i", "v"), ("e", "r"), ("Ġ", "s"), ("o", "n")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS, BOS])
    if adds_bos:
        bos_id = tok.token_to_id(BOS)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS)


def _model(path: Path, adds_bos: bool) -> Path:
    tok = _tokenizer(adds_bos)
    torch.manual_seed(3)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        initializer_range=0.4,  # peaked outputs: what comes first changes the scores
        **TINY_LLAMA,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _rows() -> tuple[list[dict], list[dict]]:
    """16 cloze questions (some ending in a space, one opening with the BOS text), 4 mc."""
    cloze = []
    for i in range(16):
        words = [WORDS[(i * 3 + k) % len(WORDS)] for k in range(3)]
        question = " ".join(words) + (" " if i % 4 == 1 else "")
        if i == 5:
            question = BOS + question
        choices = [WORDS[(i + k * 7) % len(WORDS)] + " " * (k == 2) + "s" * k for k in range(3)]
        cloze.append({"question": question, "choices": choices, "answer": i % 3, "style": "cloze"})
    mc = [
        {
            "question": f"Which word follows {WORDS[i]}?",
            "choices": [WORDS[(i + k + 1) % len(WORDS)] for k in range(4)],
            "answer": i % 4,
            "style": "mc",
        }
        for i in range(4)
    ]
    return cloze, mc


def _lm_eval_task(folder: Path, name: str, data: Path, text: str, choice: str) -> None:
    (folder / f"{name}.yaml").write_text(
        f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {folder / "hf-cache"}
output_type: multiple_choice
test_split: test
doc_to_text: {json.dumps(text)}
doc_to_choice: {json.dumps(choice)}
doc_to_target: "{{{{answer}}}}"
metric_list: [{{metric: acc}}, {{metric: acc_norm}}]
metadata:
  version: 1.0
""",
        encoding="utf-8",
    )


# lm_eval's MMLU-style prompt, written independently of steep's "mc" style
MC_TEXT = (
    "{{question}}\n{% for c in choices %}{{ 'ABCD'[loop.index0] }}. {{c}}\n{% endfor %}Answer:"
)
MC_CHOICE = "{{ ['A', 'B', 'C', 'D'][:choices|length] }}"


@pytest.mark.parametrize("adds_bos", [False, True], ids=["bos-not-added", "bos-added"])
def test_task_scores_agree_with_lm_eval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, adds_bos: bool
) -> None:
    lm_eval = pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed")
    from lm_eval.tasks import TaskManager  # optional dependency, imported after the skip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    model_dir = _model(tmp_path / "model", adds_bos)
    folder = tmp_path / "lm_tasks"
    folder.mkdir()
    files = {}
    for name, rows in zip(("agree_cloze", "agree_mc"), _rows(), strict=True):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    _lm_eval_task(folder, "agree_cloze", files["agree_cloze"], "{{question}}", "{{choices}}")
    _lm_eval_task(folder, "agree_mc", files["agree_mc"], MC_TEXT, MC_CHOICE)

    out = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model_dir), "dtype": "float32"},
        tasks=list(files),
        task_manager=TaskManager(include_path=[str(folder)], include_defaults=False),
        device="cpu",
        batch_size=1,
        log_samples=True,
        bootstrap_iters=0,
    )

    tokenizer = load_tokenizer(str(model_dir))  # what `steep eval` loads
    assert (tokenizer(" a")["input_ids"][0] == tokenizer.bos_token_id) == adds_bos
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rule = prefix_rule(tokenizer)
    assert (BOS in rule) == adds_bos, rule
    for name, path in files.items():
        task = read_task(path, name)
        samples = sorted(out["samples"][name], key=lambda s: s["doc_id"])
        theirs = [float(r[0]) for s in samples for r in s["filtered_resps"]]
        flat = [r for reqs in task_requests(task, tokenizer, 255) for r in reqs]
        ours = [s.logprob for s in score_requests(model, flat, 1, CPU)]
        # lm_eval sums float32 log-probs, steep sums them in float64: 1e-6 relative apart
        assert ours == pytest.approx(theirs, rel=1e-6, abs=1e-5), name
        got = evaluate_task(model, task, tokenizer, 255, 4, CPU)
        want = out["results"][name]
        assert (got["acc"], got["acc_norm"]) == (want["acc,none"], want["acc_norm,none"]), name
        assert got["prefix"] == rule
