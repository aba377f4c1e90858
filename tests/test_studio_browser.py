"""The studio end to end in a real headless browser (Debian's chromium via Selenium).

A real ``steep studio`` (uvicorn, its own process) on a free 127.0.0.1 port and a temp
workspace: upload two small datasets, fill the New run form (seeing a validation error
first), launch a tiny run, watch its loss chart gain points while it trains, and find
the finished model on the Models page.

``make browser-deps`` installs chromium and chromium-driver (``make test`` runs it). With
STEEP_SCREENSHOTS=DIR the test also saves a screenshot of each page there (the README's
docs/img/studio-*.png are made this way).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests import held_steep
from tests.conftest import WORDS_A, WORDS_B, make_tiny_model, synthetic_docs, write_jsonl

pytest.importorskip("fastapi", reason="studio extra not installed: pip install -e '.[studio]'")
selenium = pytest.importorskip("selenium", reason="selenium not installed: pip install -e '.[dev]'")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="no chromium + chromedriver on this machine: run `make browser-deps` "
    "(apt-get install chromium chromium-driver)",
)
SHOTS = os.environ.get("STEEP_SCREENSHOTS")


@pytest.fixture(autouse=True)
def _steep_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workspace. For the docs' screenshots, STEEP_SCREENSHOT_HOME puts it at a path
    that reads like a user's (/home/ana/steep-home) instead of pytest's temporary one."""
    chosen = os.environ.get("STEEP_SCREENSHOT_HOME")
    home = Path(chosen) if chosen else tmp_path / "steep-home"
    if chosen and home.exists():
        shutil.rmtree(home)
    monkeypatch.setenv("STEEP_HOME", str(home))
    return home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gates(tmp_path: Path) -> Path:
    """Where the test holds the studio's runs at chosen steps (tests/held_steep.py)."""
    return tmp_path / "gates"


@pytest.fixture
def studio(tmp_path: Path, _steep_home: Path, gates: Path):
    port = free_port()
    env = {**os.environ, "STEEP_HOME": str(_steep_home), "TQDM_MININTERVAL": "1"}
    env[held_steep.ENV] = str(gates)  # its jobs' steep train runs can be held
    log = open(tmp_path / "studio.log", "wb")
    proc = subprocess.Popen(
        held_steep.argv("studio", "--port", str(port)),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                log.close()
                pytest.fail("studio did not start:\n" + (tmp_path / "studio.log").read_text())
            time.sleep(0.2)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    log.close()
    from steep.studio.jobs import JobQueue

    for job in JobQueue(_steep_home).jobs(("starting", "running")):  # jobs outlive a studio
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.killpg(job.pid, signal.SIGKILL)


@pytest.fixture
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    opts.add_argument("--window-size=1400,1000")
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def shot(driver, name: str, height: int | None = None) -> None:
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    driver.execute_script("window.scrollTo(0, 0)")
    full = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(max(height or full + 40, 700), 2200))
    time.sleep(0.3)
    driver.save_screenshot(str(Path(SHOTS) / f"studio-{name}.png"))
    driver.set_window_size(1400, 1000)


def fill(driver, name: str, value: str) -> None:
    field = driver.find_element(By.CSS_SELECTOR, f"#run-form [name={name}]")
    field.clear()
    field.send_keys(value)


def text_of(driver, css: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, css).text


def api(studio: str, method: str, path: str, body: dict) -> dict:
    """A change as the pages make it (the X-Steep-Request header)."""
    req = urllib.request.Request(
        studio + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Content-Type": "application/json", "X-Steep-Request": "1"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def test_upload_launch_watch_and_find_the_model(studio, browser, tmp_path, _steep_home, gates):
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    base = make_tiny_model(_steep_home / "models" / "tiny-base")  # studio jobs read the workspace
    files = {
        "domain": write_jsonl(tmp_path / "up" / "code.jsonl", synthetic_docs(WORDS_A, 120, 1)),
        "general": write_jsonl(tmp_path / "up" / "wiki.jsonl", synthetic_docs(WORDS_B, 120, 2)),
    }

    # 1. Data Hub: upload two files, each becomes a dataset
    browser.get(studio + "/datasets")
    for name, path in files.items():
        browser.find_element(By.ID, "ds-name").send_keys(name)
        browser.find_element(By.ID, "ds-files").send_keys(str(path))
        browser.find_element(By.ID, "ds-submit").click()
        wait.until(lambda d, n=name: d.find_elements(By.CSS_SELECTOR, f'tr[data-ref="{n}@1"]'))
    assert "120" in text_of(browser, 'tr[data-ref="domain@1"]')
    shot(browser, "datahub")

    # 2. New run: a validation error first, then a valid config and launch
    browser.get(studio + "/runs/new")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#sources .source"))
    browser.find_element(By.ID, "add-source").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#sources .source")
    Select(rows[0].find_element(By.NAME, "dataset")).select_by_value("domain@1")
    Select(rows[0].find_element(By.NAME, "role")).select_by_value("domain")
    Select(rows[1].find_element(By.NAME, "dataset")).select_by_value("general@1")
    Select(rows[1].find_element(By.NAME, "role")).select_by_value("general")
    for key, value in {
        "name": "tiny",
        "base": str(base),
        "base_max_lr": "0.01",
        "domain_share": "0.5",
        "seq_len": "64",
        "lr_fraction": "0.3",
        "global_batch_tokens": "256",
        "micro_batch_size": "2",
        "eval_every": "40",
        "steps": "0",
    }.items():
        fill(browser, key, value)
    wait.until(lambda d: "train.steps" in text_of(d, "#errors"))
    assert not browser.find_element(By.ID, "launch").is_enabled()
    shot(browser, "new-run-errors", height=760)
    fill(browser, "steps", "120")  # held at steps 20 and 60 below: time to watch it grow
    wait.until(lambda d: d.find_element(By.ID, "launch").is_enabled())
    assert text_of(browser, "#errors") == ""
    resolved = text_of(browser, "#resolved")
    assert "domain_share: 0.5" in resolved and "dataset: general@1" in resolved
    assert "max LR 3.00e-3" in text_of(browser, "#summary")
    shot(browser, "new-run")
    for step in (20, 60):  # the run waits at each until the test has seen it there
        held_steep.hold(gates, step)
    browser.find_element(By.ID, "launch").click()
    wait.until(lambda d: "/runs/1" in d.current_url)

    # 3. Runs: the loss chart gains points while the job is running
    run_wait = WebDriverWait(browser, 180, poll_frequency=0.2)

    def points() -> int:
        return int(browser.find_element(By.ID, "chart-loss").get_attribute("data-points"))

    run_wait.until(lambda d: held_steep.is_held(gates, 20) or text_of(d, "#status") == "failed")
    run_wait.until(lambda d: points() > 0 or text_of(d, "#status") == "failed")
    assert text_of(browser, "#status") != "failed", text_of(browser, "#log")
    first = points()  # at most 20: the job waits at step 20, then at 60
    held_steep.release(gates, 20)
    run_wait.until(lambda d: points() > first)
    assert text_of(browser, "#status") == "running"  # it grew while the job trained
    held_steep.release(gates, 60)
    run_wait.until(lambda d: text_of(d, "#status") in ("done", "failed"))
    log = text_of(browser, "#log")
    assert text_of(browser, "#status") == "done", log
    run_wait.until(lambda d: points() == 120)
    assert int(browser.find_element(By.ID, "chart-eval").get_attribute("data-points")) == 4
    domain_change = text_of(browser, '#eval-table tr[data-set="domain"] td:last-child')
    assert domain_change.startswith("-")  # it learnt the domain (change vs step 0)
    run_wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model-link a"))
    shot(browser, "run")
    browser.get(studio + "/runs")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-job="1"][data-status="done"]'))
    shot(browser, "runs")

    # 4. Models: the finished model, its lineage and a download link
    browser.get(studio + "/models")
    row = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-model^="tiny-"]'))[0]
    shot(browser, "models")
    row.find_element(By.CSS_SELECTOR, "td a").click()
    wait.until(lambda d: d.find_elements(By.ID, "download"))
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "domain@" in page and "general@" in page and "model.base_max_lr" in page
    href = browser.find_element(By.ID, "download").get_attribute("href")
    with urllib.request.urlopen(href, timeout=30) as resp:
        assert resp.headers["Content-Type"] == "application/zip"
        assert resp.read(2) == b"PK"
    shot(browser, "model")

    # 5. Cancel a longer run once it has a checkpoint, then resume it from the Runs list
    form = {
        "name": "long", "base": str(base), "base_max_lr": 0.01, "domain_share": 0.5,
        "seq_len": 64, "lr_fraction": 0.3, "global_batch_tokens": 256, "micro_batch_size": 2,
        "eval_every": 20, "steps": 160, "extra_yaml": "checkpoint: {every_steps: 20}\n",
        "sources": [{"dataset": "domain@1", "role": "domain"},
                    {"dataset": "general@1", "role": "general"}],
    }  # fmt: skip
    held_steep.hold(gates, 40)  # it waits there for its cancel, and so does its resume
    job = api(studio, "POST", "/api/jobs", form)["job"]["id"]
    browser.get(f"{studio}/runs/{job}")
    run_wait.until(lambda d: points() > 25)  # past its first checkpoint
    assert "step " in text_of(browser, "#progress") and "of 160" in text_of(browser, "#progress")
    browser.find_element(By.ID, "cancel").click()
    browser.switch_to.alert.accept()
    run_wait.until(lambda d: text_of(d, "#status") == "cancelled")
    browser.get(studio + "/runs")
    resume = f'tr[data-job="{job}"] button.resume'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, resume))
    shot(browser, "runs-cancelled")
    browser.find_element(By.CSS_SELECTOR, resume).click()
    browser.switch_to.alert.accept()
    again = job + 1
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f'tr[data-job="{again}"]'))
    assert "(resumed)" in text_of(browser, f'tr[data-job="{again}"]')
    browser.get(f"{studio}/runs/{again}")
    run_wait.until(lambda d: "resumed from step_" in text_of(d, "#log"))
    browser.find_element(By.ID, "cancel").click()  # no need to train it to the end here
    browser.switch_to.alert.accept()
    run_wait.until(lambda d: text_of(d, "#status") == "cancelled")

    # 6. The phase line of a run that has not reached its first step
    waiting = _steep_home / "runs" / "tokenizing-run"
    waiting.mkdir(parents=True)
    (waiting / "config.yaml").write_text("run: {name: tokenizing-run}\n")
    now = time.time()
    phase = {"what": "tokenizing domain", "done": 41, "total": 100_000_000, "started": now - 41,
             "time": now}  # fmt: skip
    (waiting / "status.json").write_text(json.dumps({
        "state": "running", "pid": os.getpid(), "host": socket.gethostname(), "error": None,
        "time": now, "phase": phase}))  # fmt: skip
    browser.get(studio + "/runs/r/tokenizing-run")
    wait.until(lambda d: text_of(d, "#phase").startswith("tokenizing domain: 0% of 100.0 MB"))
    assert "ETA" in text_of(browser, "#phase")
