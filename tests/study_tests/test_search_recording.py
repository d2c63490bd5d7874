"""What a study records (fast: a scripted fake trainer on tiny data): failing trials with
their reason while the study goes on, pruned trials with the ε they spent, surplus trials,
stale trials of a dead worker, resuming, and the results readers."""

from __future__ import annotations

import datetime

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from search_helpers import TINY_MLP, fake_trainer, tiny_dataset

from dptune.errors import ConfigError
from dptune.spec.search import SearchSpec
from dptune.study.format import StudyRecord
from dptune.study.objective import SURPLUS_REASON
from dptune.study.results import (
    FRAME_COLUMNS,
    KILLED_REASON,
    best_trial_within,
    finished_trials,
    search_cost,
    trials_frame,
)
from dptune.study.search import create_study, load_study, open_storage, run_queued_trials, tune


def spec_for(tmp_path, **changes) -> SearchSpec:
    values = {
        "mode": "budgeted", "dataset": {"builtin": "digits"}, "model": TINY_MLP, "target_epsilon": 4.0,
        "n_trials": 4, "study_name": "s", "workspace": str(tmp_path / "ws"),
        "storage": f"sqlite:///{tmp_path / 'studies.db'}", "sampler_seed": 0, "heartbeat_seconds": 1,
        "ranges": {"batch_size": [16, 32], "epochs": [2, 3]},
    }
    values.update(changes)
    return SearchSpec.from_dict(values)


def test_failing_trials_are_recorded_and_the_study_goes_on(tmp_path):
    script = {0: "nan", 1: "oom", 2: "crash", 3: "ok"}
    trainer = fake_trainer(lambda i, config: script[i])
    outcome = tune(spec_for(tmp_path), dataset=tiny_dataset(), progress=False, train_fn=trainer)
    frame = trials_frame(outcome.study)
    assert list(frame.columns) == FRAME_COLUMNS
    frame = frame.set_index("number")
    assert list(frame["state"]) == ["FAIL", "FAIL", "FAIL", "COMPLETE"]
    assert "loss became nan at step 3" in frame.loc[0, "fail_reason"]
    assert frame.loc[1, "fail_reason"].startswith("out of memory") and "batch_size" in frame.loc[1, "fail_reason"]
    assert frame.loc[2, "fail_reason"].startswith("ValueError: something unexpected")
    assert pd.isna(frame.loc[3, "fail_reason"])
    # a failed trial is charged its whole planned run in the search cost
    assert frame.loc[0, "epsilon"] > 0
    cost = search_cost(outcome.study)
    assert cost["n_trials_charged"] == 4
    assert best_trial_within(outcome.study).number == 3


def test_pruned_trials_keep_history_and_the_epsilon_they_spent(tmp_path):
    trainer = fake_trainer(lambda i, config: "ok")
    spec = spec_for(tmp_path, pruner={"kind": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
                    ranges={"batch_size": [16, 32], "epochs": [3, 3], "learning_rate": [0.01, 1.0]}, n_trials=6)
    outcome = tune(spec, dataset=tiny_dataset(), progress=False, train_fn=trainer)
    pruned = outcome.study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "with a median pruner and accuracy growing with the learning rate, some trial is pruned"
    for trial in pruned:
        a = trial.user_attrs
        assert a["epochs_done"] < 3 and len(a["history"]) == a["epochs_done"]
        assert a["prune_reason"].startswith("pruned after epoch")
        # charged the steps it ran: less than the full run's ε
        assert a["epsilon_rdp"] == pytest.approx(a["history"][-1]["epsilon"], rel=1e-9)
        assert a["epsilon_rdp"] < a["epsilon_planned"]


def test_a_surplus_trial_trains_nothing(tmp_path):
    trainer = fake_trainer()
    spec = spec_for(tmp_path, n_trials=1)
    study, dataset = create_study(spec, dataset=tiny_dataset())
    spec = SearchSpec.from_dict(study.user_attrs["search_spec"])
    assert run_queued_trials(study, spec, dataset, train_fn=trainer) == 1
    # a second worker whose ask() found the queue empty gets a fresh trial: refused, not trained
    from dptune.study.objective import TrialFailed, make_objective

    study.optimize(make_objective(spec, dataset, delta=study.user_attrs["delta"], train_fn=trainer), n_trials=1,
                   catch=(TrialFailed,))
    assert trainer.calls["n"] == 1
    surplus = study.get_trials()[-1]
    assert surplus.state == TrialState.FAIL and surplus.user_attrs["fail_reason"] == SURPLUS_REASON
    assert len(finished_trials(study)) == 1 and search_cost(study)["n_trials_charged"] == 1


def test_a_dead_workers_trial_is_failed_and_retried(tmp_path):
    """A trial left RUNNING by a worker that died (no heartbeat since) is marked FAIL and
    re-queued by the next worker; the finished trials stay as they were."""
    trainer = fake_trainer()
    spec = spec_for(tmp_path, n_trials=3)
    study, dataset = create_study(spec, dataset=tiny_dataset())
    spec = SearchSpec.from_dict(study.user_attrs["search_spec"])
    run_queued_trials(study, spec, dataset, max_trials=1, train_fn=trainer)
    finished_before = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    # simulate a worker that took trial 1 and was killed: RUNNING with an old heartbeat
    storage = open_storage(spec.storage, heartbeat_seconds=1)
    dead = optuna.load_study(study_name="s", storage=storage)
    trial = dead.ask()
    trial.set_user_attr("history", [{"epoch": 1}])
    storage.record_heartbeat(trial._trial_id)
    old = datetime.datetime.now() - datetime.timedelta(seconds=60)
    from optuna.storages._rdb import models

    with storage.scoped_session() as session:
        session.query(models.TrialHeartbeatModel).update({"heartbeat": old})
        session.commit()
    assert trial.number == 1
    study, spec, dataset = load_study("s", spec.storage, heartbeat_seconds=1)
    ran = run_queued_trials(study, spec, dataset, train_fn=trainer)
    trials = {t.number: t for t in study.get_trials()}
    assert trials[1].state == TrialState.FAIL
    retry = [t for t in trials.values() if t.system_attrs.get("failed_trial") == 1]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].user_attrs["history"][0]["epoch"] == 1 and len(retry[0].user_attrs["history"]) > 0
    assert ran == 2  # the retry and the last planned trial
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    for number, values in finished_before.items():
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
    frame = trials_frame(study).set_index("number")
    assert frame.loc[1, "fail_reason"].startswith(KILLED_REASON) and "retried as trial" in frame.loc[1, "fail_reason"]
    assert len(finished_trials(study)) == 3  # the killed trial is replaced by its retry


def test_tune_resumes_a_study_and_refuses_a_different_spec(tmp_path):
    trainer = fake_trainer()
    spec = spec_for(tmp_path, n_trials=2)
    tune(spec, dataset=tiny_dataset(), progress=False, train_fn=trainer)
    again = tune(spec, dataset=tiny_dataset(), progress=False, train_fn=trainer)
    assert again.trials_run == 0 and len(again.study.trials) == 2
    with pytest.raises(ConfigError, match="study_name"):
        tune(spec.replace(target_epsilon=2.0), dataset=tiny_dataset(), progress=False, train_fn=trainer)


def test_load_study_errors(tmp_path):
    spec = spec_for(tmp_path)
    storage = spec.storage
    with pytest.raises(ConfigError, match="no study 'nope'"):
        load_study("nope", storage)
    optuna.create_study(study_name="plain", storage=storage)
    with pytest.raises(ConfigError, match="not created by dptune"):
        load_study("plain", storage)


def test_a_trial_whose_config_is_impossible_fails_alone(tmp_path):
    """A target ε no sigma reaches at the suggested batch size fails that trial, with the reason."""
    trainer = fake_trainer()
    outcome = tune(spec_for(tmp_path, target_epsilon=0.001, n_trials=2), dataset=tiny_dataset(), progress=False,
                   train_fn=trainer)
    frame = trials_frame(outcome.study)
    assert list(frame["state"]) == ["FAIL", "FAIL"] and trainer.calls["n"] == 0
    assert all(reason.startswith("no valid configuration") for reason in frame["fail_reason"])
    assert search_cost(outcome.study)["n_trials_charged"] == 0  # nothing trained


def test_a_clip_norm_chosen_privately_before_the_search_is_in_every_total(tmp_path):
    """clip_selection_epsilon (e.g. the dashboard's private histogram): budgeted trials are
    calibrated so that training composed with it meets the target, and the cost shows it."""
    trainer = fake_trainer()
    outcome = tune(spec_for(tmp_path, n_trials=2, clip_selection_epsilon=0.3), dataset=tiny_dataset(),
                   progress=False, train_fn=trainer)
    for trial in outcome.study.get_trials(states=(TrialState.COMPLETE,)):
        a = trial.user_attrs
        assert a["epsilon_rdp"] < a["epsilon_total"] <= 4.0
        assert a["epsilon_total"] >= 0.98 * 4.0
    cost = search_cost(outcome.study)
    assert cost["clip_selection_epsilon"] == 0.3
    from dptune.report.export import run_config_from_trial

    exported = run_config_from_trial(outcome.study, best_trial_within(outcome.study))
    assert exported.accountant["clip_norm_selection"]["epsilon"] == 0.3
    assert exported.accountant["epsilon_total"] > exported.epsilon


def test_clip_releases_stay_spent_in_recipe_mode_and_after_a_typed_c():
    """Histograms released before a search stay charged: in recipe mode beside the recipe's own
    release (the recipe's alone was charged before issue 8), and whichever C the search uses."""
    recipe_after_releases = {"recipe": {"clip": {"source": "private", "epsilon": 0.1}},
                             "search_spec": {"mode": "recipe", "clip_selection_epsilon": 0.2}}
    assert StudyRecord.from_attrs(recipe_after_releases).clip_epsilon == pytest.approx(0.3)
    typed_after_release = {"recipe": {"clip": {"source": "fixed", "epsilon": 0.0}},
                           "search_spec": {"mode": "recipe", "clip_selection_epsilon": 0.1}}
    assert StudyRecord.from_attrs(typed_after_release).clip_epsilon == pytest.approx(0.1)
    assert StudyRecord.from_attrs({"search_spec": {"mode": "budgeted"}}).clip_epsilon == 0.0


def test_a_config_that_crashes_fails_its_trial_with_the_reason(tmp_path, monkeypatch):
    """An internal error while choosing a trial's config fails that trial, not the worker."""
    from dptune.study.modes import BUDGETED

    def broken(*args, **kwargs):
        raise AttributeError("module 'dp_accounting' has no attribute 'RepeatAndSelectDpEvent'")

    monkeypatch.setattr(BUDGETED, "suggest_config", broken)
    outcome = tune(spec_for(tmp_path, n_trials=2), dataset=tiny_dataset(), progress=False, train_fn=fake_trainer())
    reasons = [t.user_attrs["fail_reason"] for t in outcome.study.trials]
    assert len(reasons) == 2 and all(r.startswith("internal error while choosing the configuration") for r in reasons)


def test_tune_resumes_from_the_spec_stored_in_the_study(tmp_path):
    """What the dashboard does for the recipe: write the study's own search_spec as YAML and
    run `dptune tune --config` on it; it resumes the same study."""
    import yaml

    from dptune.spec.search import load_search_spec

    trainer = fake_trainer()
    first = tune(spec_for(tmp_path, n_trials=2), dataset=tiny_dataset(), progress=False, train_fn=trainer)
    path = tmp_path / "stored.yaml"
    path.write_text(yaml.safe_dump(first.study.user_attrs["search_spec"], sort_keys=False))
    again = tune(load_search_spec(path), progress=False, train_fn=trainer)
    assert again.study.study_name == first.study.study_name and again.trials_run == 0


def test_a_restarted_seeded_worker_does_not_redraw_the_same_parameters(tmp_path):
    spec = spec_for(tmp_path, sampler="random")
    study, _ = create_study(spec, dataset=tiny_dataset())

    def first_draw():
        loaded, _, _ = load_study("s", spec.storage, load_dataset=False)
        trial = loaded.ask()
        value = trial.suggest_float("learning_rate", 0.01, 1.0, log=True)
        loaded.tell(trial, 0.5)
        return value

    assert first_draw() != first_draw()  # the same worker index, started again after a trial
