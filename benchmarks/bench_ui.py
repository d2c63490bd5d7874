"""How long each dashboard page takes to render with 500 finished trials in the study.

    python benchmarks/bench_ui.py [--trials 500] [--epochs 10] [--repeats 3] [--browser]

A throw-away workspace gets a study in dptune's format (docs/INTERFACES.md) with
`--trials` complete trials of `--epochs` epochs each (plus 2 running, 3 failed, 3 pruned),
then every page is rendered with Streamlit's AppTest (the script run on the server, which
is what a rerun costs):

- "study read": the first render after the study changed (its trials are read from the
  SQLite storage, the frame and the figures built; what a user sees when a trial finishes);
- "warm": the median of `--repeats` renders with nothing changed (what clicking around costs).

The Model and Clip norm pages build a Keras model: the first of them in a process also
imports TensorFlow (a one-time cost of the server process, printed separately).
With --browser (needs /usr/bin/chromium), the time until each page's content is drawn in
headless Chromium against `streamlit run app.py` is measured too.
Printed, not asserted: the target is every page under 2 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # synthetic_studies: studies in the documented format

from dptune.workspace import Workspace  # noqa: E402  (the layout only: no TensorFlow, Optuna or Streamlit)

PAGES = ["home", "data", "model", "clip_norm", "search", "tradeoffs", "export"]
BUDGET_SECONDS = 2.0


def build_workspace(root: Path, trials: int, epochs: int) -> str:
    import optuna
    from synthetic_studies import make_study

    from dptune.data import builtin_dataset
    from dptune.ui.workspace import Workspace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workspace = Workspace.from_env(root)
    dataset = builtin_dataset("digits")
    dataset.save(workspace.root)
    started = time.perf_counter()
    make_study(workspace.storage_url, "bench", trials, running=2, failed=3, pruned=3, epochs=epochs,
               n_train=dataset.n_train, fingerprint=dataset.fingerprint, workspace=str(workspace.root))
    workspace.save_state({"study": "bench", "clip": {"method": "manual", "l2_norm_clip": 1.0}})
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; workspace {workspace.root}: study 'bench' with {trials} complete trials of {epochs} epochs "
          f"(+2 running, 3 failed, 3 pruned) written in {time.perf_counter() - started:.1f} s")
    return workspace.storage_url


def render(at, page: str) -> float:
    started = time.perf_counter()
    if page == "home":
        at.switch_page("app.py")
    else:
        at.switch_page(f"pages/{page}.py")
    at.run()
    elapsed = time.perf_counter() - started
    if at.exception:
        raise RuntimeError(f"page {page} raised: {at.exception[0].value}")
    return elapsed


def bench_apptest(root: Path, repeats: int) -> dict[str, tuple[float, float]]:
    from ui_testing import app_test

    from dptune.ui import core

    imported = "tensorflow" in sys.modules
    at = app_test(root, timeout=300).run()
    started = time.perf_counter()
    render(at, "model")  # imports TensorFlow once
    print(f"first render of a page that builds a Keras model"
          f"{'' if imported else ' (imports TensorFlow)'}: {time.perf_counter() - started:.2f} s (once per process)")
    results = {}
    for page in PAGES:
        # as after a restart or a change of the study: every trial is read from SQLite again
        core._snapshot.clear()
        core._study.clear()
        core._importances.clear()
        cold = render(at, page)
        warm = statistics.median(render(at, page) for _ in range(repeats))
        results[page] = (cold, warm)
    return results


def bench_browser(root: Path) -> dict[str, float]:
    import signal
    import socket
    import subprocess
    import urllib.request

    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, DPTUNE_WORKSPACE=str(root), TF_CPP_MIN_LOG_LEVEL="2")
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                               "--server.headless", "true"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://localhost:{port}"
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.3)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]
        timings = {}
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=args)
            page = browser.new_page(viewport={"width": 1360, "height": 1000})
            for name in ["home", *PAGES[1:]] * 2:  # first pass warms the server (imports, caches)
                path = "" if name == "home" else name
                started = time.perf_counter()
                page.goto(f"{url}/{path}")
                page.wait_for_selector("h1")
                page.wait_for_function(
                    "() => !Array.from(document.querySelectorAll('[data-testid=stStatusWidget]'))"
                    ".some(e => /Running/i.test(e.innerText))", timeout=120_000)
                if name in ("tradeoffs", "data"):
                    page.wait_for_function(
                        f"() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= {3 if name == 'tradeoffs' else 1}",
                        timeout=120_000)
                timings[name] = time.perf_counter() - started
            browser.close()
        return timings
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--browser", action="store_true", help="also time the pages in headless Chromium")
    parser.add_argument("--workspace", default=None, help="reuse this workspace (built there when it has no study)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(args.workspace or Path(folder) / "dptune-data")
        if not Workspace.at(root).studies_db.exists():
            build_workspace(root, args.trials, args.epochs)
        results = bench_apptest(root, args.repeats)
        print(f"\nAppTest script run per page, {args.trials} finished trials (budget {BUDGET_SECONDS:.0f} s):")
        print(f"{'page':<11} {'study read':>11} {'warm':>8} {'study read / budget':>20}")
        for page, (cold, warm) in results.items():
            print(f"{page:<11} {cold:>10.2f}s {warm:>7.2f}s {cold / BUDGET_SECONDS:>19.2f}x")
        slowest = max(results, key=lambda p: results[p][0])
        print(f"slowest page: {slowest} ({results[slowest][0]:.2f} s after a study change, "
              f"{results[slowest][1]:.2f} s warm)")
        if args.browser:
            if not Path("/usr/bin/chromium").exists():
                print("--browser: /usr/bin/chromium is missing; skipped")
            else:
                timings = bench_browser(root)
                print("\nheadless Chromium, navigation to content drawn (server warm):")
                for page, seconds in timings.items():
                    print(f"{page:<11} {seconds:>6.2f}s {seconds / BUDGET_SECONDS:>6.2f}x of budget")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
