"""A worker that dies between taking a trial and its first heartbeat leaves a RUNNING trial
without any heartbeat, which Optuna's own stale check skips; dptune's storage fails it after
the grace period and queues it again, like any lost trial."""

from __future__ import annotations

import time
import warnings

import optuna
from optuna.trial import TrialState

from dptune.study.queue import fail_stale
from dptune.study.storage import open_storage


def test_a_trial_that_never_sent_a_heartbeat_is_failed_and_queued_again_after_the_grace(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'studies.db'}", heartbeat_seconds=1)  # grace: 3 s
    study = optuna.create_study(storage=storage, study_name="s")
    study.enqueue_trial({"x": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        silent = study.ask()  # taken, RUNNING, and no heartbeat thread: its worker "died" at once
    fail_stale(study)
    assert study.trials[silent.number].state == TrialState.RUNNING  # within the grace period: left alone
    deadline = time.monotonic() + 60
    while study.trials[silent.number].state == TrialState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.5)
        fail_stale(study)
    states = [t.state for t in study.trials]
    assert states[silent.number] == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == silent.number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING and retries[0].system_attrs["fixed_params"] == {"x": 1.0}
