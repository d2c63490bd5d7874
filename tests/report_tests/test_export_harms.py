"""The exported run YAML carries the trial's attack and fairness measurements (issue 12 item 4)."""

import numpy as np
import optuna
from optuna.trial import create_trial
from synthetic_studies import make_study

from dptune.evaluation.fairness import fairness_report
from dptune.evaluation.membership import membership_report
from dptune.report.export import run_config_from_trial
from dptune.spec.run import load_run_config

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _reports(rng):
    def side(n, boost):
        labels = rng.integers(0, 2, n)
        logits = rng.normal(size=(n, 2))
        logits[np.arange(n), labels] += boost
        return np.log(np.exp(logits).sum(1)) - logits[np.arange(n), labels], logits, labels

    train, val = side(300, 3.0), side(200, 1.0)
    groups = np.where(rng.random(200) < 0.2, "minority", "majority")
    fairness = fairness_report(val[2], val[1].argmax(1), ("no", "yes"), groups, sensitive_name="site")
    return fairness.to_dict(), membership_report(train, val, ("no", "yes"), delta=1e-5, rng=rng).to_dict()


def test_the_run_yaml_summarises_the_attacks_and_the_groups_and_loads_back(tmp_path):
    fairness, membership = _reports(np.random.default_rng(0))
    source = make_study(optuna.storages.InMemoryStorage(), "src", 1, target_epsilon=100.0)
    study = make_study(optuna.storages.InMemoryStorage(), "s", 0, target_epsilon=100.0)
    trial = next(t for t in source.trials if t.state.name == "COMPLETE")
    study.add_trial(create_trial(state=trial.state, values=trial.values, params=trial.params,
                                 distributions=trial.distributions,
                                 user_attrs={**trial.user_attrs, "fairness": fairness, "membership": membership,
                                             "within_fairness_limit": True}))
    exported = run_config_from_trial(study, study.trials[0])
    path = exported.dump(tmp_path / "run.yaml")
    metrics = load_run_config(path).metrics
    for attack in membership["attacks"]:
        assert metrics["membership"][attack["attack"]]["auc"] == attack["auc"]
        assert metrics["membership"][attack["attack"]]["epsilon_lower_bound"] == attack["epsilon_lower_bound"]
    assert metrics["membership"]["rows_per_side"] == membership["per_side"]
    sizes = {g["group"]: g["size"] for g in fairness["groups"]}
    assert {name: g["size"] for name, g in metrics["fairness"]["groups"].items()} == sizes
    assert sum(sizes.values()) == 200
    assert metrics["fairness"]["worst_group_accuracy"] == min(g["accuracy"] for g in fairness["groups"])
    assert metrics["fairness"]["rows"] == "validation" and metrics["within_fairness_limit"] is True


def test_a_trial_without_measurements_exports_none():
    study = make_study(optuna.storages.InMemoryStorage(), "s", 2, target_epsilon=100.0)
    trial = next(t for t in study.trials if t.state.name == "COMPLETE")
    metrics = run_config_from_trial(study, trial).metrics
    assert "membership" not in metrics and "fairness" not in metrics and "within_fairness_limit" not in metrics
