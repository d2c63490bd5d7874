"""Budgeted mode end to end on sklearn digits: sigma calibrated per trial to the target ε;
tune -> export -> train --config reproduces ε exactly and the accuracy."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState
from search_helpers import TINY_MLP, end_to_end

from dptune import privacy
from dptune.study.results import search_cost, trials_frame

TARGET = 3.0


def test_budgeted_search_on_digits(tmp_path, capsys):
    out = end_to_end(tmp_path, capsys, {
        "mode": "budgeted", "dataset": {"builtin": "digits"}, "model": TINY_MLP, "target_epsilon": TARGET,
        "n_trials": 3, "study_name": "budgeted", "sampler_seed": 0,
        "ranges": {"batch_size": [32, 128], "epochs": [1, 2], "learning_rate": [0.1, 1.0]},
        "pruner": {"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    })
    study, best, exported = out["study"], out["best"], out["exported"]
    frame = trials_frame(study)
    assert len(frame) == 3 and set(frame["state"]) <= {"COMPLETE", "PRUNED"}
    n = study.user_attrs["dataset"]["n_train"]
    delta = study.user_attrs["delta"]
    assert delta == pytest.approx(privacy.default_delta(n))
    for trial in study.get_trials(states=(TrialState.COMPLETE,)):
        a = trial.user_attrs
        # calibrated: within 1 % of the target and never above
        assert 0.99 * TARGET <= a["epsilon_rdp"] <= TARGET
        assert a["epsilon_pld"] < a["epsilon_rdp"]
        assert a["epsilon_planned"] == pytest.approx(a["epsilon_rdp"])
        assert len(a["history"]) == a["epochs_done"] == a["config"]["epochs"]
        assert [h["epoch"] for h in a["history"]] == list(range(1, a["epochs_done"] + 1))
        assert a["history"][-1]["epsilon"] == pytest.approx(a["epsilon_rdp"])
        assert a["device"] == "CPU" or a["device"].startswith("GPU")
        assert a["seconds_per_step"] > 0 and a["examples_per_second"] > 0 and a["train_seconds"] > 0
        assert trial.intermediate_values  # per-epoch accuracy reported for the pruner
    # the best trial respects the target; the export is that trial
    assert best.user_attrs["epsilon_rdp"] <= TARGET
    assert exported.search["trial"] == best.number and exported.epsilon == best.user_attrs["epsilon_rdp"]
    assert exported.dataset.fingerprint == study.user_attrs["dataset"]["fingerprint"]
    # train --config: the same ε exactly, the same accuracy within noise (fresh secret noise)
    assert "reproduces the recorded value exactly" in out["train_output"]
    assert out["train_epsilon"] == pytest.approx(exported.epsilon, abs=1e-4)
    assert out["train_epsilon"] >= exported.epsilon  # shown rounded up
    # fresh secret noise: the retrained accuracy is another draw of the same run (a few epochs of a
    # tiny MLP vary by ±0.1); it must land in the same range
    assert abs(out["train_accuracy"] - best.user_attrs["val_accuracy"]) <= 0.25
    # the search's own cost is reported beside the per-trial ε, and is larger
    cost = search_cost(study)
    assert cost["per_trial_epsilon_max"] <= TARGET < cost["naive_composition_epsilon"]
    assert cost["repeat_and_select_epsilon"] is None  # a fixed number of trials
    assert study.user_attrs["search_cost"]["n_trials_charged"] == 3
    assert "releasing every trial" in out["tune_output"]
    assert exported.search["tuning_cost"]["naive_composition_epsilon"] == pytest.approx(cost["naive_composition_epsilon"])


def test_budgeted_search_within_a_budget_that_includes_the_search(tmp_path, capsys, monkeypatch):
    """A random number of trials (truncated negative binomial) and epsilon_includes_search_cost:
    every trial gets more noise, so that releasing the selected trial costs at most the target."""
    from dptune.spec.trial_count import TrialCount

    monkeypatch.setattr(TrialCount, "draw", lambda self, rng=None: 2)  # the draw itself is tested elsewhere
    out = end_to_end(tmp_path, capsys, {
        "mode": "budgeted", "dataset": {"builtin": "digits"}, "model": TINY_MLP, "target_epsilon": TARGET,
        "n_trials": {"distribution": "truncated_negative_binomial", "mean": 3, "shape": 1},
        "epsilon_includes_search_cost": True, "sampler": "random", "pruner": "none", "study_name": "with-cost",
        "sampler_seed": 1, "ranges": {"batch_size": 64, "epochs": 2, "num_microbatches": [16, "per_example"]},
    })
    study = out["study"]
    assert study.user_attrs["n_trials_planned"] == 2
    cost = search_cost(study)
    assert cost["repeat_and_select_epsilon"] is not None
    assert 0.98 * TARGET <= cost["repeat_and_select_epsilon"] <= TARGET
    assert cost["selected_release_epsilon"] <= TARGET
    assert cost["per_trial_epsilon_max"] < 0.8 * TARGET  # each trial had to spend less
    assert out["best"].user_attrs["epsilon_rdp"] < TARGET
    assert "releasing only the selected trial" in out["tune_output"]
    assert "reproduces the recorded value exactly" in out["train_output"]
    # fresh secret noise: the retrained accuracy is another draw of the same run (a few epochs of a
    # tiny MLP vary by ±0.1); it must land in the same range
    assert abs(out["train_accuracy"] - out["best"].user_attrs["val_accuracy"]) <= 0.25
