"""The Search page lists workers that died while the study has unfinished trials, with their
last error, and restarts them (issue 11, item 4)."""

from __future__ import annotations

import sys
import time

import optuna
from synthetic_studies import make_study
from ui_testing import messages, open_page, storage_url

from dptune.ui import workers
from dptune.ui.workspace import Workspace

CRASH = [sys.executable, "-c", "print('error: the storage could not be reached for 120 s'); raise SystemExit(3)"]


def test_the_search_page_shows_dead_workers_and_restarts_them(workspace, monkeypatch):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = make_study(storage_url(workspace), "queued", 1)
    study.enqueue_trial({})  # unfinished work
    ws = Workspace.from_env(workspace)
    (record,) = workers.start_workers(ws, "queued", n_workers=1, n_trials_each=1, command=CRASH)
    deadline = time.time() + 120
    while (record.alive or "error:" not in record.log_tail()) and time.time() < deadline:
        time.sleep(0.05)
    restarted = []
    monkeypatch.setattr(workers, "restart_dead_workers", lambda ws, name: restarted.append(name) or [record])
    at = open_page(workspace, "search")
    assert not at.exception, messages(at)
    warnings = [w for w in messages(at)["warning"] if "exited while" in w]
    assert warnings and f"PID {record.pid}: error: the storage could not be reached" in warnings[0], messages(at)
    assert "dptune worker --study queued" in warnings[0]
    at.button(key="search-restart-dead").click().run()
    assert restarted == ["queued"]
