"""Start page (AppTest): opens on digits, one-button search, re-attaching after a restart."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from ui_testing import messages, open_page, storage_url

from dptune.ui import searching

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def started(monkeypatch):
    calls = []
    monkeypatch.setattr(searching, "start_workers", lambda workspace, study, **kw: calls.append((study, kw)) or [])
    return calls


def test_opens_on_digits_with_the_suggested_model(workspace):
    at = open_page(workspace, "home")
    assert not at.exception and not at.error, messages(at)
    shown = {m.label: m.value for m in at.main.metric}
    assert shown["Data"] == "digits" and shown["Model"] == "mlp" and shown["Target ε"] == "3"
    assert at.button(key="quick-start").label == "Run a quick search on digits"


def test_quick_start_queues_a_tiny_search_and_shows_it_live(workspace, started):
    at = open_page(workspace, "home")
    at.button(key="quick-start").click().run()
    assert not at.exception and not at.error, messages(at)
    (name, options), = started
    assert name.startswith("digits-quick-budgeted-eps3-") and options["n_workers"] == 1
    study = optuna.load_study(study_name=name, storage=storage_url(workspace))
    spec = study.user_attrs["search_spec"]
    assert study.user_attrs["n_trials_planned"] == 3
    assert spec["ranges"]["epochs"] == [2, 2] and spec["ranges"]["num_microbatches"] == ["per_example"]
    assert any(p.proto.text.startswith("0 of 3 trials done") for p in at.get("progress"))

    # a reload, or a restarted app, shows the same study: the state is in the workspace
    again = open_page(workspace, "home")
    assert any(f"Study {name}" in h.value for h in again.subheader)
    assert json.loads((workspace / "ui_state.json").read_text())["study"] == name


def test_a_lost_upload_is_explained(workspace):
    workspace.mkdir(parents=True)
    (workspace / "ui_state.json").write_text(json.dumps({"dataset": {
        "source": "upload", "upload": {"name": "gone.csv", "path": str(workspace / "uploads" / "gone.csv")},
        "options": {}}}))
    at = open_page(workspace, "home")
    assert not at.exception
    errors = messages(at)["error"]
    assert any("gone.csv" in e and "upload it again" in e for e in errors), errors


@pytest.mark.slow
def test_the_start_page_does_not_import_tensorflow(tmp_path):
    """Issue 10 item 17: the first page appeared after ~60 s (TensorFlow imported at start). The
    Start page, the Search page and the sidebar calculator render without it, in a fresh process."""
    script = (
        "import sys, ui_testing\n"
        f"at = ui_testing.open_page({str(tmp_path / 'ws')!r}, 'home')\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "at.switch_page('pages/search.py').run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    tests = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], cwd=tests, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(tests)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "False False"
