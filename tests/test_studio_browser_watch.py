"""Watching and comparing runs in a real headless browser (#30 findings 8, 9, 12): the run
page's markers, smoothing, tokens axis, log y, CSV and TensorBoard command and its rendered
report; Compare overlaying two runs whose eval sets are named differently, with their
config differences; the Runs list's filters and its Delete set apart from Archive.

The run folders are written by hand (tests/test_studio_watch.py, test_studio_compare.py),
so no training runs here; tests/test_studio_browser.py trains a real one. Its ``studio``
and ``browser`` fixtures are used as they are."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.test_studio_browser import _steep_home, browser, gates, studio  # noqa: F401
from tests.test_studio_compare import write_named_run, write_run
from tests.test_studio_watch import write_run as write_watched

pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")

from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from tests.test_studio_browser import text_of  # noqa: E402

DATE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$")  # steep.artifacts.fmt.timestamp


def attr(driver, css: str, name: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).get_attribute(name) or ""


@pytest.fixture
def runs(_steep_home: Path) -> Path:  # noqa: F811
    write_watched(_steep_home)
    write_run(_steep_home / "runs" / "beta", 6, 0.3, drop=0.3, rise=0.04)
    write_named_run(_steep_home / "runs" / "demo", "vi-man", "en-debref", 0.2)
    return _steep_home


def test_run_page_charts_mark_events_and_change_their_view(studio, browser, runs) -> None:  # noqa: F811
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    browser.get(studio + "/runs/r/watched")
    wait.until(lambda d: attr(d, "#chart-loss", "data-points") == "4")
    marks = {
        m.get_attribute("data-kind"): m.text
        for m in browser.find_elements(By.CSS_SELECTOR, "#markers .mark")
    }
    assert marks == {
        "eval": "eval ×2",
        "checkpoint": "checkpoint ×2",
        "phase": "phase start ×1",
        "forgetting_budget": "forgetting budget ×1",
        "mixture_change": "mix change ×1",
    }
    ticks = attr(browser, "#chart-loss", "data-x-ticks").split()
    assert ticks and all(float(t).is_integer() for t in ticks)  # steps: never 2.5
    over = browser.find_element(By.CSS_SELECTOR, "#chart-loss .u-over")  # steps 1..4
    at_step_2 = round(over.size["width"] / 3 - over.size["width"] / 2)
    ActionChains(browser).move_to_element_with_offset(over, at_step_2, 0).perform()
    wait.until(lambda d: "phase start at step 2: anneal" in attr(d, "#chart-loss", "title"))
    assert "checkpoint at step 2" in attr(browser, "#chart-loss", "title")
    Select(browser.find_element(By.ID, "x-axis")).select_by_value("tokens")
    wait.until(lambda d: attr(d, "#chart-eval", "data-x") == "tokens")
    assert attr(browser, "#chart-loss", "data-x") == "tokens"
    browser.find_element(By.ID, "log-y").click()
    wait.until(lambda d: attr(d, "#chart-loss", "data-log-y") == "1")
    browser.execute_script(
        "const s = document.getElementById('smooth'); s.value = '0.6';"
        "s.dispatchEvent(new Event('input'))"
    )
    wait.until(lambda d: attr(d, "#chart-loss", "data-series") == "2")  # raw + smoothed
    assert attr(browser, "#csv", "href").endswith("/api/runs/watched/metrics.csv")
    tb = runs / "runs" / "watched" / "tensorboard"
    wait.until(lambda d: text_of(d, "#tensorboard-command") == f"tensorboard --logdir {tb}")

    browser.find_element(By.ID, "report-link").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#report h1"))
    assert text_of(browser, "#report h1") == "steep run watched"  # markdown, not raw text
    img = browser.find_element(By.CSS_SELECTOR, "#report img")
    wait.until(lambda d: d.execute_script("return arguments[0].naturalWidth", img) == 1)


def test_compare_overlays_by_role_and_lists_config_differences(studio, browser, runs) -> None:  # noqa: F811
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    browser.get(studio + "/compare?runs=beta,demo")
    domain = 'figure[data-role="domain"]'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, domain + " .u-legend"))
    legend = attr(browser, domain + " .u-legend", "textContent")
    assert "beta (domain)" in legend and "demo (vi-man)" in legend  # both on one chart
    assert "demo (en-debref)" in attr(
        browser, 'figure[data-role="general"] .u-legend', "textContent"
    )
    assert not browser.find_elements(By.CSS_SELECTOR, 'figure[data-set="vi-man"]')
    ticks = attr(browser, "#chart-train", "data-x-ticks").split()  # 6 steps: no 1.5
    assert ticks and all(float(t).is_integer() for t in ticks)
    row = text_of(browser, '#config-diff tr[data-key="train.lr_fraction"]')
    assert row.split() == ["train.lr_fraction", "0.3", "0.2"]
    assert browser.find_elements(By.CSS_SELECTOR, '#config-diff tr[data-key="train.steps"]')


def test_runs_list_filters_dates_and_a_delete_set_apart(studio, browser, runs) -> None:  # noqa: F811
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    browser.get(studio + "/runs")
    row = 'tr[data-run="beta"]'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row + " button.delete"))
    assert DATE.match(text_of(browser, row + " td.when"))
    width = browser.execute_script("return window.innerWidth")
    assert browser.find_element(By.ID, "f-name").size["width"] < width / 3
    assert browser.find_element(By.ID, "f-submit").text == "Filter"
    delete = browser.find_element(By.CSS_SELECTOR, row + " button.delete")
    archive = browser.find_element(By.CSS_SELECTOR, row + " button.archive")
    css = "return getComputedStyle(arguments[0])[arguments[1]]"
    for prop in ("color", "border-color"):
        assert browser.execute_script(css, delete, prop) != browser.execute_script(
            css, archive, prop
        ), prop
    gap = delete.location["x"] - (archive.location["x"] + archive.size["width"])
    assert gap >= 16  # not right against Archive
    delete.click()
    alert = browser.switch_to.alert
    assert "for good" in alert.text
    alert.dismiss()
    browser.find_element(By.ID, "f-name").send_keys("demo")
    browser.find_element(By.ID, "f-submit").click()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, row))
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-run="demo"]')  # still there
