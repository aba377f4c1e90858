"""Vocabulary extension on a tiny byte-level BPE tokenizer and a tiny Llama made here."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from steep.cli import main
from steep.config import parse_config
from steep.demos.debian import help_page_text, is_vietnamese, man_page_text
from steep.hub import Hub
from steep.model.vocab import (
    VocabError,
    extend_tokenizer,
    fertility,
    grow_embeddings,
    sub_token_ids,
    tied,
)
from steep.train.checkpoint import checkpoint_dirs
from steep.train.loop import resume_run, train
from tests.conftest import TINY_LLAMA, WORDS_B, synthetic_docs, tiny_config, write_jsonl

VI_SENTENCES = [
    "Chọn Công cụ rồi Tùy chọn để thay đổi thiết lập của người dùng.",
    "Hộp thoại này hiển thị các điều khiển để quản lý tài liệu của bạn.",
    "Nhấn vào nút này để lưu tài liệu hiện thời với một tên khác.",
    "Bạn có thể chèn một bảng mới vào trong văn bản đang được chỉnh sửa.",
    "Trình đơn Xem chứa các lệnh để điều khiển cách hiển thị trên màn hình.",
    "Tập tin được mở bằng chương trình mặc định của hệ thống.",
    "Người dùng có thể thay đổi phông chữ, kích cỡ và màu sắc của đoạn văn.",
    "Hàm này trả về giá trị lớn nhất trong danh sách các đối số.",
    "Để in tài liệu, hãy chọn Tập tin rồi In trong thanh trình đơn.",
    "Thư viện hiện thời đã chứa hộp thoại có thể được địa hoá.",
]
EN_SENTENCES = [
    "The river runs north of the old city and the people of the village sing in winter.",
    "A king of the mountain people wrote the history of the north in a long song.",
]


def vi_docs(n: int, seed: int = 0, sentences_per_doc: int = 8) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choices(VI_SENTENCES, k=sentences_per_doc))
        + f" Năm {rng.randint(1990, 2030)}."
        for _ in range(n)
    ]


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A ~300-token byte-level BPE (GPT-2 style) learnt on English only."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(synthetic_docs(WORDS_B, 50, 0) + EN_SENTENCES * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def tiny_lm(vocab: int, tie: bool = True, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab, eos_token_id=0, **{**TINY_LLAMA, "tie_word_embeddings": tie}
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def ext(tok):
    return extend_tokenizer(tok, vi_docs(60), 40)


@pytest.fixture
def tiny_base(tmp_path: Path, tok) -> Path:
    path = tmp_path / "tiny-bpe-base"
    tiny_lm(len(tok)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


# --------------------------------------------------------------------------- tokenizer


def test_old_ids_unchanged_new_tokens_appended_and_used(tok, ext):
    old, new = tok.get_vocab(), ext.tokenizer.get_vocab()
    assert all(new[t] == i for t, i in old.items())
    assert sorted(ext.new_tokens) == list(range(len(tok), len(tok) + 40))
    assert not set(ext.new_tokens.values()) & set(old)  # no duplicates of existing tokens
    assert not any(ch.isdigit() for t in ext.new_tokens.values() for ch in t)  # the base's
    text = VI_SENTENCES[0]
    ids = ext.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert any(i >= len(tok) for i in ids)  # real BPE merges: the new tokens are produced
    assert ext.tokenizer.decode(ids) == text
    assert fertility(ext.tokenizer, VI_SENTENCES)["tokens"] < fertility(tok, VI_SENTENCES)["tokens"]


def test_new_token_splits_into_old_tokens(tok, ext):
    for token in ext.new_tokens.values():
        parts = sub_token_ids(tok, token)
        assert len(parts) >= 2 and all(p < len(tok) for p in parts)
        assert "".join(tok.convert_ids_to_tokens(parts)) == token


# --------------------------------------------------------------------------- embeddings


@pytest.mark.parametrize("tie", [True, False])
def test_mean_init_and_old_logits_unchanged(tok, ext, tie):
    model = tiny_lm(len(tok), tie=tie)
    before_in = model.get_input_embeddings().weight.detach().clone()
    before_out = model.get_output_embeddings().weight.detach().clone()
    ids = torch.tensor([tok(" ".join(EN_SENTENCES))["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits
    grow_embeddings(model, tok, ext.new_tokens, "mean")
    assert tied(model) is tie
    assert model.get_input_embeddings().weight.shape[0] == len(ext.tokenizer)
    assert model.config.vocab_size == len(ext.tokenizer)
    w_in, w_out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    for i, token in ext.new_tokens.items():
        parts = sub_token_ids(tok, token)
        assert torch.allclose(w_in[i], before_in[parts].mean(0))
        assert torch.allclose(w_out[i], before_out[parts].mean(0))
    assert torch.equal(w_in[: len(tok)], before_in)
    with torch.no_grad():
        after = model(ids).logits
    assert after.shape[-1] == len(ext.tokenizer)
    assert torch.allclose(after[..., : len(tok)], logits, atol=1e-5)


@pytest.mark.parametrize("init", ["mean_resizing", "random"])
def test_other_inits_keep_old_rows(tok, ext, init):
    model = tiny_lm(len(tok))
    before = model.get_input_embeddings().weight.detach().clone()
    grow_embeddings(model, tok, ext.new_tokens, init)
    w = model.get_input_embeddings().weight
    assert tied(model) and torch.equal(w[: len(tok)], before)
    assert w[len(tok) :].abs().sum() > 0


# --------------------------------------------------------------------------- the command


def test_cli_extend_round_trip(tmp_path, tiny_base, tok, capsys):
    corpus = write_jsonl(tmp_path / "vi.jsonl", vi_docs(80))
    out = tmp_path / "extended"
    code = main(
        [
            "tokenizer", "extend", str(tiny_base), "--corpus", str(corpus), "--add", "30",
            "-o", str(out), "--lang", "vi", "--eval-chars", "3000", "--seq-len", "64",
            "--base-max-lr", "1e-3",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "tokens/char" in printed and "init mean_resizing" in printed
    model = AutoModelForCausalLM.from_pretrained(out)
    new_tok = AutoTokenizer.from_pretrained(out)
    assert len(new_tok) == len(tok) + 30 == model.get_input_embeddings().weight.shape[0]
    assert tied(model)
    assert all(new_tok.get_vocab()[t] == i for t, i in tok.get_vocab().items())
    base = AutoModelForCausalLM.from_pretrained(tiny_base)
    w, w0 = model.get_input_embeddings().weight, base.get_input_embeddings().weight
    new_id = len(tok)
    token = new_tok.convert_ids_to_tokens(new_id)
    assert torch.allclose(w[new_id], w0[sub_token_ids(tok, token)].mean(0))
    lineage = json.loads((out / "steep.json").read_text())
    assert lineage["vocab_extension"]["added"] == 30
    assert lineage["vocab_extension"]["init"] == "mean"
    assert lineage["vocab_extension"]["first_new_id"] == len(tok)
    assert lineage["base_peak_lr"]["value"] == 1e-3
    report = json.loads((out / "vocab_report.json").read_text())
    assert set(report["initial_bpb"]) == {"base", "mean", "mean_resizing", "random"}
    old_f, new_f = report["fertility"]["old"], report["fertility"]["new"]
    assert new_f["tokens_per_char"] < old_f["tokens_per_char"]
    assert new_f["tokens_per_word"] < old_f["tokens_per_word"]
    (listed,) = [m for m in Hub().models() if m["path"] == str(out.resolve())]
    assert listed["kind"] == "vocab_extension"  # the Model Hub offers it as a base
    assert "vocab" in (out / "README.md").read_text().lower()  # with a model card


def test_wrong_language_is_refused(tmp_path, tiny_base):
    corpus = write_jsonl(tmp_path / "en.jsonl", synthetic_docs(WORDS_B, 40, 1))
    with pytest.raises(VocabError, match=r"does not look like 'vi'.*'en'"):
        from steep.model.vocab import ExtendSpec, extend_model

        extend_model(ExtendSpec(str(tiny_base), [str(corpus)], 5, tmp_path / "o", lang="vi"))


def test_too_small_corpus_says_how_many_were_learnt(tok):
    with pytest.raises(VocabError, match=r"supports only (\d+) new tokens, not 5,000") as err:
        extend_tokenizer(tok, VI_SENTENCES[:2], 5000)
    assert "BPE learnt" in str(err.value) and "Lower --add" in str(err.value)


def test_unsupported_tokenizer_types_name_what_works():
    wordpiece = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    with pytest.raises(VocabError, match="WordPiece, not BPE; only byte-level BPE"):
        extend_tokenizer(PreTrainedTokenizerFast(tokenizer_object=wordpiece), VI_SENTENCES, 3)
    spm_style = Tokenizer(models.BPE({"▁": 0, "a": 1}, [], byte_fallback=True))
    spm_style.pre_tokenizer = pre_tokenizers.Metaspace()
    with pytest.raises(VocabError, match="Metaspace, not ByteLevel.*Llama 2"):
        extend_tokenizer(PreTrainedTokenizerFast(tokenizer_object=spm_style), VI_SENTENCES, 3)


# --------------------------------------------------------------------------- warm stage


def _extended_base(tmp_path: Path, tiny_base: Path) -> Path:
    from steep.model.vocab import ExtendSpec, extend_model

    corpus = write_jsonl(tmp_path / "vi-tok.jsonl", vi_docs(80, seed=3))
    out = tmp_path / "ext-base"
    spec = ExtendSpec(str(tiny_base), [str(corpus)], 30, out, eval_chars=0, base_max_lr=1e-2)
    extend_model(spec, progress=False)
    return out


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def test_embedding_warmup_changes_only_new_rows_and_resumes_exactly(tmp_path, tiny_base, tok):
    base = _extended_base(tmp_path, tiny_base)
    corpora = {
        "domain": write_jsonl(tmp_path / "d" / "vi.jsonl", vi_docs(120, seed=5)),
        "general": write_jsonl(tmp_path / "d" / "en.jsonl", synthetic_docs(WORDS_B, 120, 2)),
    }
    # all steps in the warm stage: only the new embedding rows may move
    cfg = tiny_config(tmp_path, corpora, base, steps=3, embedding_warmup_steps=3)
    cfg["model"].pop("base_max_lr")  # the extension's steep.json carries the base's peak
    warm = train(parse_config(cfg))
    lineage = json.loads((warm.model_dir / "steep.json").read_text())
    assert lineage["max_lr"] == pytest.approx(0.3 * 1e-2)  # lr_fraction x the carried peak
    before, after = _weights(base), _weights(warm.model_dir)
    emb = "model.embed_tokens.weight"
    for name, w in before.items():
        if name not in (emb, "lm_head.weight"):  # lm_head is the same (tied) tensor
            assert torch.equal(w, after[name]), name
    assert torch.equal(before[emb][: len(tok)], after[emb][: len(tok)])
    assert not torch.equal(before[emb][len(tok) :], after[emb][len(tok) :])

    # 2 warm steps then full training; resume from the checkpoint inside the warm stage
    cfg = tiny_config(tmp_path, corpora, base, steps=6, embedding_warmup_steps=3)
    cfg["run"]["out_dir"] = str(tmp_path / "full")
    cfg["checkpoint"] = {"every_steps": 2, "keep_last": 3}
    full = train(parse_config(cfg))
    assert not torch.equal(
        _weights(full.model_dir)["model.norm.weight"], before["model.norm.weight"]
    )
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(full.run_dir, resumed_dir)
    for ckpt in checkpoint_dirs(resumed_dir / "checkpoints")[1:]:  # keep step 2 only
        shutil.rmtree(ckpt)
    shutil.rmtree(resumed_dir / "model")
    cfg_path = resumed_dir / "config.yaml"
    cfg_path.write_text(cfg_path.read_text().replace(str(tmp_path / "full"), str(resumed_dir)))
    resumed = resume_run(resumed_dir)
    a, b = _weights(full.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- corpus text


def test_vietnamese_line_filter_and_extractors():
    assert is_vietnamese("Chọn Công cụ rồi Tùy chọn để thay đổi thiết lập.")
    assert not is_vietnamese("Choose Tools - Options - Load/Save to change the settings.")
    html = (
        '<html><body><div id="nav">Menu chính của trang</div><div id="DisplayArea">'
        "<h1>Tùy chọn Nạp/Lưu chung</h1><p>Ghi rõ thiết lập Nạp/Lưu chung của tài liệu.</p>"
        '<p>In the General section, you can select default settings.</p><p>Chọn <span hidden="true">'
        "LibreOffice - Preferences</span>mục trình đơn để thay đổi</p></div></body></html>"
    )
    text = help_page_text(html)
    assert text.splitlines() == [
        "Tùy chọn Nạp/Lưu chung",
        "Ghi rõ thiết lập Nạp/Lưu chung của tài liệu.",
        "Chọn mục trình đơn để thay đổi",
    ]
    roff = (
        '.\\" comment\n.TH TEST 1 "Tháng 9"\n.SH "MÔ TẢ"\n.PP\n'
        "Thoát với trạng thái xác định bởi \\fIBIỂU_THỨC\\fP\\-và rồi thoát.\n"
        ".TP\n\\fB\\-\\-help\\fP\nhiển thị trợ giúp này rồi thoát\n"
    )
    assert man_page_text(roff).splitlines() == [
        "Thoát với trạng thái xác định bởi BIỂU_THỨC-và rồi thoát.",
        "hiển thị trợ giúp này rồi thoát",
    ]
