"""The model page's actions in a real browser against a real ``steep studio``: each runs
the CLI's own command as a job (``steep eval``, ``steep models export``, ``steep models
push``, ``steep eval --prompts``) and its result, or its one-line error, shows on the page.

The studio, browser and workspace fixtures are tests/test_studio_browser.py's; the model
is a tiny run trained here first. The machine is offline for the push (HF_HUB_OFFLINE).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from tests.conftest import WORDS_A, WORDS_B, synthetic_docs, tiny_config, write_jsonl
from tests.test_studio_browser import (  # noqa: F401 - fixtures, used by name
    _steep_home,
    browser,
    gates,
    pytestmark,
    studio,
)

selenium = pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT_S = 180  # guards a hang only: every wait is for a state, never for a time


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the studio and its jobs inherit it


@pytest.fixture
def trained(tmp_path: Path, _steep_home: Path) -> Path:  # noqa: F811
    """A tiny run's model in the workspace, trained by ``steep train`` in this process."""
    from steep.cli import main
    from tests.conftest import make_tiny_model

    corpora = {
        "domain": write_jsonl(tmp_path / "data" / "domain.jsonl", synthetic_docs(WORDS_A, 60, 1)),
        "general": write_jsonl(tmp_path / "data" / "general.jsonl", synthetic_docs(WORDS_B, 60, 2)),
    }
    base = make_tiny_model(_steep_home / "models" / "tiny-base")
    config = tiny_config(tmp_path, corpora, base, steps=4)
    config["run"]["out_dir"] = str(_steep_home / "runs" / "t")
    config["checkpoint"] = {"every_steps": 100, "keep_last": 1}
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    return _steep_home / "runs" / "t" / "model"


def _submit(driver, form: str, **fields: str) -> None:
    for name, value in fields.items():
        box = driver.find_element(By.CSS_SELECTOR, f"#{form} [name={name}]")
        box.clear()
        box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, f"#{form} button[type=submit]").click()


def _job_status(driver, action: str) -> str | None:
    rows = driver.find_elements(By.CSS_SELECTOR, "#model-jobs tbody tr")
    found = [r for r in rows if r.find_elements(By.TAG_NAME, "td")[1].text == action]
    return found[0].find_element(By.CSS_SELECTOR, ".status").text if found else None


def _error(driver) -> str:
    return driver.find_element(By.ID, "action-error").text


def test_model_page_actions_run_the_cli_commands(studio, browser, trained, _steep_home) -> None:  # noqa: F811
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.1)
    browser.get(f"{studio}/models/t")
    link = browser.find_element(By.ID, "new-run-link").get_attribute("href")
    assert link == f"{studio}/runs/new?base={quote(str(trained.resolve()), safe='')}"
    hint = browser.find_element(By.ID, "eval-hint").text
    assert f"steep eval {trained.resolve()} --run-windows" in hint

    # evaluate: the comparison with the base replaces the hint when the job is done
    browser.find_element(By.ID, "evaluate").click()
    wait.until(lambda d: d.find_elements(By.ID, "eval-windows"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#eval-windows tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows[1:]] == ["domain", "general"]
    assert all(r.find_elements(By.TAG_NAME, "td")[3].text.endswith("%") for r in rows[1:])
    assert "domain sets" in browser.find_element(By.ID, "eval-headline").text

    # export: a new folder in the workspace; the same folder again is refused in one line
    _submit(browser, "export-form", dest="exports/t-hf")
    wait.until(lambda d: _job_status(d, "export") == "done")
    assert (_steep_home / "exports" / "t-hf" / "config.json").is_file()
    _submit(browser, "export-form", dest="exports/t-hf")
    wait.until(lambda d: "already exists" in _error(d))
    assert _error(browser) == (
        f"export destination {(_steep_home / 'exports' / 't-hf').resolve()} already exists: "
        "choose a new folder"
    )

    # push: offline, the CLI's own error line
    _submit(browser, "push-form", repo_id="me/t")
    wait.until(lambda d: "HF_HUB_OFFLINE" in _error(d))
    assert _error(browser).startswith("push: cannot push 't' to me/t: HF_HUB_OFFLINE is set")

    # generate: steep eval --prompts on the model alone, its sample shown
    _submit(browser, "generate-form", prompt="alpha beta", max_new_tokens="4", temperature="0.8")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#samples .sample"))
    assert browser.find_element(By.CSS_SELECTOR, "#samples .sample .hint").text == "alpha beta"
    assert _job_status(browser, "generate") == "done"
