"""The New run page in a real browser (#30, Training setup): schema fields, checks that show
they are running and never show an older revision's answer, preview command, save config,
and a new run started from a past run's config.

The page's requests are held in the browser (``window.fetch`` wrapped) and released by the
test in the order it chooses, so "a stale answer arrives last" is staged, not raced.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import WORDS_A, make_tiny_model, synthetic_docs
from tests.test_studio_browser import _steep_home, browser, gates, pytestmark, studio  # noqa: F401

selenium = pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

HOLD = """
window.__held = [];
const real = window.__realFetch = window.fetch;
window.fetch = (url, opts) => new Promise((ok, bad) => {
  window.__held.push({ go: () => real(url, opts).then((r) => { ok(r); return r; }, bad) });
});
"""
RELEASE = """
const done = arguments[arguments.length - 1];
window.__held[arguments[0]].go().then(() => setTimeout(done, 50));
"""


def _post(url: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "X-Steep-Request": "1"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def _dataset(url: str, name: str) -> None:
    up = _post(url, "/api/uploads", {})["id"]
    body = "".join(json.dumps({"text": t}) + "\n" for t in synthetic_docs(WORDS_A, 40, 1))
    req = urllib.request.Request(
        f"{url}/api/uploads/{up}/d.jsonl", data=body.encode(), method="PUT",
        headers={"X-Steep-Request": "1"},
    )  # fmt: skip
    urllib.request.urlopen(req, timeout=60).read()
    _post(url, "/api/datasets", {"name": name, "upload": up, "langid": False})


def _fill(driver, css: str, value: str) -> None:
    field = driver.find_element(By.CSS_SELECTOR, css)
    field.clear()
    field.send_keys(value)


def test_new_run_form_checks_previews_saves_and_clones(studio, browser, _steep_home: Path):  # noqa: F811
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    base = make_tiny_model(_steep_home / "models" / "tiny")
    _dataset(studio, "dom")
    browser.get(studio + "/runs/new")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sources .source"))
    for name, value in {"base": str(base), "base_max_lr": "0.01", "seq_len": "64",
                        "global_batch_tokens": "128", "steps": "6"}.items():  # fmt: skip
        _fill(browser, f"#run-form [name={name}]", value)
    checked = browser.find_element(By.ID, "checking")
    wait.until(
        lambda d: (
            not checked.is_displayed() and "steps: 6" in d.find_element(By.ID, "resolved").text
        )
    )

    # schema fields: a method dropdown, LoRA's rank, a tracker switch showing its fields
    for summary in browser.find_elements(By.CSS_SELECTOR, ".schema-section summary"):
        summary.click()
    Select(browser.find_element(By.CSS_SELECTOR, '[data-path="train.method"]')).select_by_value(
        "lora"
    )
    _fill(browser, '[data-path="train.lora.rank"]', "4")
    project = browser.find_element(By.CSS_SELECTOR, '[data-path="track.wandb.project"]')
    assert not project.is_displayed()
    browser.find_element(By.CSS_SELECTOR, '[data-path="track.wandb"]').click()
    assert project.is_displayed()
    project.send_keys("cpt")
    wait.until(lambda d: "project: cpt" in d.find_element(By.ID, "resolved").text)
    resolved = browser.find_element(By.ID, "resolved").text
    assert "method: lora" in resolved and "rank: 4" in resolved
    assert browser.find_element(By.ID, "estimate").text.startswith("time: unknown: no earlier run")

    # an eval set from the Data Hub, with its role
    browser.find_element(By.ID, "add-eval-set").click()
    wait.until(lambda d: "dom-2: general" in d.find_element(By.ID, "resolved").text)

    # checks held in the browser: "checking…" while out; the older answer, last, is dropped
    browser.execute_script(HOLD)
    _fill(browser, "#run-form [name=steps]", "7")
    wait.until(lambda d: d.execute_script("return window.__held.length") == 1)
    _fill(browser, "#run-form [name=steps]", "9")
    wait.until(lambda d: d.execute_script("return window.__held.length") == 2)
    assert checked.is_displayed()
    browser.execute_async_script(RELEASE, 1)
    assert "steps: 9" in browser.find_element(By.ID, "resolved").text
    assert not checked.is_displayed()
    browser.execute_async_script(RELEASE, 0)  # the answer for steps: 7 comes last
    assert "steps: 9" in browser.find_element(By.ID, "resolved").text
    assert browser.find_element(By.ID, "launch").is_enabled()
    browser.execute_script("window.fetch = window.__realFetch")

    # preview command, save config
    browser.find_element(By.ID, "preview-command").click()
    command = browser.find_element(By.ID, "command").text  # the studio's own steep, held here
    assert command.startswith("CUDA_VISIBLE_DEVICES='' python ") and command.endswith(
        " train run.yaml"
    )
    save = browser.find_element(By.ID, "save-config")
    assert save.get_attribute("download") == "run.yaml"
    href = save.get_attribute("href")
    assert href.startswith("data:application/yaml;charset=utf-8,")
    saved = urllib.parse.unquote(href.split(",", 1)[1])
    assert saved == browser.find_element(By.ID, "resolved").text + "\n"

    # a past run with this config: "new run from this run" fills the form with it
    run = _steep_home / "runs" / "past-1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(saved)
    browser.get(f"{studio}/runs/new?from=past-1")
    wait.until(lambda d: "steps: 9" in d.find_element(By.ID, "resolved").text)
    assert (
        Select(
            browser.find_element(By.CSS_SELECTOR, '[data-path="train.method"]')
        ).first_selected_option.get_attribute("value")
        == "lora"
    )
    assert (
        browser.find_element(By.CSS_SELECTOR, '[data-path="track.wandb.project"]').get_attribute(
            "value"
        )
        == "cpt"
    )
    rows = browser.find_elements(By.CSS_SELECTOR, "#sources .source [name=dataset]")
    assert [Select(r).first_selected_option.get_attribute("value") for r in rows] == ["dom@1"]
    evals = browser.find_elements(By.CSS_SELECTOR, "#eval-sets .eval-set [name=role]")
    assert [Select(r).first_selected_option.get_attribute("value") for r in evals] == ["general"]
    wait.until(lambda d: d.find_element(By.ID, "launch").is_enabled())
