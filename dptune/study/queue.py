"""The trial queue of a dptune study: planned trials wait (Optuna WAITING trials) until a
worker takes one, runs it with the study's objective and records it.

Below both the search (dptune.study.search) and the recipe (dptune.study.recipe), which
queue trials and drain the queue with their own objectives.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from dptune.engine.runtime import release_models
from dptune.study.objective import TrialFailed

Objective = Callable[[optuna.trial.Trial], float | tuple[float, ...]]
"""An Optuna objective: a trial in, its objective value(s) out."""


def enqueue_planned(study: optuna.Study, count: int, *, phase: str, user_attrs: list[dict] | None = None) -> None:
    """Queue `count` trials (WAITING) for workers to take; parameters are sampled when one
    starts. user_attrs: one mapping per trial, recorded on it (with its `phase`)."""
    for i in range(count):
        attrs = {"phase": phase}
        if user_attrs is not None:
            attrs.update(user_attrs[i])
        study.enqueue_trial({}, user_attrs=attrs)


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
    period. Returns how many trials this call ran.
    """
    ran = 0
    while max_trials is None or ran < max_trials:
        if deadline is not None and time.time() >= deadline:
            break
        fail_stale(study)
        counts = queue_counts(study)
        if counts["WAITING"]:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=True)
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
