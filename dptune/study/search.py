"""Optuna studies for dptune's search modes (dptune.study.modes): creation, storage, the trial
loop, `tune`.

A study is a plain Optuna study (open it with `optuna-dashboard <storage URL>`); what
dptune adds lives in its user attributes (docs/INTERFACES.md, "Optuna study format"):

- the planned trials are enqueued as WAITING trials when the study is created (their
  number drawn at random when asked, Papernot & Steinke 2022), so any number of workers,
  on one machine or many, take trials from one queue and the study runs exactly that many;
- the storage has a heartbeat: a worker killed mid-trial leaves its trial RUNNING only
  until the grace period passes; the next worker then marks it FAIL and re-queues it
  (Optuna's RetryHeartbeatStaleTrialCallback), and no finished trial is lost;
- every trial records its config, per-epoch metrics, ε and timings (dptune.study.objective);
- the search cost (per-trial ε, composition over all trials, repeat-and-select ε) is kept
  current in the study attribute `search_cost` (dptune.study.results.search_cost).

A `phased` mode (the recipe) is the exception: nothing is queued at creation; one process
runs its phases (dptune.study.recipe.run_recipe), each queueing its trials, with the
recipe's own objective.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from tqdm import tqdm

from dptune import privacy
from dptune.data import resolve_dataset
from dptune.data.dataset import Dataset
from dptune.engine.runtime import share_gpus_between_processes
from dptune.errors import ConfigError
from dptune.spec.dataset_ref import DatasetRef
from dptune.spec.search import SearchSpec
from dptune.study.budget import resolve_delta
from dptune.study.format import DatasetRecord, StudyRecord, TrialRecord, write_study
from dptune.study.launch import spawn_worker
from dptune.study.modes import mode_for, study_mode
from dptune.study.objective import SEARCH_PHASE, TrainFn, make_objective
from dptune.study.queue import drain_queue, enqueue_planned
from dptune.study.recipe import make_recipe_objective, run_recipe
from dptune.study.results import finished_trials, update_search_cost
from dptune.study.storage import open_storage


# ---------------------------------------------------------------------------- storage
def make_sampler(spec: SearchSpec, *, worker_index: int = 0, n_trials: int | None = None, trials_started: int = 0):
    """The spec's sampler; with `sampler_seed`, worker i uses seed + i (so workers differ),
    offset by the trials the study had already started, so that a restarted worker does not
    draw the same parameters again."""
    seed = None if spec.sampler_seed is None else spec.sampler_seed + worker_index + 7919 * trials_started
    n = n_trials or 20
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if spec.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if spec.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, n // 2)))
        if spec.sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, n // 3)))


# ---------------------------------------------------------------------------- study
def create_study(spec: SearchSpec, *, dataset: Dataset | None = None, worker_index: int = 0) -> tuple[optuna.Study, Dataset]:
    """Create the study (or resume it when one with the same name and spec exists).

    The dataset is stored in the workspace by fingerprint (workers load it from there) and
    the spec is stored with that fingerprint pinned. Returns (study, dataset).
    """
    if dataset is None:
        dataset = resolve_dataset(spec.dataset, spec.workspace, save=False)  # saved below, in spec.workspace only
    if dataset.preprocessing_epsilon != 0:
        raise ConfigError(
            f"dataset: {dataset.name!r} was prepared in a way whose privacy cost is not zero "
            f"(ε = {dataset.preprocessing_epsilon:g}: {dataset.preprocessing_note}); prepare it again with this "
            "version of dptune (upload it again), which fits nothing on the rows"
        )
    if spec.fairness_limit is not None and dataset.sensitive_val is None:
        raise ConfigError(
            f"fairness_limit: dataset {dataset.name!r} has no sensitive attribute to measure "
            f"{spec.fairness_limit.metric} on; choose one on the Data page (or remove fairness_limit)"
        )
    workspace = str(Path(spec.workspace).resolve())
    pinned = spec.replace(
        dataset=DatasetRef(
            name=dataset.name, builtin=spec.dataset.builtin, file=spec.dataset.file, fingerprint=dataset.fingerprint,
            n_train=dataset.n_train, options=spec.dataset.options,
        ),
        workspace=workspace,
        storage=spec.resolved_storage,
        study_name=spec.resolved_study_name,
    )
    storage = open_storage(pinned.storage, heartbeat_seconds=pinned.heartbeat_seconds)
    name = pinned.study_name
    if name in optuna.get_all_study_names(storage):
        study, stored, _ = load_study(name, storage, load_dataset=False, worker_index=worker_index)
        if stored.to_dict() != pinned.to_dict():
            raise ConfigError(
                f"study_name: a study named {name!r} already exists in {pinned.storage} with a different search "
                "spec; choose another study_name (or delete the old study)"
            )
        dataset.save(spec.workspace)
        return study, dataset
    dataset.save(spec.workspace)  # only once the storage opened: a failed start leaves no dataset behind
    mode = mode_for(pinned.mode)
    k = pinned.n_trials.draw()
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=list(mode.directions),
        sampler=make_sampler(pinned, worker_index=worker_index, n_trials=k),
        pruner=pinned.pruner.build(),
    )
    delta = resolve_delta(pinned, dataset.n_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(mode.objective_names))
    write_study(
        study,
        mode=mode.name,
        search_spec=pinned.to_dict(),
        dataset=DatasetRecord(name=dataset.name, fingerprint=dataset.fingerprint, n_train=dataset.n_train,
                              preprocessing=dataset.preprocessing_record()),
        workspace=workspace,
        target_epsilon=pinned.target_epsilon,
        delta=delta,
        delta_warning=privacy.delta_warning(delta, dataset.n_train),
        n_trials_planned=k,
        n_trials_distribution=pinned.n_trials.to_dict(),
        epsilon_includes_search_cost=pinned.epsilon_includes_search_cost,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    if not mode.phased:
        enqueue_planned(study, k, phase=SEARCH_PHASE)
    return study, dataset


def load_study(
    name: str,
    storage: str | optuna.storages.BaseStorage,
    *,
    heartbeat_seconds: int | None = None,
    load_dataset: bool = True,
    worker_index: int = 0,
) -> tuple[optuna.Study, SearchSpec, Dataset | None]:
    """Open a dptune study with its own sampler and pruner (Optuna does not store those)."""
    if isinstance(storage, str):
        storage = open_storage(storage, heartbeat_seconds=heartbeat_seconds)
    try:
        summary = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise ConfigError(f"there is no study {name!r} in this storage; it has: {', '.join(names) or 'none'}") from None
    record = StudyRecord.of(summary)
    if not record.is_dptune:
        raise ConfigError(f"study {name!r} was not created by dptune (it has no search_spec attribute)")
    spec = SearchSpec.from_dict(record.search_spec)
    started = len(summary.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE,
                                                             TrialState.PRUNED, TrialState.FAIL)))
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(spec, worker_index=worker_index, n_trials=record.n_trials_planned,
                             trials_started=started),
        pruner=spec.pruner.build(),
    )
    dataset = None
    if load_dataset:
        dataset = Dataset.load(record.dataset.fingerprint, record.workspace)
    return study, spec, dataset


# ---------------------------------------------------------------------------- trial loop
def run_queued_trials(
    study: optuna.Study,
    spec: SearchSpec,
    dataset: Dataset,
    *,
    max_trials: int | None = None,
    wait_for_running: bool = True,
    poll_seconds: float | None = None,
    train_fn: TrainFn | None = None,
    on_trial_end: Callable[[optuna.Study], None] | None = None,
    deadline: float | None = None,
) -> int:
    """Take the study's queued trials with its mode's objective (dptune.study.queue.drain_queue);
    poll every `poll_seconds` (default half a heartbeat) while others run. Returns how many
    trials this call ran."""
    delta = float(StudyRecord.of(study).delta)
    make = make_recipe_objective if mode_for(spec.mode).phased else make_objective
    objective = make(spec, dataset, delta=delta, train_fn=train_fn)
    poll = poll_seconds if poll_seconds is not None else max(1.0, spec.heartbeat_seconds / 2)
    return drain_queue(study, objective, poll_seconds=poll, max_trials=max_trials, wait_for_running=wait_for_running,
                       on_trial_end=on_trial_end, deadline=deadline)


# ---------------------------------------------------------------------------- tune
@dataclass
class TuneOutcome:
    study: optuna.Study
    spec: SearchSpec
    dataset: Dataset
    trials_run: int
    seconds: float


def tune(
    spec: SearchSpec,
    *,
    dataset: Dataset | None = None,
    progress: bool = True,
    train_fn: TrainFn | None = None,
    log: Callable[[str], None] | None = None,
) -> TuneOutcome:
    """Run a whole search headless: create (or resume) the study, run its trials here and
    in `spec.workers - 1` extra worker processes (a phased mode: its driver, in this process
    only), keep `search_cost` current."""
    started = time.time()
    share_gpus_between_processes()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, dataset = create_study(spec, dataset=dataset)
    spec = SearchSpec.from_dict(StudyRecord.of(study).search_spec)
    deadline = None if spec.timeout_seconds is None else started + spec.timeout_seconds
    bar = _progress_bar(study, progress)

    def on_trial_end(current: optuna.Study) -> None:
        update_search_cost(current)
        if bar is not None:
            bar.refresh_from(current)

    if mode_for(spec.mode).phased:
        ran = run_recipe(study, spec, dataset, train_fn=train_fn, on_trial_end=on_trial_end, deadline=deadline, log=log)
    else:
        helpers = [
            spawn_worker(study.study_name, spec.storage, worker_index=i, heartbeat_seconds=spec.heartbeat_seconds)
            for i in range(1, spec.workers)
        ]
        try:
            ran = run_queued_trials(study, spec, dataset, train_fn=train_fn, on_trial_end=on_trial_end, deadline=deadline)
        finally:
            for helper in helpers:
                if deadline is not None:
                    helper.terminate()
                helper.wait()
    update_search_cost(study)
    if bar is not None:
        bar.refresh_from(study)
        bar.close()
    return TuneOutcome(study=study, spec=spec, dataset=dataset, trials_run=ran, seconds=time.time() - started)


class _Bar:
    """A tqdm bar over the planned trials, refreshed from the storage (counts every worker)."""

    def __init__(self, total: int, description: str):
        self.bar = tqdm(total=total, desc=description, unit="trial")

    def refresh_from(self, study: optuna.Study) -> None:
        done = len(finished_trials(study))
        self.bar.total = max(self.bar.total, StudyRecord.of(study).n_trials_planned, done)
        self.bar.n = done
        best = _best_accuracy(study)
        if best is not None:
            self.bar.set_postfix_str(f"best val acc {best:.4f}")
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _best_accuracy(study: optuna.Study) -> float | None:
    records = (TrialRecord.of(t) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    values = [record.val_accuracy for record in records if record.val_accuracy is not None]
    return max(values) if values else None


def _progress_bar(study: optuna.Study, enabled: bool) -> _Bar | None:
    if not enabled:
        return None
    record = StudyRecord.of(study)
    return _Bar(record.n_trials_planned, f"{study.study_name} ({study_mode(record).name})")
