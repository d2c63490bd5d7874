"""Synthetic Optuna studies in the documented dptune format (for UI tests and benchmarks).

The trials carry exactly the user attrs of docs/INTERFACES.md ("Optuna study format"),
so the pages and plots can be exercised without training anything.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

DISTRIBUTIONS = {
    "l2_norm_clip": FloatDistribution(0.1, 10.0, log=True),
    "noise_multiplier": FloatDistribution(0.5, 4.0),
    "num_microbatches": CategoricalDistribution([1, 8, 32, 64, 128]),
    "learning_rate": FloatDistribution(1e-3, 1.0, log=True),
    "batch_size": CategoricalDistribution([64, 128]),
}


def _history(epochs: int, final_accuracy: float, final_epsilon: float, steps_per_epoch: int,
             seconds_per_step: float) -> list[dict[str, Any]]:
    records = []
    for epoch in range(1, epochs + 1):
        fraction = epoch / epochs
        records.append(
            {
                "epoch": epoch,
                "step": epoch * steps_per_epoch,
                "train_loss": 2.3 * (1 - 0.7 * fraction),
                "val_loss": 2.3 * (1 - 0.6 * fraction),
                "val_accuracy": final_accuracy * (0.6 + 0.4 * fraction),
                "epsilon": final_epsilon * math.sqrt(fraction),
                "seconds_per_step": seconds_per_step,
                "examples_per_second": 0.0,
                "elapsed_seconds": epoch * steps_per_epoch * seconds_per_step,
            }
        )
    return records


def populate_study(
    study: optuna.Study,
    n_trials: int,
    *,
    n_train: int = 1437,
    epochs: int = 5,
    running: int = 0,
    failed: int = 0,
    pruned: int = 0,
    seed: int = 0,
) -> optuna.Study:
    """Add `n_trials` complete trials (plus `running`, `failed`, `pruned` ones) to `study`."""
    rng = random.Random(seed)
    trials = []
    kinds = ["complete"] * n_trials + ["running"] * running + ["failed"] * failed + ["pruned"] * pruned
    start = dt.datetime(2025, 1, 1, 12, 0, 0)
    for index, kind in enumerate(kinds):
        params = {
            "l2_norm_clip": round(10 ** rng.uniform(-1, 1), 4),
            "noise_multiplier": round(rng.uniform(0.5, 4.0), 4),
            "num_microbatches": rng.choice([1, 8, 32, 64, 128]),
            "learning_rate": round(10 ** rng.uniform(-3, 0), 5),
            "batch_size": rng.choice([64, 128]),
        }
        params["num_microbatches"] = min(params["num_microbatches"], params["batch_size"])
        sigma = params["noise_multiplier"]
        epsilon = round(8.0 / sigma * (0.6 + 0.4 * rng.random()), 4)
        accuracy = max(0.1, min(0.99, 0.97 - 0.08 * sigma / 4 - 0.1 * abs(math.log10(params["learning_rate"]) + 1) * rng.random()))
        seconds_per_step = 0.002 + 0.0004 * params["num_microbatches"] * rng.uniform(0.8, 1.2)
        steps_per_epoch = math.ceil(n_train / params["batch_size"])
        done_epochs = epochs if kind == "complete" else max(1, epochs // 2)
        history = _history(epochs, accuracy, epsilon, steps_per_epoch, seconds_per_step)[:done_epochs]
        for record in history:
            record["examples_per_second"] = params["batch_size"] / seconds_per_step
        config = {
            "l2_norm_clip": params["l2_norm_clip"], "noise_multiplier": sigma,
            "num_microbatches": params["num_microbatches"], "learning_rate": params["learning_rate"],
            "batch_size": params["batch_size"], "epochs": float(epochs), "optimizer": "sgd",
            "momentum": 0.9, "sampling": "poisson", "seed": index,
        }
        attrs: dict[str, Any] = {
            "config": config,
            "model_spec": {"kind": "mlp", "hidden_units": [64], "activation": "relu", "path": None},
            "history": history,
            "total_epochs": float(epochs),
            "epsilon_planned": epsilon,
            "delta": 1.0 / n_train**1.1,
            "sampling": "poisson",
            "phase": "search",
            "epochs_done": len(history),
            "steps_planned": epochs * steps_per_epoch,
            "steps_done": len(history) * steps_per_epoch,
        }
        if kind == "complete":
            attrs.update(
                epsilon_rdp=epsilon, epsilon_pld=round(epsilon * 0.9, 4), rdp_order=8.0, val_accuracy=accuracy,
                seconds_per_step=seconds_per_step, examples_per_second=params["batch_size"] / seconds_per_step,
                train_seconds=epochs * steps_per_epoch * seconds_per_step, device="CPU", gradient_path="layerwise",
            )
        if kind == "pruned":
            attrs["prune_reason"] = f"pruned after epoch {len(history)}: validation accuracy is below what the pruner keeps"
            attrs.update(val_accuracy=history[-1]["val_accuracy"], epsilon_rdp=history[-1]["epsilon"])
        if kind == "failed":
            attrs["fail_reason"] = "TrainingError: the loss became NaN at step 12; lower the learning rate"
        state = {
            "complete": TrialState.COMPLETE, "running": TrialState.RUNNING,
            "failed": TrialState.FAIL, "pruned": TrialState.PRUNED,
        }[kind]
        multi = len(study.directions) > 1
        values = None
        if kind == "complete":
            values = [accuracy, epsilon, attrs["train_seconds"]][: len(study.directions)] if multi else [accuracy]
        trials.append(
            create_trial(
                state=state,
                values=values,
                params=params,
                distributions=DISTRIBUTIONS,
                user_attrs=attrs,
                intermediate_values={r["epoch"]: r["val_accuracy"] for r in history} if kind != "complete" or not multi else {},
            )
        )
        trials[-1].datetime_start = start + dt.timedelta(seconds=10 * index)
        if kind != "running":
            trials[-1].datetime_complete = start + dt.timedelta(seconds=10 * index + 8)
    study.add_trials(trials)
    return study


def make_study(
    storage: str | optuna.storages.BaseStorage,
    name: str,
    n_trials: int,
    *,
    mode: str = "budgeted",
    target_epsilon: float = 3.0,
    n_train: int = 1437,
    dataset_name: str = "digits",
    fingerprint: str = "0" * 64,
    workspace: str = "dptune-data",
    with_search_cost: bool = True,
    **kwargs: Any,
) -> optuna.Study:
    """Create a study with the documented study attrs and populate it."""
    from dptune.spec.search import SearchSpec

    directions = ["maximize", "minimize", "minimize"] if mode == "pareto" else ["maximize"]
    study = optuna.create_study(storage=storage, study_name=name, directions=directions, load_if_exists=False)
    spec = SearchSpec.from_dict({
        "mode": mode,
        "dataset": {"name": dataset_name, "builtin": dataset_name if dataset_name == "digits" else None,
                    "fingerprint": fingerprint, "n_train": n_train},
        "model": {"kind": "mlp", "hidden_units": [64]},
        "target_epsilon": target_epsilon,
        "n_trials": max(1, n_trials),
        "ranges": {"noise_multiplier": [0.5, 4.0]} if mode != "budgeted" else {},
        "pruner": "none" if mode != "budgeted" else "median",
        "study_name": name,
        "workspace": workspace,
    })
    study.set_user_attr("mode", mode)
    study.set_user_attr("search_spec", spec.to_dict())
    study.set_user_attr("n_trials_planned", n_trials + kwargs.get("running", 0) + kwargs.get("failed", 0)
                        + kwargs.get("pruned", 0))
    study.set_user_attr("dataset", {"name": dataset_name, "fingerprint": fingerprint, "n_train": n_train,
                                    "preprocessing": {"epsilon": 0.0, "delta": 0.0, "note": "synthetic study"}})
    study.set_user_attr("workspace", workspace)
    study.set_user_attr("target_epsilon", target_epsilon)
    study.set_user_attr("delta", 1.0 / n_train**1.1)
    populate_study(study, n_trials, n_train=n_train, **kwargs)
    if with_search_cost:
        # what the workers keep current after every trial (dptune.study.results.update_search_cost);
        # large synthetic studies get the cost of their first 40 trials (composing hundreds
        # of trials takes minutes), marked as such.
        from dptune.study.results import search_cost

        trials = study.get_trials(deepcopy=False)
        cost = search_cost(_FirstTrials(study, trials[:40])) if trials else None
        if cost is not None:
            if len(trials) > 40:
                cost["note"] = f"synthetic study: cost of the first 40 of {len(trials)} trials"
            study.set_user_attr("search_cost", cost)
    return study


class _FirstTrials:
    def __init__(self, study: optuna.Study, trials: list):
        self._study, self._trials = study, trials

    def get_trials(self, deepcopy: bool = True, states=None) -> list:
        return [t for t in self._trials if states is None or t.state in states]

    def __getattr__(self, name: str):
        return getattr(self._study, name)
