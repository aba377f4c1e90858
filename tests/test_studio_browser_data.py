"""The Data Hub in a real headless browser (#30): from the datasets list to a dataset's
page, Prepare with a packaged recipe picked in the page, the new version's funnel shown
when the job is done, and an unused upload deleted from the list.

The studio, browser and workspace fixtures are tests/test_studio_browser.py's.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests import test_studio_browser as base
from tests.test_studio_data_pages import make_dataset

pytestmark = base.pytestmark  # its skip, where there is no chromium
_steep_home, browser, gates, studio = base._steep_home, base.browser, base.gates, base.studio
pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHANGE = {"X-Steep-Request": "1"}


def call(url: str, method: str = "GET", body: bytes | None = None) -> object:
    req = urllib.request.Request(url, data=body, method=method, headers=CHANGE)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def test_prepare_a_dataset_and_delete_an_unused_upload(studio, browser, _steep_home) -> None:
    texts = make_dataset(_steep_home)
    upload = call(studio + "/api/uploads", "POST")["id"]
    call(f"{studio}/api/uploads/{upload}/left.jsonl", "PUT", b'{"text": "left behind"}\n')
    wait = WebDriverWait(browser, 120, poll_frequency=0.2)

    browser.get(studio + "/datasets")
    browser.find_element(By.CSS_SELECTOR, "#datasets a.dataset-link").click()
    wait.until(lambda d: d.find_elements(By.ID, "prepare-form"))
    first = browser.find_element(By.ID, "notes@1").text
    assert texts[1][:40] in first  # the preview of its documents
    base.shot(browser, "dataset")

    Select(browser.find_element(By.ID, "prepare-recipe")).select_by_value("docs")
    browser.find_element(By.ID, "prepare-submit").click()
    # done: the page loads again with the new version first, its funnel and the job's row
    wait.until(lambda d: d.find_elements(By.ID, "notes@2"))
    made = browser.find_element(By.ID, "notes@2").text
    assert "with recipe docs from notes@1" in made and "gopher_repetition" in made
    job = browser.find_element(By.CSS_SELECTOR, "#prepare-jobs tr[data-job]").text
    assert "done" in job and "notes@2" in job
    base.shot(browser, "dataset-prepared")

    browser.get(studio + "/datasets")
    row = browser.find_element(By.CSS_SELECTOR, f'#uploads-table tr[data-upload="{upload}"]')
    assert "left.jsonl" in row.text
    row.find_element(By.CSS_SELECTOR, "button.delete-upload").click()
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, f'tr[data-upload="{upload}"]'))
    assert call(studio + "/api/uploads") == []
