"""The console in a real browser: Selenium drives Debian's headless chromium against a real `goldmine serve` (with
its local job worker) through the whole of a tenant's day: sign in (keyboard only), upload a dataset, start a job,
watch it finish, promote the candidate, try it in the playground, read usage and the invoice, then check that
another tenant's key sees none of it.

Needs `apt-get install chromium chromium-driver` (skipped without them, failed with GOLDMINE_REQUIRE_SERVICES=1).
Screenshots of every step are kept in `$GOLDMINE_CONSOLE_SCREENSHOTS`, default `tests-artifacts/console/` at the
repository root (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from goldmine.serving.auth import create_key

from .conftest import serving_fixtures

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1366,900"]
JOB_SECONDS = 600  # a shared 2-core machine: the worker's imports alone may take a minute
SCREENSHOTS = Path(os.environ.get("GOLDMINE_CONSOLE_SCREENSHOTS")
                   or Path(__file__).resolve().parents[2] / "tests-artifacts" / "console")


@pytest.fixture
def chrome(tmp_path, monkeypatch):
    """A headless chromium driven by chromedriver, with a fresh profile; nothing is downloaded."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        serving_fixtures.missing("chromium chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        serving_fixtures.missing("selenium (pip install -e '.[dev]')")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not look for drivers or browsers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="goldmine-chromium-")
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")),
                              options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def intents_file(tmp_path_factory, demo_files) -> Path:
    """The first 300 demo intents (as tests/serving/test_jobs.py), and a text with markup in it, twice (so the
    quality report shows it as a duplicate)."""
    lines = demo_files.intents.read_text().splitlines()[:301]
    path = tmp_path_factory.mktemp("console-data") / "intents.csv"
    path.write_text("\n".join([*lines, *['"<b>bold</b> where is my parcel?",track_order'] * 2]) + "\n")
    return path


class Steps:
    """The browser, a base URL and numbered screenshots."""

    def __init__(self, driver, url: str):
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.url, self.count = driver, url, 0
        # the live job view replaces its elements every second: a look-up may meet one that was just replaced
        self.wait = lambda seconds=60: WebDriverWait(driver, seconds, poll_frequency=0.25, ignored_exceptions=(
            NoSuchElementException, StaleElementReferenceException))
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(f"{self.url}/console{path}")

    def shot(self, name: str) -> None:
        """The whole page (the window grown to its height for the shot, then back to a laptop's 1366x900)."""
        self.count += 1
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1366, min(max(height + 100, 900), 4000))
        self.driver.save_screenshot(str(SCREENSHOTS / f"{self.count:02d}-{name}.png"))
        self.driver.set_window_size(1366, 900)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def sign_in(self, key: str) -> None:
        """Keyboard only: Tab reaches the skip link first, the key field takes the key, Enter submits."""
        from selenium.webdriver.common.keys import Keys

        self.open("/login")
        body = self.find("body")
        body.send_keys(Keys.TAB)
        assert self.driver.switch_to.active_element.text == "Skip to content"
        field = self.find("#key")
        assert self.find("label[for=key]").text == "API key"
        field.send_keys(key, Keys.ENTER)
        self.wait().until(lambda d: d.current_url.rstrip("/").endswith("/console"))


def test_a_tenant_trains_promotes_and_is_billed_and_another_tenant_sees_none_of_it(
        chrome, settings, db, start_server, intents_file, tmp_path):
    from selenium.webdriver.support.ui import Select

    acme = create_key(db, "acme", "predict,train,admin").key  # promoting needs the admin scope, as the API's route
    globex = create_key(db, "globex", "predict,train").key
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    server = start_server(settings, GOLDMINE_CONFIG=str(config), GOLDMINE_JOBS__LOCAL_WORKER="true")
    ui = Steps(chrome, server.url)

    ui.sign_in(acme)
    assert ui.text("#tenant") == "acme"
    ui.shot("overview")

    # upload: the file input, then the page of the stored dataset with its quality report
    ui.open("/datasets")
    ui.find("#upload-file").send_keys(str(intents_file))
    ui.find("#upload").click()
    ui.wait().until(lambda d: "/console/datasets/" in d.current_url)
    assert ui.text("#dataset-name") == "intents.csv"
    dataset_url = chrome.current_url
    assert "<b>bold</b>" in chrome.page_source.replace("&lt;", "<").replace("&gt;", ">")
    assert not chrome.find_elements("css selector", "main b")  # shown as text, not as markup
    ui.shot("dataset-report")

    # start a job and watch it: the live part re-renders until the job has ended
    ui.open("/jobs")
    ui.find("#job-model").send_keys("intents-ft")
    Select(ui.find("#job-train")).select_by_index(0)
    ui.find("#job-steps").send_keys("6")
    ui.find("#job-config").send_keys('{"training": {"batch_size": 8, "linear_probe": false, '
                                     '"eval_strategy": "steps", "eval_steps": 3, "logging_steps": 1}}')
    ui.shot("start-job")
    ui.find("#start-job").click()
    ui.wait().until(lambda d: "/console/jobs/job_" in d.current_url)
    job_url = chrome.current_url
    ui.shot("job-started")
    ui.wait(JOB_SECONDS).until(lambda d: ui.text("#job-status") in ("succeeded", "failed", "cancelled"))
    assert ui.text("#job-status") == "succeeded", ui.text("pre.log")
    assert "candidate" in ui.text("#job-result") and chrome.find_elements("css selector", "svg.chart")
    ui.shot("job-finished")

    # the candidate on the model page, promoted to production
    ui.find("#job-model-link").click()
    ui.wait().until(lambda d: "/console/models/intents-ft" in d.current_url)
    model_url = chrome.current_url
    assert "gate has not measured this version" in ui.text("main") and "fine-tuned" in ui.text("table.before-after")
    ui.shot("model-candidate")
    ui.find("button.promote").click()
    ui.wait().until(lambda d: d.find_elements("css selector", "#message"))
    assert "production of intents-ft now points at" in ui.text("#message")
    assert ui.text("code.alias-production") == ui.text("code.alias-candidate")
    ui.shot("model-promoted")

    # one metered call from the playground
    ui.open("/playground")
    Select(ui.find("#pg-model")).select_by_value("intents-ft")
    ui.find("#pg-texts").send_keys("where is my parcel?\nI want my money back")
    ui.find("#run").click()
    ui.wait(120).until(lambda d: d.find_elements("css selector", "#predictions"))
    ui.shot("playground")

    # usage (a chart by day and model) and the invoice: the call's line and the job's CPU line
    ui.open("/usage")
    assert ui.text("#usage-totals").startswith("1 calls, 2 texts")
    assert chrome.find_elements("css selector", "svg.chart")
    invoice = ui.text("#invoice")
    assert "intents-ft" in invoice and "(fine-tuning jobs)" in invoice and ui.text("#invoice-total")
    ui.shot("usage-invoice")
    ui.open("/monitoring")
    assert "intents-ft" in ui.text("main")
    ui.shot("monitoring")
    ui.open("/keys")
    ui.shot("keys")

    # sign out: the pages ask for a key again
    ui.find("#logout").click()
    ui.wait().until(lambda d: d.current_url.endswith("/console/login"))
    ui.open("/models")
    assert chrome.current_url.endswith("/console/login")

    # another tenant sees none of it: its lists are empty, the ids read as not found
    ui.sign_in(globex)
    for page in ("/datasets", "/jobs", "/models", "/usage"):
        ui.open(page)
        text = ui.text("main")
        assert "intents-ft" not in text and "intents.csv" not in text, page
    ui.shot("other-tenant-lists")
    for url in (dataset_url, job_url, model_url):
        chrome.get(url)
        assert ui.text("h1") == "Something went wrong" and "no " in ui.text("#error"), url
    ui.shot("other-tenant-404")
