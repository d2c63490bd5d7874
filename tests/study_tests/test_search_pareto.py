"""Pareto mode end to end on sklearn digits: three objectives (accuracy up, ε down, time
down), the Pareto front, export of the best trial within the target ε, reproduction."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from search_helpers import TINY_MLP, end_to_end

from dptune.study.results import pareto_front, trials_frame

TARGET = 3.0


def test_pareto_search_on_digits(tmp_path, capsys):
    out = end_to_end(tmp_path, capsys, {
        "mode": "pareto", "dataset": {"builtin": "digits"}, "model": TINY_MLP, "target_epsilon": TARGET,
        "n_trials": 3, "study_name": "pareto", "sampler_seed": 0,
        "ranges": {"batch_size": [32, 96], "epochs": [1, 2], "noise_multiplier": [1.0, 3.0],
                   "learning_rate": [0.1, 1.0], "num_microbatches": [8, "per_example"]},
    })
    study, best = out["study"], out["best"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val_accuracy", "epsilon", "train_seconds"]
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3
    for trial in trials:
        accuracy, epsilon, seconds = trial.values
        assert accuracy == trial.user_attrs["val_accuracy"]
        assert epsilon == trial.user_attrs["epsilon_rdp"] and seconds == trial.user_attrs["train_seconds"]
        config = trial.user_attrs["config"]
        if config["num_microbatches"] < config["batch_size"]:
            # microbatched: charged sigma/2, so more ε than per-example at the same sigma
            from dptune import privacy

            n = study.user_attrs["dataset"]["n_train"]
            per_example = privacy.compute_epsilon(n, config["batch_size"], config["noise_multiplier"],
                                                  epochs=config["epochs"], delta=study.user_attrs["delta"], pld=False)
            assert epsilon > per_example.epsilon_rdp
    front = pareto_front(study)
    assert front and {t.number for t in front} <= {t.number for t in trials}
    frame = trials_frame(study)
    assert frame["epsilon"].notna().all() and frame["train_seconds"].notna().all()
    assert best.user_attrs["epsilon_rdp"] <= TARGET
    assert best.user_attrs["val_accuracy"] == max(
        t.user_attrs["val_accuracy"] for t in trials if t.user_attrs["epsilon_rdp"] <= TARGET)
    assert "reproduces the recorded value exactly" in out["train_output"]
    assert out["train_epsilon"] == pytest.approx(out["exported"].epsilon, abs=1e-4)
    assert out["train_epsilon"] >= out["exported"].epsilon  # shown rounded up
    # fresh secret noise: the retrained accuracy is another draw of the same run (a few epochs of a
    # tiny MLP vary by ±0.1); it must land in the same range
    assert abs(out["train_accuracy"] - best.user_attrs["val_accuracy"]) <= 0.25
