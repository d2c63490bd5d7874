"""A finished trial records its fairness and membership-inference reports in the study."""

import numpy as np
import optuna

from dptune.data.dataset import Dataset
from dptune.spec.config import DPSGDConfig, ModelSpec
from dptune.study.format import TrialRecord
from dptune.study.objective import run_trial


def test_a_finished_trial_records_fairness_per_group_and_both_attacks():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=600) > 0).astype(int)
    group = np.where(rng.random(600) < 0.15, "minority", "majority")
    dataset = Dataset(name="grouped", x_train=x[:450], y_train=y[:450], x_val=x[450:], y_val=y[450:],
                      class_names=("no", "yes"), sensitive_train=group[:450], sensitive_val=group[450:],
                      sensitive_name="group")
    config = DPSGDConfig(l2_norm_clip=1.0, noise_multiplier=1.0, num_microbatches=50, batch_size=50, epochs=2,
                         learning_rate=0.5)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    run_trial(trial, dataset, ModelSpec(kind="logreg"), config, delta=1e-5, phase="search", prune=False)
    study.tell(trial, 0.0)
    record = TrialRecord.of(study.trials[0])
    groups = {g["group"]: g for g in record.fairness["groups"]}
    assert set(groups) == {"majority", "minority"}
    assert sum(g["size"] for g in groups.values()) == 150
    assert record.fairness["rows"] == "validation" and record.fairness["sensitive_name"] == "group"
    assert record.fairness["worst_group_accuracy"] == min(g["accuracy"] for g in groups.values())
    attacks = {a["attack"]: a for a in record.membership["attacks"]}
    assert set(attacks) == {"loss_threshold", "logistic_regression"}
    assert all(a["members"] == a["non_members"] == 150 for a in attacks.values())
    assert record.evaluation_seconds > 0 and record.evaluation_error is None
