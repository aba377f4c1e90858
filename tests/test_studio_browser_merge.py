"""The model page's merge (#33) in a real browser against a real ``steep studio``: the form
runs ``steep models merge`` as a job, its curve shows as a table and a plot, a bad alpha
is refused in the command's own line, and Save on a row registers that alpha's merge.

The studio, browser, workspace and trained-model fixtures are the model page's own
(tests/test_studio_browser_models.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_studio_browser import shot
from tests.test_studio_browser_models import (  # noqa: F401 - fixtures, used by name
    WAIT_S,
    _error,
    _job_status,
    _offline,
    _steep_home,
    browser,
    gates,
    pytestmark,
    studio,
    trained,
)

selenium = pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def _fill(driver, css: str, value: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, css)
    box.clear()
    box.send_keys(value)


def _curve(driver) -> list[list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#merge-table tr")
    return [[c.text for c in r.find_elements(By.CSS_SELECTOR, "td, th")] for r in rows]


def test_merge_curve_and_save_from_the_model_page(studio, browser, trained, _steep_home) -> None:  # noqa: F811
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.1)
    browser.get(f"{studio}/models/t")

    # an alpha outside [0, 1]: the command's own check, before any job starts
    _fill(browser, "#merge-form [name=alphas]", "0,2")
    browser.find_element(By.CSS_SELECTOR, "#merge-form button[type=submit]").click()
    wait.until(lambda d: _error(d))
    assert _error(browser).startswith("--alphas: 2 is outside [0, 1]")
    assert _job_status(browser, "merge") is None

    _fill(browser, "#merge-form [name=alphas]", "0,0.5,1")
    _fill(browser, "#merge-form [name=max_regression]", "1")
    browser.find_element(By.CSS_SELECTOR, "#merge-form button[type=submit]").click()
    wait.until(lambda d: len(_curve(d)) == 4)
    table = _curve(browser)
    assert [h.lower() for h in table[0][:3]] == ["alpha", "domain", "general"]
    assert [r[0].rstrip(" *") for r in table[1:]] == ["0", "0.5", "1"]
    assert table[1][3] == "+0.00%" and table[3][0] == "1 *"  # every alpha within 100%
    wait.until(
        lambda d: d.execute_script("return document.getElementById('merge-plot').naturalWidth") > 0
    )
    assert "the same vocabulary" in browser.find_element(By.ID, "merge-note").text

    # Save on the 0.5 row: the same command with that alpha and --save, registered in the hub
    _fill(browser, "#merge-save-name", "t-half")
    browser.find_element(By.CSS_SELECTOR, '#merge-table tr[data-alpha="0.5"] button').click()
    wait.until(lambda d: "saved as" in d.find_element(By.ID, "merge-note").text)
    lineage = json.loads((_steep_home / "models" / "t-half" / "steep.json").read_text())
    assert lineage["kind"] == "merge" and lineage["merge"]["alpha"] == 0.5
    assert Path(lineage["merge"]["parents"]["model"]) == trained.resolve()
    browser.get(f"{studio}/models/t-half")
    card = browser.find_element(By.ID, "model-card")
    assert "Linear weight merge: (1 - 0.5) x" in card.get_attribute("textContent")

    # the Compare page: the run's square and its model's merge curve on one trade-off plot,
    # each alpha a circle, the saved one (t-half) filled and named
    browser.get(f"{studio}/compare?runs=t")
    merge_dots = "#tradeoff-plot circle[data-kind=merge]"
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, merge_dots)) == 3)
    dots = {
        d.get_attribute("data-alpha"): d for d in browser.find_elements(By.CSS_SELECTOR, merge_dots)
    }
    assert sorted(dots) == ["0", "0.5", "1"]
    assert [a for a, d in dots.items() if d.get_attribute("data-saved")] == ["0.5"]
    assert dots["0.5"].get_attribute("data-saved") == "t-half"
    run = browser.find_element(By.CSS_SELECTOR, '#tradeoff-plot rect[data-kind=run][data-run="t"]')

    def at(node) -> tuple[float, float]:
        return float(node.get_attribute("data-x")), float(node.get_attribute("data-y"))

    # one sign convention and one baseline: alpha 0 is the base (0, 0), alpha 1 is the run
    assert at(dots["0"]) == (0.0, 0.0)
    assert at(dots["1"]) == pytest.approx(at(run), abs=0.05)  # percent points
    shot(browser, "compare-merge")
