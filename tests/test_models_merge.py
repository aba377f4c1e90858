"""`steep models merge` (#33): the alpha curve on the run's own eval sets (alpha 0 is the
run's step 0, alpha 1 its final eval), the pick under --max-regression, the saved merge
with its lineage and card, the chat vector, the extended vocabulary's rows, and the
refusals (shapes, tokenizers, alphas, an existing folder)."""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from steep.artifacts.lineage import Lineage, read_lineage, write_lineage
from steep.cli import main
from steep.config import parse_config
from steep.eval.merge_spec import pick
from steep.hub import Hub
from steep.model.io import byte_tokenizer, load_tokenizer
from steep.model.merge import Weights, interpolated, plan_merge
from steep.train.loop import train
from tests.conftest import TINY_LLAMA, make_tiny_model, tiny_config

CHAT = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|endoftext|>{% endfor %}"


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _instruct(path: Path) -> Path:
    """A stand-in instruct model: the base's shapes, other weights, a chat template, an
    added chat token and a generation config of its own."""
    make_tiny_model(path, seed=5)
    tok = load_tokenizer(str(path))
    tok.chat_template = CHAT
    tok.save_pretrained(path)
    GenerationConfig(
        temperature=0.3, do_sample=True, eos_token_id=tok.eos_token_id
    ).save_pretrained(path)
    return path


def test_the_curve_ends_at_the_run_s_own_losses_and_saves_with_lineage(
    tmp_path: Path, corpora, tiny_model, capsys
) -> None:
    # a LoRA run: its model/ is the merged full model, which merges like any other
    raw = tiny_config(tmp_path, corpora, tiny_model, steps=4, method="lora", lr_fraction=1.0)
    raw["eval"] = {"every_steps": 4, "max_windows": 3, "batch_size": 2}
    result = train(parse_config(raw))
    assert read_lineage(result.model_dir).method["name"] == "lora"
    evals = [
        r
        for r in map(json.loads, (result.run_dir / "metrics.jsonl").read_text().splitlines())
        if r["kind"] == "eval"
    ]
    step0, final = evals[0]["sets"], evals[-1]["sets"]

    out = tmp_path / "curve"
    argv = ["models", "merge", str(result.run_dir), "--alphas", "0,0.5,1", "--out", str(out)]
    assert main([*argv, "--max-regression", "0.5", "--save", "halfway"]) == 0
    printed = capsys.readouterr().out
    merged = json.loads((out / "merge.json").read_text())
    assert [p["alpha"] for p in merged["curve"]] == [0.0, 0.5, 1.0]
    ends = merged["curve"][0]["sets"], merged["curve"][-1]["sets"]
    for name in ("domain", "general"):
        assert ends[0][name]["loss"] == pytest.approx(step0[name]["loss"], abs=1e-3)
        assert ends[1][name]["loss"] == pytest.approx(final[name]["loss"], abs=1e-3)
    assert merged["curve"][0]["domain_gain"] == 0.0
    assert merged["picked"] == pick(merged["curve"], "alpha", 0.5) is not None
    assert (out / "merge.png").stat().st_size > 0 and "| alpha" not in printed
    assert "alpha" in (out / "merge.md").read_text() and "picked alpha" in printed

    saved = Workspace_models() / "halfway"
    a = merged["picked"]
    got = _weights(saved)["model.layers.0.mlp.up_proj.weight"]
    base = _weights(tiny_model)["model.layers.0.mlp.up_proj.weight"]
    cpt = _weights(result.model_dir)["model.layers.0.mlp.up_proj.weight"]
    assert torch.allclose(got, (1 - a) * base + a * cpt, atol=1e-6)
    lin = read_lineage(saved)
    assert lin.kind == "merge" and lin.merge["alpha"] == a and lin.merge["method"] == "linear"
    assert lin.merge["parents"] == {
        "base": str(tiny_model.resolve()),
        "model": str(result.model_dir.resolve()),
    }
    model = Hub().model("halfway")
    card = Path(model["card"]).read_text()
    assert f"Linear weight merge: (1 - {a:g}) x" in card
    capsys.readouterr()
    assert main(["models", "show", "halfway"]) == 0
    assert "model    halfway (merge)" in capsys.readouterr().out

    # the same run's model, plus a chat vector from a stand-in instruct model
    instruct = _instruct(tmp_path / "instruct")
    cv = tmp_path / "cv-curve"
    assert main(["models", "merge", str(result.model_dir), "--method", "chat-vector",
                 "--instruct", str(instruct), "--base", str(tiny_model), "--weight", "0.5",
                 "--out", str(cv), "--save", "chatty"]) == 0  # fmt: skip
    saved = Workspace_models() / "chatty"
    name = "model.embed_tokens.weight"
    c, i, b = (_weights(p)[name] for p in (result.model_dir, instruct, tiny_model))
    got = _weights(saved)[name]
    eos = load_tokenizer(str(instruct)).eos_token_id
    assert torch.equal(got[eos], i[eos])  # a special token's row: the instruct model's
    rest = torch.arange(got.shape[0]) != eos
    assert torch.allclose(got[rest], (c + 0.5 * (i - b))[rest], atol=1e-6)
    assert load_tokenizer(str(saved)).chat_template == CHAT
    assert GenerationConfig.from_pretrained(saved).temperature == 0.3
    lin = read_lineage(saved)
    assert set(lin.merge["parents"]) == {"base", "model", "instruct"}
    assert "Chat-vector merge" in Path(Hub().model("chatty")["card"]).read_text()

    # refusals: the output folder exists; no alpha within the bound (the curve is kept)
    assert main([*argv, "--alphas", "0.5"]) == 2
    assert f"--out {out} already exists" in capsys.readouterr().err
    none = tmp_path / "none"
    argv = ["models", "merge", str(result.run_dir), "--alphas", "1", "--out", str(none)]
    assert main([*argv, "--max-regression", "-5", "--save", "nothing"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"no alpha keeps general regression within -500.00%: nothing saved; the curve is in {none}"
        )
    )
    assert json.loads((none / "merge.json").read_text())["picked"] is None
    assert not (Workspace_models() / "nothing").exists()


def Workspace_models() -> Path:  # noqa: N802 - reads as the path it is
    from steep.workspace import Workspace

    return Workspace.current().models


def test_pick_is_the_largest_alpha_within_the_bound() -> None:
    curve = [
        {"alpha": 0.0, "general_regression": 0.0},
        {"alpha": 0.5, "general_regression": 0.01},
        {"alpha": 0.75, "general_regression": None},
        {"alpha": 1.0, "general_regression": 0.03},
    ]
    assert pick(curve, "alpha", 0.02) == 0.5
    assert pick(curve, "alpha", 0.05) == 1.0
    assert pick(curve, "alpha", -0.01) is None
    assert pick(curve, "alpha", None) is None


def _other_shape(path: Path) -> Path:
    tok = byte_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), **{**TINY_LLAMA, "intermediate_size": 48})
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize(
    "case, extra, message",
    [
        ("shape", [], "tensor model.layers.0.mlp.down_proj.weight differs: [32, 64] in"),
        ("alpha", ["--alphas", "0,1.5"], "--alphas: 1.5 is outside [0, 1]"),
        ("tokenizer", [], "the tokenizers differ (token"),
        ("out", [], "already exists: choose a new folder"),
        ("chat", ["--method", "chat-vector"], "--method chat-vector needs --instruct"),
        (
            "chat-shape",
            ["--method", "chat-vector"],
            "tensor model.layers.0.mlp.down_proj.weight differs",
        ),
    ],
)
def test_bad_input_is_refused_in_one_line(
    tmp_path: Path, tiny_model: Path, capsys, case: str, extra: list[str], message: str
) -> None:
    model = make_tiny_model(tmp_path / "cpt", seed=1)
    base = tiny_model
    if case == "shape":
        base = _other_shape(tmp_path / "other")
    if case == "tokenizer":
        tok = load_tokenizer(str(base))
        vocab = tok.get_vocab()
        swapped = {**vocab, "a": vocab["b"], "b": vocab["a"]}
        model = _retokenized(tmp_path / "cpt2", model, swapped)
    if case == "chat-shape":  # the instruct model is not the base's architecture
        extra = [*extra, "--instruct", str(_other_shape(tmp_path / "other"))]
    out = tmp_path / "curve"
    if case == "out":
        out.mkdir()
    argv = ["models", "merge", str(model), "--base", str(base), "--out", str(out), *extra]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def _retokenized(path: Path, model: Path, vocab: dict[str, int]) -> Path:
    """The model with a tokenizer whose ids are not the base's (two tokens swapped)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    data = json.loads(tok.to_str())
    data["model"]["vocab"] = vocab
    shutil.copytree(model, path)
    (path / "tokenizer.json").write_text(json.dumps(data))
    return path


def test_an_extended_vocabulary_s_new_rows_come_from_the_cpt_model(
    tmp_path: Path, tiny_model: Path
) -> None:
    tok = load_tokenizer(str(tiny_model))
    tok.add_tokens(["xin chào", "Việt"])
    cpt = tmp_path / "cpt"
    model = LlamaForCausalLM.from_pretrained(tiny_model)
    model.resize_token_embeddings(len(tok), mean_resizing=False)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(cpt)
    tok.save_pretrained(cpt)
    from steep.model.merge import vocab_relation

    base_vocab = load_tokenizer(str(tiny_model)).get_vocab()
    with pytest.raises(Exception, match="records no vocabulary extension"):
        vocab_relation(base_vocab, tok.get_vocab(), cpt)
    write_lineage(cpt, Lineage(kind="cpt", base={"lineage": {"kind": "vocab_extension"}}))
    assert vocab_relation(base_vocab, tok.get_vocab(), cpt) == 2
    with ExitStack() as stack:
        c, b = Weights(cpt, stack), Weights(tiny_model, stack)
        plan = plan_merge(c, {"base": b}, extension=True)
        assert plan.new_rows == 2 and plan.extended == ["model.embed_tokens.weight"]
        out = dict(interpolated(plan, b, c, 0.25))
        ce, be = c.get("model.embed_tokens.weight"), b.get("model.embed_tokens.weight")
    emb = out["model.embed_tokens.weight"]
    n = be.shape[0]
    assert torch.equal(emb[n:], ce[n:])
    assert torch.allclose(emb[:n], 0.75 * be + 0.25 * ce[:n], atol=1e-6)
