"""The dashboard's worker records (dptune.ui.workers, no Streamlit): a pid read from the
workspace is signalled only while it still runs the recorded worker command, and workers that
died (not stopped) are listed and can be restarted (issue 11, items 4 and 9)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict

import pytest

from dptune.study.launch import worker_command
from dptune.ui import workers
from dptune.ui.workspace import Workspace

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def workspace(tmp_path):
    return Workspace.from_env(tmp_path / "ws")


def _wait(condition, timeout: float = 120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_stop_workers_leaves_alone_a_pid_that_is_no_longer_the_worker(workspace):
    """The record's worker ended and its pid now belongs to an unrelated process (here a
    `sleep`): it is not alive as a worker, and "Stop workers" does not signal it."""
    unrelated = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        record = workers.WorkerRecord(
            pid=unrelated.pid, study="s", storage="sqlite:///x.db", n_trials=2,
            command=worker_command("s", "sqlite:///x.db", n_trials=2), log=str(workspace.root / "w.log"),
            started=time.time(),
        )
        directory = workspace.worker_dir("s")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{unrelated.pid}.json").write_text(json.dumps(asdict(record)))
        assert workers.process_alive(unrelated.pid)
        assert not workers.runs_recorded_command(unrelated.pid, record.command)
        assert workers.live_workers(workspace, "s") == []
        assert workers.stop_workers(workspace, "s", grace_seconds=1) == []
        time.sleep(0.3)
        assert unrelated.poll() is None  # never signalled
        assert [r.pid for r in workers.dead_workers(workspace, "s")] == [unrelated.pid]  # our worker is gone
    finally:
        unrelated.kill()
        unrelated.wait()


def test_stop_workers_signals_a_pid_that_runs_the_recorded_command(workspace):
    (record,) = workers.start_workers(workspace, "s", n_workers=1, n_trials_each=1, command=SLEEPER)
    assert workers.runs_recorded_command(record.pid, SLEEPER)
    assert workers.stop_workers(workspace, "s", grace_seconds=5) == [record.pid]
    _wait(lambda: not workers.process_alive(record.pid))
    assert workers.dead_workers(workspace, "s") == []  # stopped on purpose: not dead
    assert workers.list_workers(workspace, "s")[0].stopped


def test_dead_workers_are_listed_with_their_last_error_and_restarted(workspace):
    crash = [sys.executable, "-c", "import sys; print('working'); print('error: the storage could not be reached'); "
             "sys.exit(3)"]
    (record,) = workers.start_workers(workspace, "d", n_workers=1, n_trials_each=2, command=crash)
    _wait(lambda: not record.alive)
    (dead,) = workers.dead_workers(workspace, "d")
    assert dead.pid == record.pid
    _wait(lambda: "error:" in record.log_tail())
    assert workers.exit_summary(dead) == "error: the storage could not be reached"
    (new,) = workers.restart_dead_workers(workspace, "d")
    assert new.command == crash and new.pid != record.pid and new.n_trials == 2
    by_pid = {r.pid: r for r in workers.list_workers(workspace, "d")}
    assert by_pid[record.pid].replaced_by == new.pid
    _wait(lambda: not new.alive)
    assert [r.pid for r in workers.dead_workers(workspace, "d")] == [new.pid]  # the old one was replaced
