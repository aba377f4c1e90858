"""Issue #30's "Done when" walk: the studio's four stages in one real browser session, with
no YAML typed and no command run.

Data Hub: upload files, prepare one with a packaged recipe on its page (funnel and drops),
mark an independent general eval set. Setup: a LoRA run with two phases and a forgetting
budget through form fields, its time estimate, launch. Watch: event markers while it is
held at a step, "New run from this run" with one change, launched. Model Hub (while the
clone trains): evaluate against the base, generate from a prompt, export a GGUF, start a new
run from the model. Then compare both runs.

The base is a tiny random Llama with a SentencePiece tokenizer (llama.cpp's converter
recognises that family; it refuses the byte tokenizer of tests/conftest.py's models). The
GGUF converter comes from the llama-cpp-python sdist kept in pytest's cache, as in
tests/test_gguf_export.py. Fixtures are tests/test_studio_browser.py's; with
STEEP_SCREENSHOTS=DIR each stage is saved as DIR/studio-<stage>.png (STEEP_SCREENSHOT_HOME
puts the workspace at a user's path for the docs' pictures).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from tests import held_steep
from tests.conftest import TINY_LLAMA, WORDS_A, WORDS_B, synthetic_docs, write_jsonl
from tests.test_studio_browser import (  # noqa: F401 - fixtures, used by name
    SHOTS,
    _steep_home,
    browser,
    gates,
    pytestmark,
    shot,
    studio,
    text_of,
)

pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")
pytest.importorskip("sentencepiece", reason="the gguf extra (pip install 'steep[gguf]')")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

WAIT_S = 240  # guards a hang only: every wait is for a state, never for a time
SETUP = ["method: lora", "rank: 4", "name: warm", "name: focus", "max_regression: 0.5"]
JOB_STATUS = """
for (const row of document.querySelectorAll("#model-jobs tbody tr")) {
  const cells = row.querySelectorAll("td");
  if (cells[1] && cells[1].textContent.trim() === arguments[0])
    return row.querySelector(".status").textContent.trim();
}
return null;
"""
INDEPENDENT = "no general eval set is independent of the training data"


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the studio and its jobs inherit it


@pytest.fixture
def spm_base(tmp_path: Path, _steep_home: Path, pytestconfig: pytest.Config) -> Path:  # noqa: F811
    """A tiny random Llama with a SentencePiece tokenizer in the workspace, and llama.cpp's
    converter sdist in its downloads (fetched once, then kept in pytest's cache)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from steep.model import gguf_convert
    from tests.test_gguf_export import _spm_tokenizer

    docs = synthetic_docs(WORDS_A, 60, 5, words_per_doc=30) + synthetic_docs(WORDS_B, 60, 6)
    tok = _spm_tokenizer(tmp_path / "spm", docs)
    cfg = LlamaConfig(
        vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        **TINY_LLAMA,
    )  # fmt: skip
    base = _steep_home / "models" / "tiny-base"
    LlamaForCausalLM(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    kept = pytestconfig.cache.mkdir("llama-cpp-python-sdist")
    sdist = kept / f"llama_cpp_python-{gguf_convert.llama_cpp_release()}.tar.gz"
    if not sdist.is_file():  # the first time only: pip fetches it (PyPI)
        gguf_convert.converter_dir(tmp_path / "fetch")
        shutil.copy(tmp_path / "fetch" / "downloads" / sdist.name, sdist)
    (_steep_home / "downloads").mkdir(parents=True, exist_ok=True)
    shutil.copy(sdist, _steep_home / "downloads" / sdist.name)
    return base


def _fill(driver, css: str, value: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, css)
    box.clear()
    box.send_keys(value)


def _upload(driver, wait, name: str, path: Path) -> None:
    _fill(driver, "#ds-name", name)
    driver.find_element(By.ID, "ds-files").send_keys(str(path))
    driver.find_element(By.ID, "ds-submit").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-ref="{name}@1"]'))


def _wait_done(driver, wait) -> None:
    wait.until(lambda d: text_of(d, "#status") in ("done", "failed", "cancelled"))
    assert text_of(driver, "#status") == "done", text_of(driver, "#log")


def _checked(driver, wait) -> None:
    """The check of the form as it is now has answered, and it may be launched."""
    wait.until(lambda d: not d.find_element(By.ID, "checking").is_displayed())
    assert driver.find_element(By.ID, "launch").is_enabled(), text_of(driver, "#errors")


def _job_status(driver, action: str) -> str | None:
    """The newest model job of that action's status, read in one go (the table is redrawn
    as the page polls)."""
    return driver.execute_script(JOB_STATUS, action)


def _data_hub(driver, wait, studio: str, up: Path) -> None:  # noqa: F811
    """Upload three files; prepare notes@1 with the packaged `docs` recipe on its page."""
    texts = synthetic_docs(WORDS_B, 150, 3)
    files = {
        "notes": write_jsonl(up / "notes.jsonl", [*texts, texts[0], "too short."]),
        "code": write_jsonl(up / "code.jsonl", synthetic_docs(WORDS_A, 150, 1)),
        "heldout": write_jsonl(up / "heldout.jsonl", synthetic_docs(WORDS_A, 40, 9)),
    }
    driver.get(studio + "/datasets")
    for name, path in files.items():
        _upload(driver, wait, name, path)
    driver.find_element(By.CSS_SELECTOR, 'tr[data-ref="notes@1"] a.dataset-link').click()
    wait.until(lambda d: d.find_elements(By.ID, "prepare-form"))
    Select(driver.find_element(By.ID, "prepare-recipe")).select_by_value("docs")
    driver.find_element(By.ID, "prepare-submit").click()
    wait.until(lambda d: d.find_elements(By.ID, "notes@2"))
    funnel = text_of(driver, '[id="notes@2"] table.funnel')
    assert "exact_dedup" in funnel and "gopher_quality" in funnel
    drops = [d.text for d in driver.find_elements(By.CSS_SELECTOR, '[id="notes@2"] .drop')]
    assert any("gopher_quality" in d for d in drops) and any("exact_dedup" in d for d in drops)
    shot(driver, "prepare", height=1020)


def _setup(driver, wait, studio: str, base: Path) -> None:  # noqa: F811
    """A LoRA run, two phases, a forgetting budget and an independent eval set: fields only."""
    driver.get(studio + "/runs/new")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sources .source"))
    driver.find_element(By.ID, "add-source").click()
    rows = driver.find_elements(By.CSS_SELECTOR, "#sources .source")
    for row, (ref, role) in zip(rows, [("notes@2", "domain"), ("code@1", "general")], strict=True):
        Select(row.find_element(By.NAME, "dataset")).select_by_value(ref)
        Select(row.find_element(By.NAME, "role")).select_by_value(role)
    basics = {"name": "lora", "base": str(base), "base_max_lr": "0.01", "seq_len": "64",
              "lr_fraction": "0.5", "global_batch_tokens": "128", "micro_batch_size": "2",
              "steps": "6", "eval_every": "3"}  # fmt: skip
    for name, value in basics.items():
        _fill(driver, f"#run-form [name={name}]", value)
    wait.until(lambda d: INDEPENDENT in text_of(d, "#warnings"))
    driver.find_element(By.ID, "add-eval-set").click()  # heldout@1, role general
    row = driver.find_elements(By.CSS_SELECTOR, "#eval-sets .eval-set")[0]
    Select(row.find_element(By.NAME, "dataset")).select_by_value("heldout@1")

    used = ("Method and optimizer", "Mix over time", "Forgetting budget", "Checkpoints")
    for summary in driver.find_elements(By.CSS_SELECTOR, ".schema-section summary"):
        if summary.text.startswith(used):
            summary.click()
    Select(driver.find_element(By.CSS_SELECTOR, '[data-path="train.method"]')).select_by_value(
        "lora"
    )
    _fill(driver, '[data-path="train.lora.rank"]', "4")
    _fill(driver, '[data-path="checkpoint.every_steps"]', "3")
    phases = driver.find_element(By.CSS_SELECTOR, '[data-rows="data.phases"]')
    for name, until, weights in [("warm", "3", "{notes: 1, code: 1}"), ("focus", "", "{notes: 3}")]:
        phases.find_element(By.CSS_SELECTOR, ".add-row").click()
        row = phases.find_elements(By.CSS_SELECTOR, ".row-list .row")[-1]
        _fill(row, '[data-col="name"]', name)
        if until:
            _fill(row, '[data-col="until_step"]', until)
        _fill(row, '[data-col="weights"]', weights)
    driver.find_element(By.CSS_SELECTOR, '[data-path="train.forgetting_budget"]').click()
    _fill(driver, '[data-path="train.forgetting_budget.max_regression"]', "0.5")

    wait.until(lambda d: all(w in text_of(d, "#resolved") for w in SETUP))
    _checked(driver, wait)
    assert INDEPENDENT not in text_of(driver, "#warnings")  # the eval set is independent
    assert text_of(driver, "#estimate").startswith("time: ")
    if SHOTS:  # the picture shows the phases and the budget; the resolved config the rest
        for summary in driver.find_elements(By.CSS_SELECTOR, ".schema-section summary"):
            if summary.text.startswith(("Method", "Checkpoints")):
                summary.click()
    shot(driver, "setup")


def _watch_and_clone(driver, wait, gates: Path) -> None:  # noqa: F811
    """Launch held at step 4: markers while running; then a clone with a new LR fraction,
    launched (it trains while the first run's model is used)."""
    held_steep.hold(gates, 4)
    driver.find_element(By.ID, "launch").click()
    wait.until(lambda d: d.current_url.endswith("/runs/1"))
    wait.until(lambda d: held_steep.is_held(gates, 4) or text_of(d, "#status") == "failed")
    assert text_of(driver, "#status") == "running", text_of(driver, "#log")

    def marks(d) -> set[str]:
        return {
            m.get_attribute("data-kind") for m in d.find_elements(By.CSS_SELECTOR, "#markers .mark")
        }

    wait.until(lambda d: {"phase", "eval", "checkpoint"} <= marks(d))
    shot(driver, "watch", height=1180)
    held_steep.release(gates, 4)
    _wait_done(driver, wait)

    driver.find_element(By.ID, "clone").click()
    wait.until(lambda d: "name: lora" in text_of(d, "#resolved"))
    _fill(driver, "#run-form [name=lr_fraction]", "0.2")  # the one change
    wait.until(lambda d: "lr_fraction: 0.2" in text_of(d, "#resolved"))
    _checked(driver, wait)
    cloned = text_of(driver, "#resolved")  # the form kept every field of the first run
    assert "measured on this machine" in text_of(driver, "#estimate")  # the first run's speed
    assert all(w in cloned for w in [*SETUP, "every_steps: 3", "dataset: notes@2"])
    driver.find_element(By.ID, "launch").click()
    wait.until(lambda d: d.current_url.endswith("/runs/2"))


def _compare(driver, wait, studio: str) -> None:  # noqa: F811
    """Both runs, once the clone is done, picked on the Runs list and compared."""
    driver.get(studio + "/runs/2")
    _wait_done(driver, wait)
    driver.get(studio + "/runs")
    for job in (1, 2):
        box = f'tr[data-job="{job}"] input.pick'
        wait.until(lambda d, b=box: d.find_elements(By.CSS_SELECTOR, b))
        driver.find_element(By.CSS_SELECTOR, box).click()
    driver.find_element(By.ID, "compare-link").click()
    diff = '#config-diff tr[data-key="train.lr_fraction"]'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, diff))
    assert text_of(driver, diff).split()[1:] == ["0.5", "0.2"]
    keys = [
        r.get_attribute("data-key")
        for r in driver.find_elements(By.CSS_SELECTOR, "#config-diff tr[data-key]")
    ]
    assert "train.lr_fraction" in keys and "train.method" not in keys
    general = 'figure[data-role="general"] .u-legend'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, general))
    legend = driver.find_element(By.CSS_SELECTOR, general).get_attribute("textContent")
    assert legend.count("(code, heldout)") == 2  # both runs on one chart, by role
    shot(driver, "compare-runs")


def _model_hub(driver, wait, studio: str, home: Path) -> None:  # noqa: F811
    """The first run's model: evaluate, generate, export a GGUF, new run from it."""
    driver.get(studio + "/runs/1")
    link = "const a = document.querySelector('#model-link a'); return a && a.href"
    driver.get(wait.until(lambda d: d.execute_script(link)))  # redrawn as the page polls
    wait.until(lambda d: d.find_elements(By.ID, "evaluate"))
    model = driver.find_element(By.ID, "model-actions").get_attribute("data-model")

    driver.find_element(By.ID, "evaluate").click()
    wait.until(
        lambda d: d.find_elements(By.ID, "eval-windows") or _job_status(d, "evaluate") == "failed"
    )
    assert _job_status(driver, "evaluate") == "done", text_of(driver, "#action-error")
    rows = driver.find_elements(By.CSS_SELECTOR, "#eval-windows tr")
    sets = [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows[1:]]
    assert sets == ["notes", "code", "heldout"]  # fix: the Data Hub eval set is scored too
    assert "domain sets" in text_of(driver, "#eval-headline")
    _fill(driver, "#generate-form [name=prompt]", "the river")
    _fill(driver, "#generate-form [name=max_new_tokens]", "4")
    driver.find_element(By.CSS_SELECTOR, "#generate-form button[type=submit]").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#samples .sample"))
    assert text_of(driver, "#samples .sample .hint") == "the river"

    _fill(driver, "#export-form [name=dest]", "exports/lora-gguf")
    Select(driver.find_element(By.CSS_SELECTOR, "#export-form [name=format]")).select_by_value(
        "gguf"
    )
    driver.find_element(By.CSS_SELECTOR, "#export-form button[type=submit]").click()
    wait.until(lambda d: _job_status(d, "export") in ("done", "failed"))
    assert _job_status(driver, "export") == "done", text_of(driver, "#action-error")
    out = home / "exports" / "lora-gguf"
    assert [p.suffix for p in out.iterdir() if p.suffix == ".gguf"] == [".gguf"]
    assert json.loads((out / "steep.json").read_text())["export"]["format"] == "gguf"
    shot(driver, "model-actions")

    href = driver.find_element(By.ID, "new-run-link").get_attribute("href")
    driver.find_element(By.ID, "new-run-link").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#run-form [name=base]"))
    base = driver.find_element(By.CSS_SELECTOR, "#run-form [name=base]").get_attribute("value")
    assert href.endswith("?base=" + quote(base, safe=""))  # the form opens with it filled
    assert Path(base) == (home / "runs" / model / "model").resolve()  # this model's folder
    wait.until(lambda d: f"base: {base}" in text_of(d, "#resolved"))


def test_the_whole_workflow(studio, browser, spm_base, gates, tmp_path, _steep_home) -> None:  # noqa: F811
    """Data Hub, setup, watch and compare, Model Hub: one user's session, stage by stage."""
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.1)
    _data_hub(browser, wait, studio, tmp_path / "up")
    _setup(browser, wait, studio, spm_base)
    _watch_and_clone(browser, wait, gates)
    _model_hub(browser, wait, studio, _steep_home)
    _compare(browser, wait, studio)


def test_evaluate_scores_a_data_hub_eval_set_with_the_run_windows(tmp_path: Path) -> None:
    """A run's ``data.eval_sets`` entry that is a Data Hub dataset is no list of files: the
    Model Hub's Evaluate scored it as ``--sets heldout=dataset`` and the job failed."""
    from steep.studio.model_actions import eval_argv

    config = {
        "data": {
            "sources": [{"name": "notes", "dataset": "notes@2"}],
            "eval_sets": {"heldout": {"dataset": "heldout@1"}, "news": ["n.jsonl"]},
        }
    }
    model = {"path": tmp_path, "lineage": {"config": config, "run_dir": str(tmp_path)}}
    assert eval_argv(model) == ["eval", str(tmp_path), "--run-windows", "--sets", "news=n.jsonl"]
