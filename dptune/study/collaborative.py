"""Tuning the collaborative mode (DSSGD): an Optuna study whose trials are whole collaborative runs.

`dptune collab --config X.yaml --search` reads the YAML's `search` block
(`dptune.spec.collaborative_search`) and calls `tune_collaborative`: the shards and the
baselines (standalone, centralized) are computed once and stored in the study, then every
trial samples θu, θd (log scale) and the searched privacy parameters, simulates the run
(`dptune.engine.collaborative.run_collaborative`) on the same shards and records:

- objective: the server model's validation accuracy ("accuracy"), or that accuracy against
  the worst participant's ε and the bytes a participant uploads per round ("pareto"; no ε
  objective without privacy);
- the trial's attributes (`TrialRecord`): config (the CollaborativeConfig dict), history
  ({"round", "val_accuracy"} per global round), epsilon_total (the worst participant's ε),
  delta, val_accuracy, train_seconds and `collaborative` (see `trial_summary`).

With `target_epsilon`, every trial spends it: dp_sgd's σ is the smallest that keeps every
participant within the target (`calibrate_participants`), laplace_svt's ε is the target.

The study's `collaborative` attribute holds what is common to the trials (`study_summary`)
and the search's own charge, kept current as every trial starts: each participant took part
in every trial, so `search_charges` composes all of them (`dptune.privacy.collaborative`),
a trial that diverged (TrainingError: recorded as failed, with its reason; the search goes on)
included, since its participants had uploaded before it stopped.
The study mode is COLLABORATIVE_MODE; it is not a DP-SGD search mode
(`dptune.study.modes`), so pages branch on `StudyRecord.is_collaborative` first.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from dptune.data import resolve_dataset
from dptune.data.dataset import Dataset
from dptune.data.shards import Shards
from dptune.engine.collaborative import (
    Baselines,
    CollaborativeResult,
    fresh_flat_model,
    make_shards,
    run_baselines,
    run_collaborative,
)
from dptune.errors import ConfigError, TrainingError
from dptune.privacy.collaborative import calibrate_participants, search_charges
from dptune.spec.collaborative import (
    CollaborativeConfig,
    CollaborativeRun,
    collaborative_config_from_dict,
    collaborative_run_from_dict,
)
from dptune.spec.collaborative_search import CollaborativeSearch
from dptune.study.format import (
    COLLABORATIVE_MODE,
    DatasetRecord,
    StudyRecord,
    TrialRecord,
    json_safe,
    write_study,
    write_trial,
)
from dptune.study.results import best_within
from dptune.study.storage import open_storage
from dptune.workspace import DEFAULT_WORKSPACE, Workspace

CONFIG_PARAMETERS = ("theta_upload", "theta_download", "learning_rate")
"""Searchable keys of the collaborative block itself; the others are its privacy's."""


@dataclass(frozen=True)
class CollaborativeTuning:
    """What `tune_collaborative` produced: the study, the shards' sizes, the baselines, and the
    best trial's number (the most accurate within the target; None when none finished)."""

    study: optuna.Study
    shard_sizes: tuple[int, ...]
    baselines: Baselines
    best: int | None


def objectives(search: CollaborativeSearch, config: CollaborativeConfig) -> list[tuple[str, str]]:
    """The study's (metric name, direction) pairs, in the order a trial returns its values:
    accuracy; with pareto also the worst ε (when private) and the bytes per round."""
    if search.objective == "accuracy":
        return [("val_accuracy", "maximize")]
    return [("val_accuracy", "maximize"), *([("worst_epsilon", "minimize")] if config.private else []),
            ("bytes_per_round", "minimize")]


def directions(search: CollaborativeSearch, config: CollaborativeConfig) -> list[str]:
    """The study's directions (`objectives`)."""
    return [direction for _name, direction in objectives(search, config)]


def _sample(trial: optuna.Trial, name: str, pair: tuple[float, float]) -> float:
    low, high = pair
    return low if low == high else trial.suggest_float(name, low, high, log=True)


def suggest_config(trial: optuna.Trial, run: CollaborativeRun, shard_sizes: tuple[int, ...]) -> CollaborativeConfig:
    """The trial's collaborative config: the searched keys sampled (module docstring), the rest
    the YAML's; with a target ε, σ (dp_sgd) or ε (laplace_svt) set from it."""
    search, config = run.search, run.collaborative
    changes = {name: _sample(trial, name, search.range_of(name)) for name in CONFIG_PARAMETERS
               if search.range_of(name) is not None}
    privacy = {name: _sample(trial, name, pair) for name, pair in search.ranges if name not in CONFIG_PARAMETERS}
    config = config.replace(**changes, privacy=dataclasses.replace(config.privacy, **privacy))
    if search.target_epsilon is not None:
        if config.privacy.kind == "dp_sgd":
            sigma = calibrate_participants(config, shard_sizes, search.target_epsilon, run.delta)
            config = config.replace(privacy=dataclasses.replace(config.privacy, noise_multiplier=sigma))
        else:
            config = config.replace(privacy=dataclasses.replace(config.privacy, epsilon=search.target_epsilon))
    return config


def trial_summary(result: CollaborativeResult) -> dict[str, Any]:
    """A trial's `collaborative` attribute: theta_upload, theta_download, uploads_per_round (c),
    bytes_per_round (the largest participant's mean bytes per local round), parameter_count,
    worst_epsilon, and per participant {n_train, epsilon, delta, bytes_per_round, accuracy}."""
    return {
        "theta_upload": result.config.theta_upload,
        "theta_download": result.config.theta_download,
        "uploads_per_round": result.uploads_per_round,
        "bytes_per_round": max(result.bytes_uploaded_per_round),
        "parameter_count": result.parameter_count,
        "worst_epsilon": json_safe(result.worst_epsilon),
        "participants": [
            {"n_train": charge.n_train, "epsilon": json_safe(charge.epsilon), "delta": charge.delta,
             "bytes_per_round": sent, "accuracy": accuracy}
            for charge, sent, accuracy in zip(result.privacy, result.bytes_uploaded_per_round,
                                              result.participant_accuracies)
        ],
    }


def study_summary(run: CollaborativeRun, shards: Shards, baselines: Baselines,
                  charges: tuple = ()) -> dict[str, Any]:
    """The study's `collaborative` attribute: run (the YAML mapping without its search), search,
    shard_sizes, baselines {standalone (per participant), standalone_mean, centralized,
    standalone_seconds, centralized_seconds} and search_charges (per participant
    {n_train, epsilon, delta, note} for all finished trials together; [] before the first)."""
    return {
        "run": dataclasses.replace(run, search=None).to_dict(),
        "search": run.search.to_dict(),
        "shard_sizes": list(shards.sizes),
        "baselines": {
            "standalone": list(baselines.standalone_accuracies),
            "standalone_mean": sum(baselines.standalone_accuracies) / len(baselines.standalone_accuracies),
            "centralized": baselines.centralized_accuracy,
            "standalone_seconds": baselines.standalone_seconds,
            "centralized_seconds": baselines.centralized_seconds,
        },
        "search_charges": [{"n_train": c.n_train, "epsilon": json_safe(c.epsilon), "delta": c.delta, "note": c.note}
                           for c in charges],
    }


def trial_config(trial: optuna.trial.FrozenTrial) -> CollaborativeConfig | None:
    """The collaborative config a finished trial ran (None before it recorded one)."""
    values = TrialRecord.of(trial).config
    return None if values is None else collaborative_config_from_dict(values, where=f"trial {trial.number}")


def exported_run(study: optuna.Study, number: int) -> CollaborativeRun:
    """Trial `number` as a collaborative YAML without a search (`dptune collab --config` runs it again)."""
    from_study = StudyRecord.of(study).collaborative or {}
    if not from_study:
        raise ConfigError(f"study {study.study_name!r} is not a collaborative study")
    base = collaborative_run_from_dict(from_study["run"], source=f"study {study.study_name!r}")
    return dataclasses.replace(base, collaborative=trial_config(study.trials[number]))


def collaborative_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, accuracy, worst_epsilon (None: ∞), theta_upload,
    theta_download, bytes_per_round, learning_rate, the privacy parameters, seconds."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        record = TrialRecord.of(trial)
        summary = record.collaborative or {}
        privacy = (record.config or {}).get("privacy") or {}
        rows.append({
            "number": trial.number, "state": trial.state.name, "accuracy": record.val_accuracy,
            "worst_epsilon": summary.get("worst_epsilon"), "theta_upload": summary.get("theta_upload"),
            "theta_download": summary.get("theta_download"), "bytes_per_round": summary.get("bytes_per_round"),
            "learning_rate": (record.config or {}).get("learning_rate"),
            "noise_multiplier": privacy.get("noise_multiplier"), "l2_norm_clip": privacy.get("l2_norm_clip"),
            "privacy_epsilon": privacy.get("epsilon"), "gamma": privacy.get("gamma"),
            "seconds": record.train_seconds,
        })
    return pd.DataFrame(rows, columns=["number", "state", "accuracy", "worst_epsilon", "theta_upload",
                                       "theta_download", "bytes_per_round", "learning_rate", "noise_multiplier",
                                       "l2_norm_clip", "privacy_epsilon", "gamma", "seconds"])


def worst_search_charge(record: StudyRecord) -> tuple[float, str] | None:
    """(ε, how it was composed) of the participant the search charged most (all its trials
    composed; ∞ without privacy), or None before the first trial."""
    charges = (record.collaborative or {}).get("search_charges") or []
    if not charges:
        return None
    worst = max(charges, key=lambda c: math.inf if c["epsilon"] is None else c["epsilon"])
    return (math.inf if worst["epsilon"] is None else float(worst["epsilon"])), str(worst["note"])


def trial_line(trial: optuna.trial.FrozenTrial) -> str:
    """One line of a finished trial: its parameters, accuracy, worst ε, bytes and seconds."""
    record = TrialRecord.of(trial)
    summary = record.collaborative or {}
    config = record.config or {}
    privacy = config.get("privacy") or {}
    parameters = [f"theta_u {summary.get('theta_upload', 0):.3g}", f"theta_d {summary.get('theta_download', 0):.3g}",
                  f"lr {config.get('learning_rate', 0):.3g}"]
    parameters += [f"{name} {privacy[name]:.3g}" for name in ("noise_multiplier", "l2_norm_clip", "epsilon", "gamma")
                   if privacy.get(name) is not None]
    if trial.state.name != "COMPLETE":
        reason = f" ({record.fail_reason})" if record.fail_reason else ""
        return f"trial {trial.number} ({', '.join(parameters)}): {trial.state.name.lower()}{reason}"
    worst = summary.get("worst_epsilon")
    return (f"trial {trial.number} ({', '.join(parameters)}): accuracy {record.val_accuracy:.4f}, worst epsilon "
            f"{'inf' if worst is None else f'{worst:.3g}'}, {summary.get('bytes_per_round', 0):,.0f} bytes/round, "
            f"{record.train_seconds:.1f} s")


def best_trial(study: optuna.Study) -> int | None:
    """The most accurate finished trial within the search's target ε (any ε without one; a
    trial without privacy has ε = ∞ and qualifies only without a target)."""
    record = StudyRecord.of(study)
    frame = collaborative_frame(study)
    done = frame[frame["state"] == "COMPLETE"]
    return best_within(
        ((row.number, row.accuracy, math.inf if pd.isna(row.worst_epsilon) else row.worst_epsilon)
         for row in done.itertuples()), record.target_epsilon)


def _default_study_name(dataset: Dataset) -> str:
    return f"{dataset.name}-collab-{time.strftime('%Y%m%d-%H%M%S')}"


def tune_collaborative(run: CollaborativeRun, *, workspace: str | Path | None = None, dataset: Dataset | None = None,
                       on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> CollaborativeTuning:
    """Run the search of `run` (it must have one) in a new study; `on_trial` is called after
    every trial with the frozen trial. The storage is the search's, else the workspace's
    studies.db (workspace: the dataset reference's, else `workspace`, else ./dptune-data)."""
    if run.search is None:
        raise ConfigError("this collaborative YAML has no search block: add `search: {trials: 10}` to tune it")
    search = run.search
    root = Workspace.at(run.dataset.workspace or workspace or DEFAULT_WORKSPACE)
    dataset = dataset or resolve_dataset(run.dataset, root.root, save=False)
    storage = open_storage(search.storage or root.storage_url)
    name = search.study_name or _default_study_name(dataset)
    if name in optuna.get_all_study_names(storage):
        raise ConfigError(f"search.study_name: a study named {name!r} already exists; choose another name")
    shards = make_shards(dataset, run.collaborative)
    baselines = run_baselines(dataset, run.model, run.collaborative, shards=shards)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is printed by on_trial, with its reason
    study = optuna.create_study(storage=storage, study_name=name, directions=directions(search, run.collaborative),
                                sampler=optuna.samplers.TPESampler(n_startup_trials=max(2, min(10, search.trials // 3))))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([name for name, _direction in objectives(search, run.collaborative)])
    write_study(study, mode=COLLABORATIVE_MODE,
                dataset=DatasetRecord(name=dataset.name, fingerprint=dataset.fingerprint, n_train=dataset.n_train,
                                      preprocessing=dataset.preprocessing_record()),
                workspace=str(root.root), target_epsilon=search.target_epsilon, delta=run.delta,
                n_trials_planned=search.trials, created_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                collaborative=study_summary(run, shards, baselines))
    configs: list[CollaborativeConfig] = []
    parameter_count = fresh_flat_model(dataset, run.model, run.collaborative).parameter_count

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        config = suggest_config(trial, run, shards.sizes)
        write_trial(trial, config=config.to_dict(), model_spec=run.model.to_dict(), delta=run.delta)
        configs.append(config)  # charged before it runs: a run that fails has uploaded already
        charges = search_charges(configs, shards.sizes, parameter_count, run.delta)
        write_study(study, collaborative=study_summary(run, shards, baselines, charges))
        try:
            result = run_collaborative(dataset, run.model, config, shards=shards, delta=run.delta)
        except TrainingError as error:  # diverged (e.g. too large a learning rate): the search goes on
            write_trial(trial, fail_reason=str(error))
            raise
        summary = trial_summary(result)
        write_trial(trial, history=[{"round": r + 1, "val_accuracy": a} for r, a in enumerate(result.history)],
                    epsilon_total=result.worst_epsilon, val_accuracy=result.global_accuracy,
                    train_seconds=result.seconds, collaborative=summary)
        values = {"val_accuracy": result.global_accuracy, "worst_epsilon": result.worst_epsilon,
                  "bytes_per_round": summary["bytes_per_round"]}
        return tuple(values[name] for name, _direction in objectives(search, config))

    callbacks = [lambda _study, frozen: on_trial(frozen)] if on_trial else []
    study.optimize(objective, n_trials=search.trials, callbacks=callbacks, catch=(TrainingError,))
    return CollaborativeTuning(study, shards.sizes, baselines, best_trial(study))
