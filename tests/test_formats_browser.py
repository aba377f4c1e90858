"""The studio's upload form with the new formats, in a real headless browser (#31): a CSV
of records through the Template field and an HTML manual each become a dataset, and the
dataset page shows what each format gave. The fixtures are tests/test_studio_browser.py's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_studio_browser as base
from tests.test_formats import POLICY, _listings, _need

pytestmark = base.pytestmark  # its skip, where there is no chromium
_steep_home, browser, gates, studio = base._steep_home, base.browser, base.gates, base.studio
pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def test_upload_a_csv_through_a_template_and_an_html_page(studio, browser, tmp_path: Path) -> None:
    _need(POLICY)
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    page = tmp_path / "up" / POLICY.name
    page.parent.mkdir()
    page.write_bytes(POLICY.read_bytes())
    browser.get(studio + "/datasets")
    uploads = [
        ("msft", _listings(tmp_path), r"{Date}: closed at {Close}"),
        ("manual", page, ""),
    ]
    for name, path, template in uploads:
        browser.find_element(By.ID, "ds-name").send_keys(name)
        browser.find_element(By.ID, "ds-files").send_keys(str(path))
        field = browser.find_element(By.ID, "ds-template")
        field.clear()
        field.send_keys(template)
        browser.find_element(By.ID, "ds-submit").click()
        wait.until(lambda d, n=name: d.find_elements(By.CSS_SELECTOR, f'tr[data-ref="{n}@1"]'))
    browser.get(studio + "/datasets/msft")
    formats = browser.find_element(By.CSS_SELECTOR, "table.formats").text
    assert "csv" in formats and "ragged row 1" in formats
    assert "19-Sep-03: closed at 29.96" in browser.find_element(By.TAG_NAME, "main").text
    browser.get(studio + "/datasets/manual")
    assert "html" in browser.find_element(By.CSS_SELECTOR, "table.formats").text
    source = browser.find_element(By.CSS_SELECTOR, ".doc-source").text  # the upload's file
    assert f"/{POLICY.name} · " in source  # and the page's title after it
