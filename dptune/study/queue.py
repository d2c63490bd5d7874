"""The trial queue of a dptune study: planned trials wait (Optuna WAITING trials) until a
worker takes one, runs it with the study's objective and records it.

Below both the search (dptune.study.search) and the recipe (dptune.study.recipe), which
queue trials and drain the queue with their own objectives.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from dptune.engine.runtime import release_models
from dptune.study.format import trial_attrs
from dptune.study.objective import TrialFailed

_log = logging.getLogger("dptune.worker")

Objective = Callable[[optuna.trial.Trial], float | tuple[float, ...]]
"""An Optuna objective: a trial in, its objective value(s) out."""


def enqueue_planned(study: optuna.Study, count: int, *, phase: str, planned_configs: list[dict] | None = None) -> None:
    """Queue `count` trials (WAITING) of `phase` for workers to take; parameters are sampled
    when one starts, unless `planned_configs` (one DPSGDConfig dict per trial) fixes them."""
    for i in range(count):
        fixed = {} if planned_configs is None else {"planned_config": planned_configs[i]}
        study.enqueue_trial({}, user_attrs=trial_attrs(phase=phase, **fixed))


def queue_counts(study: optuna.Study) -> dict[str, int]:
    """How many of the study's trials are in each state, by TrialState name."""
    counts = {state.name: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] += 1
    return counts


def fail_stale(study: optuna.Study) -> None:
    """Fail the trials whose worker stopped sending heartbeats (the storage's stale-trial
    callback re-queues them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def taken_over(error: BaseException) -> bool:
    """True when `error` says the trial being run or told was already finished by someone else
    (Optuna: UpdateFinishedTrialError, or "Cannot tell a COMPLETE/FAIL/PRUNED trial.")."""
    current: BaseException | None = error
    for _ in range(20):  # the chain of causes; bounded in case it loops
        if current is None:
            return False
        if isinstance(current, optuna.exceptions.UpdateFinishedTrialError):
            return True
        if isinstance(current, ValueError) and str(current).startswith("Cannot tell a "):
            return True
        current = current.__cause__ or current.__context__
    return False


def drain_queue(
    study: optuna.Study,
    objective: Objective,
    *,
    poll_seconds: float,
    max_trials: int | None = None,
    wait_for_running: bool = True,
    on_trial_end: Callable[[optuna.Study], None] | None = None,
    deadline: float | None = None,
) -> int:
    """Take queued trials and run `objective` on each until none is left (or `max_trials`
    ran here, or the deadline, a time.time() value, passed).

    While other workers' trials are running and nothing waits, poll every `poll_seconds`: a
    worker that dies leaves a stale trial that this loop fails and re-queues after the grace
    period. A trial taken over while this worker was silent (frozen, or cut off from the
    storage past the grace period: another worker failed and re-queued it) is logged and left
    to its retry; this loop goes on with the next. Storage errors are retried by the storage
    (dptune.study.storage); one that outlasts STORAGE_RETRY_SECONDS is raised. Returns how
    many trials this call ran.
    """
    ran = 0
    while max_trials is None or ran < max_trials:
        if deadline is not None and time.time() >= deadline:
            break
        fail_stale(study)
        counts = queue_counts(study)
        if counts["WAITING"]:
            current: dict[str, int] = {}

            def tracked(trial: optuna.trial.Trial) -> float | tuple[float, ...]:
                current["number"] = trial.number
                return objective(trial)

            try:
                study.optimize(tracked, n_trials=1, catch=(TrialFailed,), gc_after_trial=True)
            except Exception as error:  # Optuna may wrap "Cannot tell a FAIL trial." in an AssertionError
                if "number" not in current or not taken_over(error):
                    raise
                _log.warning("trial %d was taken over: it was marked failed and re-queued while this worker was "
                             "silent (no heartbeat for the grace period); going on with the next trial (%s)",
                             current["number"], error)
            release_models()
            ran += 1
            if on_trial_end is not None:
                on_trial_end(study)
            continue
        if counts["RUNNING"] and wait_for_running:
            time.sleep(poll_seconds)
            continue
        break
    return ran
