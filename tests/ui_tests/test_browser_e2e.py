"""End to end in a real browser: `streamlit run app.py` on localhost driven by headless Chromium.

Choose the built-in digits, start a tiny search (3 trials, 1-2 epochs) from the Search page,
wait for it to finish in the worker process, see the Pareto plot and the ε curves, download
the YAML and validate it, reload the page and restart the app and see the same trials.

Needs Debian's `chromium` (/usr/bin/chromium; `.ci/run` installs it) and the playwright
Python package (no downloaded browser). Run with `pytest -m browser tests/test_browser_e2e.py`.
Set DPTUNE_SCREENSHOT_DIR to keep the screenshots (the README's come from here).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1360, "height": 1000}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class App:
    """`streamlit run app.py` in the repository (its .streamlit/config.toml applies)."""

    def __init__(self, workspace: Path, port: int, log: Path):
        self.workspace, self.port, self.log = workspace, port, log
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> None:
        env = dict(os.environ, DPTUNE_WORKSPACE=str(self.workspace), TF_CPP_MIN_LOG_LEVEL="2")
        env.pop("DPTUNE_STORAGE", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(self.port),
             "--server.headless", "true"],
            cwd=ROOT, env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"streamlit did not start; log:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self.process = None


@pytest.fixture
def app(tmp_path):
    app = App(tmp_path / "dptune-data", _free_port(), tmp_path / "streamlit.log")
    app.start()
    yield app
    app.stop()
    from dptune.ui.workers import stop_workers
    from dptune.ui.workspace import Workspace

    workspace = Workspace.from_env(app.workspace)
    for folder in workspace.workers_dir.glob("*"):
        stop_workers(workspace, folder.name, grace_seconds=2)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def _shoot(page, name: str, directory: Path, settle_ms: int = 800) -> None:
    """A small PNG of the page (palette-quantized, so each stays well under 300 KB)."""
    from PIL import Image

    page.mouse.move(2, 2)  # no tooltip in the picture
    page.wait_for_timeout(settle_ms)
    raw = directory / f"{name}.raw.png"
    page.screenshot(path=str(raw))
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
            directory / f"{name}.png", optimize=True)
    raw.unlink()


def _goto(page, app: App, title: str) -> None:
    page.get_by_role("link", name=title, exact=True).first.click()
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=60_000)


def _no_exception(page) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']").first.inner_text()


def _idle(page) -> None:
    """Wait until the app is not running a script (Streamlit's "Running..." status is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !Array.from(document.querySelectorAll('[data-testid=\"stStatusWidget\"]'))"
        ".some(e => /Running/i.test(e.innerText))", timeout=60_000)


def _set_number(page, label: str, value) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    _idle(page)
    assert float(field.input_value()) == float(value), (label, field.input_value())


def test_digits_search_end_to_end(app, browser, tmp_path):
    pages = [browser.new_page(viewport=VIEWPORT, accept_downloads=True)]
    try:
        _end_to_end(app, browser, pages, tmp_path)
    except Exception:
        if not pages[-1].is_closed():
            pages[-1].screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"failure screenshot: {tmp_path / 'failure.png'}; app log: {app.log}")
        raise


def _end_to_end(app, browser, pages, tmp_path):
    page = pages[0]
    started = time.time()
    shots = Path(os.environ.get("DPTUNE_SCREENSHOT_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    page.set_default_timeout(60_000)

    # Start page: opens on the built-in digits
    page.goto(app.url)
    page.wait_for_selector("h1:has-text('dptune')")
    page.locator("[data-testid='stMetricValue']", has_text="digits").first.wait_for()
    page.locator("[data-testid='stSidebar']").get_by_text("ε calculator").wait_for()
    page.locator("[data-testid='stSidebar'] [data-testid='stMetricValue']").first.wait_for()
    _shoot(page, "start", shots)

    # Data: the built-in digits (1,423 training examples), preview and class balance
    _goto(page, app, "Data")
    page.wait_for_selector("text=Current dataset: digits")
    page.locator("[data-testid='stMetricValue']", has_text="1,423").first.wait_for()
    page.wait_for_selector(".js-plotly-plot")
    _no_exception(page)
    _shoot(page, "data", shots)

    # Model: the suggested MLP and its parameter count
    _goto(page, app, "Model")
    page.locator("[data-testid='stMetricValue']", has_text="4,810").first.wait_for()
    _no_exception(page)
    _shoot(page, "model", shots)

    # Clip norm: release the private histogram (C at the 75% quantile)
    _goto(page, app, "Clip norm")
    page.get_by_role("button", name="Release the noisy histogram").click()
    page.wait_for_selector("text=chosen C", timeout=120_000)
    page.wait_for_selector(".js-plotly-plot")
    _no_exception(page)
    _shoot(page, "clip_norm", shots)
    # this search uses a C range that does not depend on that release (keeps the test's ε simple)
    page.get_by_text("Type C yourself (no data used)").click()
    page.wait_for_selector("text=C (L2 clip norm)")

    # Search: a tiny budgeted search, 3 trials of 1-2 epochs, per-example clipping
    _goto(page, app, "Search")
    _set_number(page, "trials", 3)
    _set_number(page, "epochs to", 2)
    _set_number(page, "batch size B from", 64)
    _set_number(page, "batch size B to", 64)
    _set_number(page, "learning rate from", 0.5)
    _idle(page)
    page.get_by_role("button", name="Start search").click()
    page.wait_for_selector("text=/\\d of 3 trials done/", timeout=120_000)
    try:  # a trial running (they are short: the screenshot may still catch the study done)
        page.wait_for_selector("text=/[1-9] running/", timeout=30_000)
    except Exception:  # noqa: BLE001 - only the screenshot depends on it
        pass
    page.locator("[data-testid='stProgress']").first.scroll_into_view_if_needed()
    _shoot(page, "search_live", shots, settle_ms=300)
    page.wait_for_selector("text=3 of 3 trials done", timeout=300_000)
    page.wait_for_selector("text=0 worker processes started here alive", timeout=60_000)
    page.locator("[data-testid='stDataFrame']").first.wait_for()
    _no_exception(page)
    page.locator("[data-testid='stProgress']").first.scroll_into_view_if_needed()
    _shoot(page, "search", shots)

    # Trade-offs: a budgeted study spends the same ε in every trial, so its main plot is accuracy
    # against training time (issue 10 item 14); then the ε curves
    _goto(page, app, "Trade-offs")
    page.wait_for_selector("text=Validation accuracy against training time")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=60_000)
    traces = page.evaluate(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(p => (p.data || []).map(t => t.name))")
    assert any("trials" in names and "most accurate for the time" in names for names in traces), traces
    epsilon_plot = [names for names in traces if any(n and n.endswith("accountant, planned run") for n in names)]
    assert epsilon_plot and sum(1 for n in epsilon_plot[0] if n and n.startswith("trial ") and "(" in n) == 3
    _no_exception(page)
    _shoot(page, "tradeoffs", shots)

    # Export: default is the best trial within ε; download and validate the YAML
    _goto(page, app, "Export")
    page.wait_for_selector("text=Validated")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download YAML").click()
    download = download_info.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    from dptune.spec.run import load_run_config

    run = load_run_config(target)
    values = yaml.safe_load(target.read_text())
    assert values["dataset"]["name"] == "digits" and values["search"]["target_epsilon"] == 3.0
    assert run.epsilon is not None and run.epsilon <= 3.0 * (1 + 1e-9)
    assert run.training.batch_size == 64 and run.training.epochs <= 2
    charged = run.training.noise_multiplier / (2 if run.training.num_microbatches < 64 else 1)
    assert values["accountant"]["charged_noise_multiplier"] == pytest.approx(charged)
    command = page.locator("[data-testid='stCode']", has_text="dptune train --config").first.inner_text()
    assert command.strip() == f"dptune train --config {download.suggested_filename}"
    _no_exception(page)
    _shoot(page, "export", shots)

    # Reload the page: the same study and trials
    _goto(page, app, "Search")
    page.reload()
    page.wait_for_selector("text=3 of 3 trials done")
    # Close the tab, restart the app: still the same trials
    page.close()
    app.stop()
    app.start()
    page = browser.new_page(viewport=VIEWPORT)
    pages.append(page)
    page.set_default_timeout(60_000)
    import optuna

    storage = f"sqlite:///{app.workspace / 'studies.db'}"
    (name,) = optuna.get_all_study_names(storage)
    complete = sum(t.state.name == "COMPLETE" for t in optuna.load_study(study_name=name, storage=storage).trials)
    assert complete >= 1  # (the median pruner may stop a trial early: done, but not complete)
    page.goto(f"{app.url}/tradeoffs")
    page.wait_for_selector(f"text={complete} finished trial(s) of 3")
    page.goto(f"{app.url}/search")
    page.wait_for_selector("text=3 of 3 trials done")
    _no_exception(page)
    print(f"browser end-to-end test took {time.time() - started:.1f} s")


def test_a_messy_real_world_csv_in_the_browser(app, browser, tmp_path):
    """Issue 10: a real-world-shaped upload (semicolons with decimal commas, a repeated column
    name, a free-text and an ID column, a column recorded after the outcome, a sensitive
    attribute) is read, every problem is listed at once and fixed on the page, and the numbers
    shown are the prepared dataset's."""
    from data_files import messy_csv

    upload = tmp_path / "loans.csv"
    upload.write_bytes(messy_csv())
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(60_000)
    try:
        page.goto(f"{app.url}/data")
        page.wait_for_selector("h1:has-text('Data')")
        page.get_by_text("Upload a file", exact=True).click()
        _idle(page)
        page.locator("input[type='file']").set_input_files(str(upload))
        page.wait_for_selector("text=semicolon")  # the separator that was detected, said on the page
        page.wait_for_selector("text=has 2 problems")  # the repeated `score` and the free-text `name`, at once
        warning = page.locator("[data-testid='stAlert']", has_text="decision_code").first
        warning.wait_for()
        assert "'id'" in warning.inner_text() or "`id`" in warning.inner_text() or " id" in warning.inner_text()
        page.get_by_role("button", name="Drop these columns").click()
        _idle(page)
        page.wait_for_selector("text=Ignored on this page's advice")
        page.locator("[data-testid='stMetricValue']", has_text="244").first.wait_for()  # N after the split
        _no_exception(page)
        if os.environ.get("DPTUNE_SCREENSHOT_DIR"):
            _shoot(page, "data_upload", Path(os.environ["DPTUNE_SCREENSHOT_DIR"]))
    except Exception:
        page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
        print(f"failure screenshot: {tmp_path / 'failure.png'}; app log: {app.log}")
        raise
