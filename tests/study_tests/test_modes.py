"""Search modes (dptune.study.modes): the registry, and what each mode asks of a trial."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import FixedTrial
from search_helpers import TINY_MLP, fake_trainer, tiny_dataset

from dptune import privacy
from dptune.errors import ConfigError
from dptune.spec import modes as spec_modes
from dptune.spec.search import SearchSpec
from dptune.study.format import StudyRecord
from dptune.study.modes import BUDGETED, MODES, PARETO, RECIPE, NoisePolicy, mode_for, study_mode
from dptune.study.search import create_study, tune

optuna.logging.set_verbosity(optuna.logging.WARNING)
N = 2000


def spec_for(tmp_path, mode: str, **values) -> SearchSpec:
    base = {"mode": mode, "dataset": {"builtin": "digits"}, "model": TINY_MLP, "target_epsilon": 2.0,
            "workspace": str(tmp_path / "ws"), "storage": f"sqlite:///{tmp_path / 'studies.db'}", "n_trials": 2}
    if mode == "pareto":
        base["pruner"] = "none"
    return SearchSpec.from_dict({**base, **values})


def test_the_registry_has_exactly_the_modes_the_yaml_accepts():
    assert list(MODES) == list(spec_modes.MODES)
    assert [mode_for(name).rules for name in spec_modes.MODES] == list(spec_modes.MODES.values())
    assert mode_for("pareto") is PARETO and study_mode(StudyRecord.from_attrs({"mode": "recipe"})) is RECIPE
    with pytest.raises(ConfigError, match=r"mode must be one of budgeted, pareto, recipe, got 'grid'"):
        mode_for("grid")
    with pytest.raises(ConfigError, match="got None"):
        study_mode(StudyRecord.from_attrs({}))


def test_each_mode_states_its_policies():
    assert (BUDGETED.noise_policy, PARETO.noise_policy, RECIPE.noise_policy) == tuple(NoisePolicy)
    assert [m.bounds_search_cost for m in (BUDGETED, PARETO, RECIPE)] == [True, False, False]
    assert [m.prunes for m in (BUDGETED, PARETO, RECIPE)] == [True, False, True]
    assert [m.phased for m in (BUDGETED, PARETO, RECIPE)] == [False, False, True]
    for mode in MODES.values():
        assert len(mode.directions) == len(mode.objective_names)


@pytest.mark.parametrize("mode", ["budgeted", "pareto"])
def test_a_study_stores_the_modes_string_directions_and_metric_names(tmp_path, mode):
    """The study format is unchanged: `mode` is the string an existing studies.db holds."""
    study, _ = create_study(spec_for(tmp_path, mode), dataset=tiny_dataset())
    assert study.user_attrs["mode"] == mode and study_mode(StudyRecord.of(study)) is mode_for(mode)
    names = {"maximize": optuna.study.StudyDirection.MAXIMIZE, "minimize": optuna.study.StudyDirection.MINIMIZE}
    assert study.directions == [names[d] for d in mode_for(mode).directions]
    assert study.metric_names == list(mode_for(mode).objective_names)
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 2  # not phased: queued now


def test_budgeted_sigma_is_calibrated_to_the_target(tmp_path):
    spec = spec_for(tmp_path, "budgeted", ranges={"num_microbatches": ["per_example"]})
    delta = privacy.default_delta(N)
    trial = FixedTrial({"l2_norm_clip": 1.0, "learning_rate": 0.1, "batch_size": 64, "epochs": 3})
    config = BUDGETED.suggest_config(trial, spec, N, delta)
    assert (config.batch_size, config.epochs, config.num_microbatches) == (64, 3, 64)
    assert config.noise_multiplier == pytest.approx(
        privacy.calibrate_noise_multiplier(2.0, N, 64, epochs=3, delta=delta), rel=1e-9)
    spent = privacy.compute_epsilon(N, 64, config.noise_multiplier, epochs=3, delta=delta, pld=False).epsilon_rdp
    assert 0.99 * 2.0 <= spent <= 2.0


def test_pareto_searches_sigma_and_reports_the_total_epsilon(tmp_path):
    spec = spec_for(tmp_path, "pareto", ranges={"noise_multiplier": [0.5, 5.0], "num_microbatches": [8]})
    trial = FixedTrial({"l2_norm_clip": 1.0, "learning_rate": 0.1, "batch_size": 64, "epochs": 3,
                        "noise_multiplier": 1.7})
    config = PARETO.suggest_config(trial, spec, N, 1e-5)
    assert config.noise_multiplier == 1.7 and config.num_microbatches == 8
    result = SimpleNamespace(val_accuracy=0.8, epsilon_rdp=1.0, train_seconds=3.0)
    with_clip = SimpleNamespace(user_attrs={"epsilon_total": 1.25})
    assert PARETO.objective_value(result, with_clip) == (0.8, 1.25, 3.0)
    assert PARETO.objective_value(result, SimpleNamespace(user_attrs={})) == (0.8, 1.0, 3.0)


def test_the_recipe_takes_c_from_the_study_and_searches_sigma_at_m_1(tmp_path):
    spec = spec_for(tmp_path, "recipe", recipe={"batch_size": 32, "epochs": 2})
    trial = FixedTrial({"noise_multiplier": 0.05, "learning_rate": 0.3})
    trial.study = SimpleNamespace(user_attrs={"recipe": {"clip": {"l2_norm_clip": 2.5}}})
    config = RECIPE.suggest_config(trial, spec, N, 1e-5)
    assert (config.l2_norm_clip, config.noise_multiplier, config.num_microbatches) == (2.5, 0.05, 1)
    assert (config.batch_size, config.epochs, config.learning_rate) == (32, 2, 0.3)
    assert RECIPE.objective_value(SimpleNamespace(config=config), trial) == 0.05


def test_no_pareto_trial_spends_more_than_the_cap(tmp_path):
    """A σ range reaching down to 0.05 would let trials spend ε in the hundreds; the cap
    (default 3 × target = 6) raises the low end of σ per trial, so none plans more."""
    spec = spec_for(tmp_path, "pareto", n_trials=6, sampler="tpe", sampler_seed=0, clip_selection_epsilon=0.1,
                    ranges={"noise_multiplier": [0.05, 5.0], "batch_size": [64, 128], "epochs": [1, 3],
                            "num_microbatches": [8, "per_example"]})
    assert spec.trial_epsilon_cap == 6.0
    outcome = tune(spec, dataset=tiny_dataset(N), progress=False, train_fn=fake_trainer())
    trials = outcome.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 6
    raised = 0
    for trial in trials:
        config, delta = trial.user_attrs["config"], trial.user_attrs["delta"]
        assert trial.user_attrs["epsilon_planned"] <= 6.0
        assert trial.user_attrs["epsilon_total"] <= 6.0 and trial.values[1] <= 6.0  # with the clip releases
        microbatched = config["num_microbatches"] < config["batch_size"]
        at_low_end = privacy.compute_epsilon(N, config["batch_size"], 0.05, epochs=config["epochs"], delta=delta,
                                             microbatched=microbatched, pld=False).epsilon_rdp
        raised += at_low_end > 6.0 and config["noise_multiplier"] > 0.05
    assert raised == len(trials)  # without the cap every one of them could have spent more


def test_the_cap_wins_over_the_sigma_range(tmp_path):
    """When even the top of the σ range spends more than the cap, σ is the cap's σ."""
    spec = spec_for(tmp_path, "pareto", max_trial_epsilon=2.5,
                    ranges={"noise_multiplier": [0.1, 0.2], "num_microbatches": ["per_example"]})
    fixed = {"l2_norm_clip": 1.0, "learning_rate": 0.1, "batch_size": 128, "epochs": 5}
    study = optuna.create_study(directions=PARETO.directions)
    study.enqueue_trial(fixed)
    config = PARETO.suggest_config(study.ask(), spec, N, 1e-5)
    expected = privacy.calibrate_noise_multiplier(2.5, N, 128, epochs=5, delta=1e-5)
    assert config.noise_multiplier == pytest.approx(expected, rel=1e-9) and config.noise_multiplier > 0.2
    spent = privacy.compute_epsilon(N, 128, config.noise_multiplier, epochs=5, delta=1e-5, pld=False).epsilon_rdp
    assert 0.99 * 2.5 <= spent <= 2.5
