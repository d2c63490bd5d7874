"""Worker launch (dptune.study.launch): one command line, one way to spawn it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from dptune.study.launch import spawn, tune_command, worker_command


def test_the_worker_command_is_the_documented_one():
    assert worker_command("s", "sqlite:///x.db", n_trials=4) == [
        sys.executable, "-m", "dptune", "worker", "--study", "s", "--storage", "sqlite:///x.db", "--n-trials", "4"]
    assert worker_command("s", "sqlite:///x.db", worker_index=2, heartbeat_seconds=1)[-4:] == [
        "--worker-index", "2", "--heartbeat", "1"]
    assert tune_command("a/search.yaml")[1:] == ["-m", "dptune", "tune", "--config", "a/search.yaml", "--no-progress"]


def test_both_worker_entry_points_take_the_same_arguments():
    helps = [
        subprocess.run([sys.executable, "-m", *module, "--help"], capture_output=True, text=True, timeout=120)
        for module in (["dptune", "worker"], ["dptune.study.worker"])
    ]
    assert all(h.returncode == 0 for h in helps), [h.stderr[-2000:] for h in helps]
    options = [sorted(word for word in h.stdout.split() if word.startswith("--")) for h in helps]
    assert options[0] == options[1] and "--worker-index" in options[0]


def _wait(process: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.returncode == 0


def test_spawn_appends_to_the_log_with_the_workers_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    log = tmp_path / "logs" / "w.log"
    log.parent.mkdir()
    log.write_text("before\n")
    script = ("import os, sys; print(os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ['PYTHONUNBUFFERED'], "
              "os.environ['EXTRA'], sys.stdin.read() == '', os.getsid(0) == os.getpid()); "
              "print('oops', file=sys.stderr)")
    _wait(spawn([sys.executable, "-c", script], log_path=log, env={"EXTRA": "x"}, cwd=tmp_path, detach=True))
    assert log.read_text().splitlines() == ["before", "2 1 x True True", "oops"]


def test_a_spawned_process_stays_in_our_session_unless_detached(tmp_path):
    log = tmp_path / "w.log"
    _wait(spawn([sys.executable, "-c", "import os; print(os.getsid(0))"], log_path=log))
    assert int(log.read_text()) == os.getsid(0)
    _wait(spawn([sys.executable, "-c", "pass"]))  # no log: output discarded
