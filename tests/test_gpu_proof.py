"""benchmarks/gpu_proof.py's logic on CPU (--device cpu --tiny): every case has a row, steep
and HF Trainer saw the same batches, tokens/s and MFU follow their stated formulas, and a
case that cannot run says why. The GPU numbers themselves come from a GPU machine."""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import gpu_proof
from benchmarks.gpu_proof_worker import TINY, TINY_8B

PEAK_TFLOPS = 0.01  # the CPU has no known peak: a stated one, so the MFU arithmetic runs


def paper_flops(shape: dict, seq_len: int, lora: bool = False) -> float:
    """FLOPs per token by hand: 6 x trained matmul parameters + 4 x frozen ones + 12 x layers
    x heads x head_dim x seq (the weights of norms count as steep.train.flops counts them).
    LoRA (hf_lora): rank-16 adapters on every decoder linear and the head train, the rest
    is frozen."""
    h, i, n = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    heads, kv = shape["num_attention_heads"], shape["num_key_value_heads"]
    hd = h // heads
    layer = 2 * h * h + 2 * h * kv * hd + 3 * h * i + 2 * h  # q, o; k, v; mlp; two norms
    head = shape["vocab_size"] * h  # tied or not, the head's matmul runs
    matmul = n * layer + h + head  # + the final norm
    attention = 12 * n * heads * hd * seq_len
    if not lora:
        return 6 * matmul + attention
    adapters = n * 16 * (2 * (h + h) + 2 * (h + kv * hd) + 2 * (h + i) + (i + h))  # q o, k v, ...
    return 6 * (adapters + head) + 4 * (matmul - head) + attention


@pytest.fixture(scope="module")
def proof(tmp_path_factory):
    out = tmp_path_factory.mktemp("proof")
    argv = ["--device", "cpu", "--tiny", "--out", str(out), "--peak-tflops", str(PEAK_TFLOPS)]
    argv += ["--work", str(tmp_path_factory.mktemp("work"))]
    # no time budget: the default one (450 s) skips the last cases on a loaded machine, and
    # the CPU cases are asserted to run (the budget's own test is below)
    argv += ["--budget-s", "1e9"]
    assert gpu_proof.main(argv) == 0
    result = json.loads((out / "results.json").read_text())
    return result, (out / "results.md").read_text()


def test_every_case_has_a_row_and_a_skip_says_why(proof):
    result, md = proof
    rows = {r["case"]: r for r in result["rows"]}
    assert list(rows) == [c["name"] for c in gpu_proof.CASES]  # all of them, in order
    for name, r in rows.items():
        assert f"| {name} |" in md
        assert r["status"] in ("ok", "skipped"), (name, r.get("reason"), r.get("log"))
        if r["status"] == "skipped":
            assert len(r["reason"]) > 20, name
            assert r["reason"] in md
    for name in ("steep", "steep-nochunk", "hf-trainer"):  # what a CPU always runs
        assert rows[name]["status"] == "ok", rows[name]
    for name in ("steep-compile", "hf-trainer-compile", "steep-flex-docmask"):
        assert rows[name]["status"] == "skipped"
    lora = rows["steep-lora-8b"]
    if lora["status"] == "skipped":  # peft missing, or the loop does not apply LoRA yet
        print(f"steep-lora-8b skipped: {lora['reason']}")
    else:
        assert 0 < lora["trainable_params"] < lora["total_params"]  # adapters, not full
        assert lora["trainable_params"] == rows["hf-lora-8b"]["trainable_params"]
    assert "MFU goal >= 50%" in md and "steep vs hf-trainer:" in md


def test_steep_and_hf_saw_the_same_batches(proof):
    result, _ = proof
    s = result["settings"]
    rows = {r["case"]: r for r in result["rows"] if r["status"] == "ok"}
    steep, hf = rows["steep"], rows["hf-trainer"]
    c = next(c for c in gpu_proof.CASES if c["name"] == "steep")
    micro, accum = gpu_proof.worker_case(c, gpu_proof.parse_args(["--tiny"]))["micro"], 2
    assert steep["micro_batches"] == hf["micro_batches"] == s["steps"] * accum
    assert steep["batch_tokens"] == s["steps"] * accum * micro * (s["seq_len"] + 1)
    assert steep["batches_sha"] == hf["batches_sha"] == rows["steep-nochunk"]["batches_sha"]
    # the same first weights and batches: the same loss before any update (HF predicts one
    # position fewer), and after the same AdamW steps still within bf16 rounding
    assert steep["loss_first"] == pytest.approx(hf["loss_first"], rel=0.01)
    assert steep["loss_last"] == pytest.approx(hf["loss_last"], rel=0.01)
    assert steep["loss_last"] < steep["loss_first"]  # it trained
    pairs = {p["steep"]: p for p in result["summary"]["pairs"]}
    assert pairs["steep"]["same_batches"] and result["summary"]["all_same_batches"]
    if "hf-lora-8b" in rows and "steep-lora-8b" in rows:
        assert rows["steep-lora-8b"]["batches_sha"] == rows["hf-lora-8b"]["batches_sha"]


def test_tokens_per_s_and_mfu_follow_the_stated_formulas(proof):
    result, _ = proof
    s = result["settings"]
    for r in result["rows"]:
        if r["status"] != "ok":
            assert r["mfu"] is None
            continue
        assert r["timed_steps"] == s["steps"] - s["warmup"]
        tokens = r["timed_steps"] * r["tokens_per_step"]
        assert r["tokens_per_s"] == pytest.approx(tokens / r["timed_s"])
        lora = "lora" in r["case"]
        shape = TINY_8B if lora else TINY
        want = paper_flops(shape, s["seq_len"], lora=lora)
        assert r["flops_per_token"] == pytest.approx(want)
        assert r["peak_flops"] == PEAK_TFLOPS * 1e12
        assert r["mfu"] == pytest.approx(r["tokens_per_s"] * want / (PEAK_TFLOPS * 1e12))
        assert r["peak_gib"] > 0
    steep = next(r for r in result["rows"] if r["case"] == "steep")
    # steep's own per-step figures measure each step without the logging between steps
    assert steep["steep_logged_tokens_per_s"] >= 0.5 * steep["tokens_per_s"]


def test_cases_past_the_budget_are_skipped_as_such(tmp_path):
    out = tmp_path / "out"
    argv = ["--device", "cpu", "--out", str(out), "--work", str(tmp_path / "w")]
    assert (
        gpu_proof.main([*argv, "--budget-s", "0", "--cases", "steep,hf-trainer,steep-liger"]) == 0
    )
    rows = {r["case"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert rows["steep"]["status"] == rows["hf-trainer"]["status"] == "skipped"
    assert rows["steep"]["reason"].startswith("time budget: ")
    if importlib.util.find_spec("liger_kernel") is None:
        assert rows["steep-liger"]["reason"].startswith("liger-kernel is not installed")
    md = (out / "results.md").read_text()
    assert "Llama-3.2-1B shape" in md and "seq 2048" in md and "micro 8 x accum 2" in md
