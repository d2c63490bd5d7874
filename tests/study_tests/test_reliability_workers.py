"""Reliability of the trial queue with several real worker processes on the default SQLite
storage (issue 11): each queued trial is run by exactly one worker, a stale trial is re-queued
once however many workers look at it together, storage errors are retried, a worker whose
trial was taken over goes on, a trial lost too often is reported, and a SIGKILLed worker loses
nothing. The PostgreSQL versions are in test_reliability_postgres.py (same helpers)."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from search_helpers import TINY_MLP, wait_for

from dptune.spec.search import SearchSpec
from dptune.study.format import GAVE_UP_PREFIX, StudyRecord
from dptune.study.launch import spawn_worker
from dptune.study.results import finished_trials, trials_frame
from dptune.study.search import create_study
from dptune.study.storage import MAX_RETRY, RetryLostTrial, open_storage

RAN = re.compile(r"worker \d+: ran (\d+) trial\(s\)")


# ---------------------------------------------------------------------------- helpers (shared with postgres)
def make_study(tmp_path: Path, storage: str, name: str, *, n_trials: int, epochs: int, batch_size: int,
               heartbeat: int = 1) -> SearchSpec:
    """A budgeted study of the smallest real model (a 16-unit MLP on sklearn's digits)."""
    spec = SearchSpec.from_dict({
        "mode": "budgeted", "dataset": {"builtin": "digits"}, "model": TINY_MLP, "target_epsilon": 3.0,
        "n_trials": n_trials, "study_name": name, "workspace": str(tmp_path / "ws"), "storage": storage,
        "sampler": "random", "sampler_seed": 0, "heartbeat_seconds": heartbeat, "pruner": "none",
        "ranges": {"batch_size": batch_size, "epochs": epochs, "learning_rate": [0.1, 0.5],
                   "num_microbatches": "per_example"},
    })
    create_study(spec)
    return spec


def trials_of(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    return study.get_trials(deepcopy=False)


def start_workers(storage: str, name: str, count: int, tmp_path: Path, heartbeat: int = 1) -> list:
    workers = []
    for index in range(count):
        log = tmp_path / f"worker-{index}.log"
        workers.append((spawn_worker(name, storage, worker_index=index, heartbeat_seconds=heartbeat, log_path=log), log))
    return workers


def finish(workers: list, timeout: float = 1200) -> list[tuple[int, str]]:
    """Wait for every worker; (exit code, log) of each."""
    deadline = time.time() + timeout
    out = []
    try:
        for process, log in workers:
            process.wait(timeout=max(1.0, deadline - time.time()))
            out.append((process.returncode, Path(log).read_text(errors="replace")))
    finally:
        for process, _ in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
    return out


def check_records(trials: list[optuna.trial.FrozenTrial]) -> None:
    """No corrupted record: each COMPLETE trial's stored config matches its parameters, and its
    value matches its recorded accuracy and its last epoch."""
    for trial in trials:
        if trial.state != TrialState.COMPLETE or trial.user_attrs.get("surplus"):
            continue
        attrs = trial.user_attrs
        config = attrs["config"]
        for key, value in trial.params.items():
            if key in config:
                expected = value
                if key == "num_microbatches":  # "per_example" is m = B; a choice above B is capped at B
                    expected = config["batch_size"] if value == "per_example" else min(int(value), config["batch_size"])
                assert config[key] == pytest.approx(expected), (trial.number, key, config)
        assert trial.value == pytest.approx(attrs["val_accuracy"]), trial.number
        assert attrs["history"][-1]["val_accuracy"] == pytest.approx(attrs["val_accuracy"]), trial.number
        assert len(attrs["history"]) == attrs["epochs_done"] == config["epochs"], trial.number


def check_each_trial_ran_once(results: list[tuple[int, str]], trials: list[optuna.trial.FrozenTrial],
                              taken_over: int = 0) -> int:
    """Every worker exited 0; the trials the workers say they ran add up to the trials that
    ran (a trial taken by two workers counts twice); `taken_over` workers (no other) saw their
    trial taken over. Returns how many trials the workers ran."""
    for code, log in results:
        assert code == 0, log[-3000:]
    assert sum("taken over" in log for _, log in results) == taken_over, [log[-2000:] for _, log in results]
    ran = sum(int(m.group(1)) for _, log in results for m in RAN.finditer(log))
    started = [t for t in trials if t.state != TrialState.WAITING]
    assert ran == len(started), (ran, [(t.number, t.state.name, t.user_attrs.get("worker")) for t in started])
    return ran


# ---------------------------------------------------------------------------- tests
@pytest.mark.slow
def test_eight_workers_run_each_queued_trial_exactly_once_on_sqlite(tmp_path):
    """8 `dptune worker` processes drain 24 queued trials of a real (tiny) model from the
    default SQLite storage: no trial run twice, no corrupted record, no crashed worker."""
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    make_study(tmp_path, storage, "eight", n_trials=24, epochs=1, batch_size=256, heartbeat=10)
    results = finish(start_workers(storage, "eight", 8, tmp_path, heartbeat=10))
    trials = trials_of(storage, "eight")
    check_each_trial_ran_once(results, trials)
    planned = [t for t in trials if not t.user_attrs.get("surplus")]
    assert len(planned) == 24 and all(t.state == TrialState.COMPLETE for t in planned)
    assert len({t.user_attrs["worker"] for t in planned}) > 1  # the work was shared
    check_records(trials)


def _stale_trial_study(storage: str) -> int:
    """A study with one RUNNING trial whose heartbeat stopped (heartbeat 1 s, grace 3 s)."""
    study = optuna.create_study(study_name="stale", storage=open_storage(storage, heartbeat_seconds=1))
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study._storage.record_heartbeat(trial._trial_id)
    return trial.number


# a worker restarting: open the storage, wait for the common instant (written to the file
# argv[2]), look for stale trials. Only optuna and dptune.study.storage are imported (no
# TensorFlow), so the 6 processes start quickly.
FAIL_STALE = """
import os, sys, time, warnings
import optuna
from dptune.study.storage import open_storage
warnings.simplefilter("ignore")
study = optuna.load_study(study_name="stale", storage=open_storage(sys.argv[1], heartbeat_seconds=1))
print("ready", flush=True)
while not os.path.exists(sys.argv[2]) or not open(sys.argv[2]).read().strip():
    time.sleep(0.01)
start = float(open(sys.argv[2]).read())
while time.time() < start:
    time.sleep(0.001)
optuna.storages.fail_stale_trials(study)
"""


@pytest.mark.slow
def test_workers_restarting_together_requeue_a_stale_trial_once(tmp_path):
    """6 processes look for stale trials at the same instant (workers restarting together):
    exactly one retry of the stale trial is queued (issue 11 saw 3-6)."""
    for round_ in range(2):
        storage = f"sqlite:///{tmp_path / f'stale-{round_}.db'}"
        number = _stale_trial_study(storage)
        last_heartbeat = time.time()
        stamp = tmp_path / f"start-{round_}"
        processes = [subprocess.Popen([sys.executable, "-c", FAIL_STALE, storage, str(stamp)], stdout=subprocess.PIPE,
                                      text=True) for _ in range(6)]
        try:
            for process in processes:
                assert process.stdout.readline().strip() == "ready"
            time.sleep(max(0.0, last_heartbeat + 4.5 - time.time()))  # past the grace period (3 s)
            stamp.write_text(repr(time.time() + 0.5))
            for process in processes:
                assert process.wait(timeout=300) == 0
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        trials = trials_of(storage, "stale")
        assert [t.state for t in trials if t.number == number] == [TrialState.FAIL]
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == number]
        assert len(retries) == 1 and retries[0].state == TrialState.WAITING, [(t.number, t.state) for t in trials]


def test_sqlite_transactions_take_the_write_lock_at_their_start(tmp_path):
    """The fix itself: every transaction of dptune's SQLite storage begins with BEGIN IMMEDIATE,
    so even one that only reads waits while another process holds the write lock (a claim
    "still WAITING? then it is mine" is atomic)."""
    path = tmp_path / "lock.db"
    storage = open_storage(f"sqlite:///{path}")
    statements = []
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute",
                            lambda conn, cursor, statement, *rest: statements.append(statement))
    storage.get_all_studies()
    assert statements[0] == "BEGIN IMMEDIATE"
    holder = sqlite3.connect(path, timeout=0.1, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
    blocked = open_storage(f"sqlite:///{path}", retry_seconds=0)
    blocked.engine.dispose()
    sqlalchemy.event.listen(blocked.engine, "connect",
                            lambda dbapi, record: dbapi.execute("PRAGMA busy_timeout = 100"))
    with pytest.raises(Exception) as refused:
        blocked.get_all_studies()  # even a read waits for the write lock (then times out here)
    assert "locked" in str(refused.value.__cause__ or refused.value)
    holder.execute("ROLLBACK")
    assert blocked.get_all_studies() == []


def test_storage_calls_are_retried_across_connection_errors(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'retry.db'}", heartbeat_seconds=5, retry_seconds=30)
    optuna.create_study(study_name="r", storage=storage)
    failures = {"left": 2}

    def refuse(dialect, record, cargs, cparams):
        if failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("unable to open database file")
        return None

    storage.engine.dispose()
    sqlalchemy.event.listen(storage.engine, "do_connect", refuse)
    assert [s.study_name for s in storage.get_all_studies()] == ["r"]
    assert failures["left"] == 0
    assert storage.recovering()  # stale trials are not judged right after an outage


def test_a_worker_exits_with_an_error_line_when_the_storage_stays_unreachable(tmp_path):
    """Past its retries (DPTUNE_STORAGE_RETRY_SECONDS, shortened here) a worker says so in one
    `error:` line and exits 3; the dashboard then lists it as dead."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there
    env = {**os.environ, "DPTUNE_STORAGE_RETRY_SECONDS": "2"}
    result = subprocess.run([sys.executable, "-m", "dptune", "worker", "--study", "s", "--storage",
                             f"postgresql://nobody@127.0.0.1:{port}/none"], capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "error: the storage could not be reached for 2 s" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_whose_trial_was_taken_over_goes_on(tmp_path):
    """A worker frozen past the grace period resumes into a trial another worker has failed
    and re-queued: it logs that and takes the next trial instead of crashing."""
    from dptune.study.queue import drain_queue, enqueue_planned

    storage = open_storage(f"sqlite:///{tmp_path / 'takeover.db'}", heartbeat_seconds=60)
    study = optuna.create_study(study_name="t", storage=storage)
    enqueue_planned(study, 4, phase="search")
    seen = []

    def objective(trial):
        seen.append(trial.number)
        if trial.number in (0, 1):  # meanwhile another worker failed this trial as stale
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if trial.number == 0:
            trial.set_user_attr("history", [1])  # raises: the trial is finished
        return 1.0  # trial 1: finishes, but cannot be told (Optuna: "Cannot tell a FAIL trial.")

    assert drain_queue(study, objective, poll_seconds=0.1) == 4
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert seen == [0, 1, 2, 3]
    assert states == {0: TrialState.FAIL, 1: TrialState.FAIL, 2: TrialState.COMPLETE, 3: TrialState.COMPLETE}


def test_a_trial_lost_more_than_max_retry_times_is_reported(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'gaveup.db'}", heartbeat_seconds=1)
    study = optuna.create_study(study_name="g", storage=storage)
    lost = []
    for number in range(MAX_RETRY + 1):  # the original trial and its retries, each lost
        history = list(range(number))
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.FAIL, system_attrs={"failed_trial": 0, "retry_history": history} if number else {}))
        lost.append(study.get_trials(deepcopy=False)[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        callback = RetryLostTrial(max_retry=MAX_RETRY)
    callback(study, lost[0])  # lost once: queued again
    assert len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) == 1
    callback(study, lost[-1])  # lost MAX_RETRY + 1 times: reported, not queued
    assert len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) == 1
    reasons = StudyRecord.of(study).gave_up
    assert list(reasons) == [MAX_RETRY] and f"{GAVE_UP_PREFIX}{MAX_RETRY}" in study.user_attrs
    assert f"lost {MAX_RETRY + 1} times" in reasons[MAX_RETRY]
    frame = trials_frame(study).set_index("number")
    assert f"at most {MAX_RETRY} times" in frame.loc[MAX_RETRY, "fail_reason"]


# ---------------------------------------------------------------------------- SIGKILL (shared with postgres)
def kill_one_mid_trial(tmp_path: Path, storage: str, *, heartbeat: int, restart_database=None,
                       workers: int = 3, n_trials: int = 6, freeze: bool = False) -> dict:
    """3 workers drain 6 trials; one is SIGKILLed mid-trial (and, with `restart_database`, the
    database is restarted mid-search). Checks: no finished trial lost, none run twice, none
    stuck RUNNING past the grace period, the study completes. Returns what it measured.

    freeze: SIGSTOP the worker instead, until its trial was failed as stale by another worker,
    then SIGCONT it: it must say its trial was taken over and go on (exit 0)."""
    name, epochs = "kill", 24
    make_study(tmp_path, storage, name, n_trials=n_trials, epochs=epochs, batch_size=32, heartbeat=heartbeat)
    running = start_workers(storage, name, workers, tmp_path, heartbeat=heartbeat)
    pids = {process.pid: (process, log) for process, log in running}
    try:
        def mid_trial():
            trials = trials_of(storage, name)
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            busy = [t for t in trials if t.state == TrialState.RUNNING
                    and 1 <= len(t.user_attrs.get("history") or []) <= epochs // 3  # far from its end
                    and int(t.user_attrs["worker"].rsplit(":", 1)[1]) in pids]
            return (complete, busy[0]) if complete and busy else None

        complete_before, victim = wait_for(mid_trial, 900, "a finished trial and one in the middle of training")
        victim_pid = int(victim.user_attrs["worker"].rsplit(":", 1)[1])
        killed_at = time.time()
        os.kill(victim_pid, signal.SIGSTOP if freeze else signal.SIGKILL)
        if not freeze:
            pids[victim_pid][0].wait(timeout=60)
        restarted = False
        if restart_database is not None:
            restart_database()
            restarted = True
        stuck_since = wait_for(
            lambda: next((time.time() for t in trials_of(storage, name)
                          if t.number == victim.number and t.state != TrialState.RUNNING), None),
            900, "the killed worker's trial to be failed as stale")
        if freeze:
            os.kill(victim_pid, signal.SIGCONT)
        results = finish([(p, log) for pid, (p, log) in pids.items() if freeze or pid != victim_pid])
    finally:
        for process, _ in pids.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    recovered_at = time.time()
    trials = trials_of(storage, name)
    by_number = {t.number: t for t in trials}
    assert by_number[victim.number].state == TrialState.FAIL
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]  # nothing stuck
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE and retries[0].params == victim.params
    for trial in complete_before:  # no finished trial lost or changed
        assert by_number[trial.number].state == TrialState.COMPLETE
        assert by_number[trial.number].values == trial.values
        assert by_number[trial.number].user_attrs["history"] == trial.user_attrs["history"]
    ours = [t for t in trials if freeze or t.user_attrs.get("worker") != victim.user_attrs["worker"]]
    ran = check_each_trial_ran_once(results, ours, taken_over=1 if freeze else 0)
    study = optuna.load_study(study_name=name, storage=open_storage(storage))
    done = finished_trials(study)
    assert len(done) == n_trials and all(t.state == TrialState.COMPLETE for t in done)
    check_records(trials)
    summary = {
        "completed": len(done), "lost": n_trials - len(done), "stuck": 0,
        "duplicated": ran - len([t for t in ours if t.state != TrialState.WAITING]),
        "stale_failed_after_s": round(stuck_since - killed_at, 1), "all_done_after_s": round(recovered_at - killed_at, 1),
        "database_restarted": restarted,
    }
    print(f"fault run {storage.split(':')[0]} ({'SIGSTOP' if freeze else 'SIGKILL'}): {summary}")
    return summary


@pytest.mark.slow
def test_a_sigkilled_worker_loses_nothing_on_sqlite(tmp_path):
    summary = kill_one_mid_trial(tmp_path, f"sqlite:///{tmp_path / 'studies.db'}", heartbeat=3)
    assert summary["lost"] == 0 and summary["duplicated"] == 0


@pytest.mark.slow
def test_a_frozen_worker_resumes_into_a_taken_over_trial_and_goes_on_on_sqlite(tmp_path):
    summary = kill_one_mid_trial(tmp_path, f"sqlite:///{tmp_path / 'studies.db'}", heartbeat=3, freeze=True)
    assert summary["lost"] == 0 and summary["duplicated"] == 0
