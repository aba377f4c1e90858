"""steep eval: bits per byte by hand, zero change for twins, a real gain after training,
multiple-choice scoring, the report and lineage files, and clear errors on bad input."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from steep.cli import main
from steep.eval import compare, tasks
from steep.eval.compare import EvalSpec, run_eval
from steep.eval.generate import PromptFileError, read_prompts
from steep.eval.lineage import lineage_roles
from steep.eval.tasks import TaskFileError, evaluate_task, read_task, task_requests
from steep.model.heldout import EvalSetError, TextSet, evaluate_set, read_set, tokenize_set
from steep.model.io import ModelLoadError, byte_tokenizer
from steep.model.scoring import Score
from tests.conftest import WORDS_A, WORDS_B, make_tiny_model, synthetic_docs, write_jsonl

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CPU = torch.device("cpu")


def _write_task(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _domain_task(path: Path) -> Path:
    """Each question's right answer is domain text; the wrong ones are letters at random."""
    rows = [
        {"question": "def return class", "choices": ["import lambda yield", "qzx vkj wpf"]},
        {"question": "self None True", "choices": ["xqv zzk pqj", "def async await"]},
        {"question": "yield lambda def", "choices": ["jkq wvz", "xpq qqz", "return self None"]},
        {"question": "import async", "choices": ["await return", "zvq kjx"]},
    ]
    for row, ans in zip(rows, (0, 1, 2, 0), strict=True):
        row["answer"] = ans
    rows.append(
        {"question": "await self", "choices": ["vvq kzj", "class def"], "answer": "class def"}
    )
    return _write_task(path, rows)


def _fit(base: Path, out: Path, texts: list[str], steps: int = 40) -> Path:
    """Train the tiny model briefly on ``texts`` and save it with steep.json lineage."""
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    stream = []
    for t in texts:
        stream += [tok.eos_token_id, *tok(t, add_special_tokens=False)["input_ids"]]
    data = torch.tensor(stream)
    windows = data[: len(data) // 65 * 65].view(-1, 65)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        batch = windows[torch.randint(len(windows), (8,), generator=gen)]
        logits = model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base, and an adapted copy trained on domain text whose lineage names base and run."""
    root = tmp_path_factory.mktemp("models")
    base = make_tiny_model(root / "base")
    run_dir = root / "run"
    run_dir.mkdir()
    adapted = _fit(base, run_dir / "model", synthetic_docs(WORDS_A, 60, seed=11))
    lineage = {"kind": "cpt", "run_dir": str(run_dir), "base": {"path": str(base)}}
    (adapted / "steep.json").write_text(json.dumps(lineage))
    return {"base": base, "adapted": adapted, "run_dir": run_dir}


@pytest.fixture
def sets(tmp_path: Path) -> dict[str, Path]:
    return {
        "domain": write_jsonl(tmp_path / "domain.jsonl", synthetic_docs(WORDS_A, 6, seed=5)),
        "general": write_jsonl(tmp_path / "general.jsonl", synthetic_docs(WORDS_B, 6, seed=6)),
    }


# --------------------------------------------------------------------------- held-out


def test_bpb_matches_a_hand_computation(tiny_model: Path) -> None:
    """Windows, padding and batching change nothing: the sum is the token-by-token sum."""
    texts = ["héllo wörld, a tiny test", "ab", "third document, a little longer than 16"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    tok = byte_tokenizer()
    seq_len = 16
    tset = tokenize_set(TextSet("t", ["x"], texts, 0), tok, seq_len)
    got = evaluate_set(model, tset, batch_size=3, device=CPU)

    nats, n_tokens = 0.0, 0
    with torch.no_grad():
        for text in texts:
            ids = [tok.eos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]
            assert len(ids) - 1 == len(text.encode("utf-8"))  # one token per byte
            for start in range(0, len(ids) - 1, seq_len):
                window = torch.tensor([ids[start : start + seq_len + 1]])
                logp = torch.log_softmax(model(window[:, :-1]).logits[0], -1)
                for pos, target in enumerate(window[0, 1:].tolist()):
                    nats -= float(logp[pos, target])
                    n_tokens += 1
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    assert got["tokens"] == n_tokens == n_bytes
    assert got["bytes"] == n_bytes
    assert got["loss"] == pytest.approx(nats / n_tokens, rel=1e-5)
    assert got["bpb"] == pytest.approx(nats / (math.log(2) * n_bytes), rel=1e-5)
    assert got["ppl"] == pytest.approx(math.exp(nats / n_tokens), rel=1e-5)


def test_empty_and_too_short_sets_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"text": "   "}\n{"text": ""}\n', encoding="utf-8")
    with pytest.raises(EvalSetError, match=r"eval set 'e' .*empty\.jsonl.* has no documents"):
        read_set("e", [str(empty)])
    with pytest.raises(EvalSetError, match="data path does not exist"):
        read_set("m", [str(tmp_path / "missing.jsonl")])
    short = read_set("s", [str(write_jsonl(tmp_path / "s.jsonl", ["tiny"]))])
    with pytest.raises(
        EvalSetError, match=r"'s' .* has 4 tokens, fewer than one window of seq_len = 64"
    ):
        tokenize_set(short, byte_tokenizer(), 64)


# --------------------------------------------------------------------------- tasks


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "malformed JSON"),
        ({"question": "q", "choices": ["a"], "answer": 0}, "at least 2"),
        ({"question": "q", "choices": ["a", "b"], "answer": 2}, "'answer' must be"),
        ({"question": "q", "choices": ["a", "b"], "answer": "c"}, "not one of the choices"),
        ({"question": "", "choices": ["a", "b"], "answer": 0}, "'question'"),
        ({"question": "q", "choices": ["a", "b"], "answer": 0, "style": "x"}, "'style'"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_malformed_task_row_names_file_and_line(tmp_path: Path, row, message: str) -> None:
    good = {"question": "q", "choices": ["a", "b"], "answer": 1}
    path = _write_task(tmp_path / "t.jsonl", [good, "", row])
    with pytest.raises(TaskFileError, match=rf"t\.jsonl:3: .*{message}"):
        read_task(path)


def test_acc_norm_divides_by_choice_length(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A short choice wins on total log-likelihood, a long one per character (lm-eval)."""
    path = _write_task(
        tmp_path / "t.jsonl", [{"question": "q", "choices": ["a", "bbbbbbbb"], "answer": 1}]
    )
    fake = [Score(-2.0, False), Score(-4.0, False)]
    monkeypatch.setattr(tasks, "score_requests", lambda *a, **k: fake)
    no_model: torch.nn.Module = None  # type: ignore[assignment]  # the scores are faked
    got = evaluate_task(no_model, read_task(path), byte_tokenizer(), 64, 4, CPU)
    prefix = "none (lm-eval 0.4.13 default, add_bos_token unset: this tokenizer adds no BOS)"
    assert got == {"acc": 0.0, "acc_norm": 1.0, "items": 1, "prefix": prefix}


def test_task_requests_score_only_the_choice(tmp_path: Path) -> None:
    rows = [
        {"question": "Pick one ", "choices": ["yes", "no"], "answer": 0},
        {"question": "Which?", "choices": ["red", "blue"], "answer": 1, "style": "mc"},
    ]
    task = read_task(_write_task(tmp_path / "t.jsonl", rows))
    tok = byte_tokenizer()
    (yes, no), (a, b) = task_requests(task, tok, seq_len=64)
    # as lm-eval: the question's trailing space moves to the choice (after the " " delimiter)
    assert tok.decode(yes.ids[-yes.n_scored :]) == "  yes"
    # no prefix: lm-eval's hf model adds only what the tokenizer adds, and this one adds none
    assert tok.decode(yes.ids[: -yes.n_scored]) == "Pick one"
    assert tok.decode(b.ids[-b.n_scored :]) == " B"
    assert tok.decode(a.ids[:-2]) == "Which?\nA. red\nB. blue\nAnswer:"
    short = task_requests(task, tok, seq_len=6)[0][0]  # context cut from the left
    assert tok.decode(short.ids) == "ne  yes" and short.n_scored == 5
    with pytest.raises(TaskFileError, match="a choice has 5 tokens, more than seq_len = 4"):
        task_requests(task, tok, seq_len=4)


def test_prompt_file_errors_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n', encoding="utf-8")
    with pytest.raises(PromptFileError, match=r"p\.jsonl:2: .*'prompt'"):
        read_prompts(bad)
    txt = tmp_path / "p.txt"
    txt.write_text("first\n\nsecond\\nline\n", encoding="utf-8")
    assert read_prompts(txt) == ["first", "second\nline"]


# --------------------------------------------------------------------------- bad input early


@pytest.fixture
def no_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any model weights are loaded: errors must come before that."""

    def refuse(*_a, **_k):
        raise AssertionError("weights were loaded before the input was checked")

    monkeypatch.setattr(compare, "_load_model", refuse)


def test_bad_input_stops_before_any_model_is_loaded(
    tmp_path: Path, tiny_model: Path, sets: dict[str, Path], no_weights: None
) -> None:
    spec = {"model": str(tiny_model), "seq_len": 64}
    bad_task = _write_task(tmp_path / "bad.jsonl", [{"question": "q", "choices": ["a", "b"]}])
    with pytest.raises(TaskFileError, match=r"bad\.jsonl:1: "):
        run_eval(EvalSpec(**spec, sets={"d": [str(sets["domain"])]}, tasks={"bad": str(bad_task)}))
    short = write_jsonl(tmp_path / "short.jsonl", ["only a few words"])
    with pytest.raises(EvalSetError, match="fewer than one window"):
        run_eval(EvalSpec(**spec, sets={"short": [str(short)]}))
    no_tok = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_model, no_tok)
    for f in no_tok.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            f.unlink()
    with pytest.raises(ModelLoadError, match=r"no-tokenizer has no tokenizer"):
        run_eval(EvalSpec(model=str(no_tok), seq_len=64, sets={"d": [str(sets["domain"])]}))
    with pytest.raises(ValueError, match="--domain/--general name no set or task: typo"):
        run_eval(EvalSpec(**spec, sets={"d": [str(sets["domain"])]}, roles={"typo": "domain"}))
    with pytest.raises(ValueError, match="nothing to evaluate"):
        run_eval(EvalSpec(**spec))


def test_cli_reports_bad_input_as_a_user_error(
    tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str], no_weights: None
) -> None:
    assert main(["eval", str(tiny_model), "--sets", "no-equals-sign"]) == 2
    assert "expected NAME=PATH" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    assert main(["eval", str(tiny_model), "--sets", f"d={empty}"]) == 2
    assert "has no documents" in capsys.readouterr().err


# --------------------------------------------------------------------------- end to end


def test_identical_models_show_zero_change_and_write_the_report(
    tmp_path: Path, models: dict[str, Path], sets: dict[str, Path]
) -> None:
    model = tmp_path / "twin"
    shutil.copytree(models["base"], model)
    (model / "steep.json").write_text(json.dumps({"kind": "cpt", "note": "kept"}))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def return\nthe river | city\n", encoding="utf-8")
    spec = EvalSpec(
        model=str(model),
        baseline=str(models["base"]),
        sets={name: [str(p)] for name, p in sets.items()},
        tasks={"code_mc": str(_domain_task(tmp_path / "code_mc.jsonl"))},
        prompts=str(prompts),
        seq_len=64,
        batch_size=8,
        max_new_tokens=8,
        device="cpu",
    )
    result = run_eval(spec)

    for row in result["sets"].values():
        assert row["base"]["bpb"] == row["adapted"]["bpb"]
        assert row["change"]["bpb"] == {"abs": 0.0, "rel": 0.0}
    assert result["tasks"]["code_mc"]["change"]["acc"]["abs"] == 0.0
    head = result["headline"]
    assert head["domain"] == ["domain"] and head["general"] == ["general"]  # roles by name
    assert head["domain_gain"] == 0.0 and head["general_regression"] == 0.0
    assert result["samples"][0]["base"] == result["samples"][0]["adapted"]

    out = model / "eval"
    saved = json.loads((out / "eval.json").read_text())
    assert saved["format"] == "steep-eval" and saved["headline"] == head
    assert saved["files"]["plots"] == ["plots/bpb.png", "plots/tasks.png", "plots/change.png"]
    for plot in saved["files"]["plots"]:
        assert (out / plot).read_bytes().startswith(PNG_MAGIC)
    md = (out / "eval.md").read_text()
    assert "## Headline" in md and "**domain gain**" in md and "| domain | domain |" in md
    assert "### Prompt 2\n\n```text\nthe river | city\n```" in md
    lineage = json.loads((model / "steep.json").read_text())
    assert lineage["note"] == "kept" and lineage["eval"]["headline"] == head
    assert "samples" not in lineage["eval"]
    assert not list(model.glob(".*"))  # no temporary files left behind


def test_adapted_model_gains_on_its_domain_via_the_cli(
    tmp_path: Path, models: dict[str, Path], sets: dict[str, Path], capsys
) -> None:
    """Baseline and run directory come from the model's steep.json."""
    adapted, run_dir = models["adapted"], models["run_dir"]
    task = _domain_task(tmp_path / "code_mc.jsonl")
    argv = ["eval", str(adapted), "--sets", f"code={sets['domain']}", f"wiki={sets['general']}"]
    argv += ["--domain", "code", "code_mc", "--general", "wiki", "--tasks", f"code_mc={task}"]
    argv += ["--seq-len", "64", "--batch-size", "8", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"baseline: {models['base']}" in printed and "domain gain (bpb): +" in printed

    result = json.loads((adapted / "steep.json").read_text())["eval"]
    assert result["baseline"]["path"] == str(models["base"])
    code, wiki = result["sets"]["code"], result["sets"]["wiki"]
    assert code["adapted"]["bpb"] < 0.8 * code["base"]["bpb"]  # learned the domain
    assert code["improvement"] > wiki["improvement"]
    assert result["headline"]["domain_gain"] == pytest.approx(code["improvement"])
    assert result["headline"]["general_regression"] == pytest.approx(-wiki["improvement"])
    mc = result["tasks"]["code_mc"]
    assert mc["adapted"]["acc"] == 1.0 > mc["base"]["acc"] and mc["role"] == "domain"
    assert result["headline"]["tasks"]["domain"] == ["code_mc"]
    for folder in (adapted / "eval", run_dir / "eval"):  # model dir and the run directory
        assert json.loads((folder / "eval.json").read_text())["sets"]["code"] == code


def test_out_and_no_lineage_write_nothing_else(
    tmp_path: Path, models: dict[str, Path], sets: dict[str, Path]
) -> None:
    """Before (#17 finding 9): `--out X --no-lineage` still overwrote RUN_DIR/eval/, so the
    run's report and the model's disagreed."""
    adapted, run_dir = models["adapted"], models["run_dir"]

    def snapshot() -> dict[str, bytes]:
        return {
            str(p): p.read_bytes()
            for root in (adapted, run_dir)
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }

    before = snapshot()
    argv = ["eval", str(adapted), "--sets", f"code={sets['domain']}", "--seq-len", "64"]
    argv += ["--device", "cpu", "--no-lineage"]
    assert main([*argv, "--out", str(tmp_path / "mine")]) == 0
    assert (tmp_path / "mine" / "eval.json").exists()
    assert main(argv) == 0  # --no-lineage alone: a report in STEEP_HOME/evals/
    assert snapshot() == before  # neither the model's nor the run's folder changed


def test_extended_vocabulary_is_compared_on_the_same_bytes(
    tmp_path: Path, models: dict[str, Path], sets: dict[str, Path]
) -> None:
    """A model whose tokenizer has extra tokens reads the same bytes in fewer tokens."""
    tok = AutoTokenizer.from_pretrained(models["base"])
    tok.add_tokens(["return", "lambda", "import"])
    model = AutoModelForCausalLM.from_pretrained(models["base"], dtype=torch.float32)
    model.resize_token_embeddings(len(tok))
    extended = tmp_path / "extended"
    model.save_pretrained(extended)
    tok.save_pretrained(extended)
    spec = EvalSpec(
        model=str(extended),
        baseline=str(models["base"]),
        sets={"domain": [str(sets["domain"])]},
        seq_len=64,
        batch_size=8,
        device="cpu",
        update_lineage=False,
        out_dir=str(tmp_path / "report"),
    )
    row = run_eval(spec)["sets"]["domain"]
    assert row["base"]["bytes"] == row["adapted"]["bytes"] == row["bytes"]
    assert row["adapted"]["tokens"] < row["base"]["tokens"]
    assert math.isfinite(row["change"]["bpb"]["rel"])
    assert not (extended / "steep.json").exists()  # --no-lineage


def test_roles_come_from_the_training_run(tmp_path: Path) -> None:
    data = {
        "sources": [{"name": "shop", "role": "domain"}, {"name": "domain_x"}, {"name": "web"}],
        "eval_roles": {"legal": "domain"},
    }
    (tmp_path / "steep.json").write_text(json.dumps({"config": {"data": data}}))
    roles = lineage_roles(str(tmp_path))
    assert roles == {"shop": "domain", "domain_x": "domain", "web": "general", "legal": "domain"}
