"""A search with a fairness_limit (dptune.spec.fairness): every finished trial is held to it, a
trial over it is marked and never chosen, and the sampler is told (an Optuna constraint)."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from search_helpers import TINY_MLP

from dptune.data.dataset import Dataset
from dptune.errors import ConfigError
from dptune.report import plots
from dptune.spec.fairness import FairnessLimit
from dptune.spec.search import SearchSpec
from dptune.study.format import TrialRecord
from dptune.study.objective import FAIRNESS_CONSTRAINT
from dptune.study.results import best_trial_within, trials_frame
from dptune.study.search import create_study, run_queued_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)


def grouped_dataset(n_train: int = 600, n_val: int = 300, seed: int = 0) -> Dataset:
    """Two classes; a 20 % minority group whose label depends on another feature, so a model
    fitted to the majority is worse on it (a real gap to measure)."""
    rng = np.random.default_rng(seed)
    n = n_train + n_val
    x = rng.normal(size=(n, 6)).astype(np.float32)
    group = np.where(rng.random(n) < 0.2, "minority", "majority")
    y = np.where(group == "minority", x[:, 1] > 0, x[:, 0] > 0).astype(np.int32)
    return Dataset("grouped", x[:n_train], y[:n_train], x[n_train:], y[n_train:], ("no", "yes"),
                   sensitive_train=group[:n_train], sensitive_val=group[n_train:], sensitive_name="group")


GROUPED = grouped_dataset()


def spec(tmp_path, **changes) -> SearchSpec:
    values = {"mode": "budgeted", "dataset": {"name": "grouped", "fingerprint": GROUPED.fingerprint, "n_train": 600}, "model": TINY_MLP, "target_epsilon": 8.0,
              "n_trials": 3, "study_name": "fair", "workspace": str(tmp_path / "ws"), "sampler_seed": 0,
              "storage": f"sqlite:///{tmp_path / 'studies.db'}", "pruner": "none",
              "ranges": {"batch_size": [64, 64], "epochs": [2, 2]},
              "fairness_limit": {"metric": "worst_group_accuracy", "limit": 0.6}}
    return SearchSpec.from_dict({**values, **changes})


def test_each_trial_records_its_distance_to_the_limit_and_tells_the_sampler(tmp_path):
    study, dataset = create_study(spec(tmp_path), dataset=GROUPED)
    assert run_queued_trials(study, spec(tmp_path), dataset) == 3
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        record = TrialRecord.of(trial)
        worst = min(group["accuracy"] for group in record.fairness["groups"])  # from the per-group table
        assert record.fairness_violation == pytest.approx(0.6 - worst)
        assert record.within_fairness_limit is (worst >= 0.6)
        assert trial.system_attrs[f"constraints:{FAIRNESS_CONSTRAINT}"] == pytest.approx(0.6 - worst)
    assert SearchSpec.from_dict(study.user_attrs["search_spec"]).fairness_limit == FairnessLimit(
        "worst_group_accuracy", 0.6)


def test_a_trial_over_the_limit_is_never_chosen_by_the_cli_or_the_pages():
    study = optuna.create_study(directions=["maximize"])
    for number, (accuracy, epsilon, within) in enumerate([(0.95, 1.0, False), (0.90, 1.0, True), (0.99, 5.0, True)]):
        study.add_trial(optuna.trial.create_trial(
            value=accuracy, user_attrs={"val_accuracy": accuracy, "epsilon_rdp": epsilon, "config": {},
                                        "within_fairness_limit": within, "fairness_violation": 0.1 if not within else -0.1},
        ))
    chosen = best_trial_within(study, 2.0)
    assert chosen.number == 1  # trial 0 is more accurate but over the fairness limit; trial 2 over the ε target
    assert plots.best_within_budget(trials_frame(study), 2.0) == 1
    assert trials_frame(study)["within_fairness_limit"].tolist() == [False, True, True]


@pytest.mark.parametrize(("changes", "message"), [
    ({"fairness_limit": {"metric": "parity", "limit": 0.1}}, "fairness_limit.metric must be one of"),
    ({"fairness_limit": {"metric": "accuracy_difference", "limit": 2}}, r"fairness_limit.limit must be a number in \[0, 1\]"),
    ({"fairness_limit": {"metric": "accuracy_difference"}}, "limit"),
    ({"mode": "recipe", "ranges": {}}, "fairness_limit: not used in recipe mode"),
])
def test_a_bad_fairness_limit_is_refused_with_its_reason(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        spec(tmp_path, **changes)


def test_a_limit_on_a_dataset_without_groups_is_refused_before_anything_is_written(tmp_path):
    plain = Dataset(GROUPED.name, GROUPED.x_train, GROUPED.y_train, GROUPED.x_val, GROUPED.y_val, GROUPED.class_names)
    with pytest.raises(ConfigError, match="has no sensitive attribute"):
        create_study(spec(tmp_path), dataset=plain)
    assert not (tmp_path / "studies.db").exists() and not (tmp_path / "ws").exists()
