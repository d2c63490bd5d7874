"""The collaborative search (dptune.study.collaborative) on real DSSGD runs over the built-in
digits: every trial within the target, the charge of the whole search recomputed from the
trials' own configs, the best trial the most accurate, the export runnable, and what a
user gets wrong refused with nothing written."""

from __future__ import annotations

import math

import optuna
import pytest
import yaml

from dptune.cli import main
from dptune.errors import ConfigError, TrainingError
from dptune.privacy.collaborative import participant_privacy, search_charges
from dptune.spec.collaborative import collaborative_run_from_dict
from dptune.study import collaborative
from dptune.study.collaborative import (
    best_trial,
    collaborative_frame,
    directions,
    exported_run,
    trial_config,
    tune_collaborative,
)
from dptune.study.format import StudyRecord, TrialRecord

DP_SGD = {"kind": "dp_sgd", "noise_multiplier": 1.0, "l2_norm_clip": 1.0, "batch_size": 16}


def _run(workspace, search, privacy=None):
    collaborative = {"participants": 3, "rounds": 2, **({"privacy": privacy} if privacy else {})}
    return collaborative_run_from_dict({"dataset": {"builtin": "digits", "workspace": str(workspace)},
                                        "model": {"kind": "logreg"}, "delta": 1e-5,
                                        "collaborative": collaborative, "search": search})


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("collab-search")
    seen = []
    run = _run(workspace, {"trials": 3, "target_epsilon": 3.0, "study_name": "collab"}, DP_SGD)
    return run, tune_collaborative(run, on_trial=seen.append), seen


def test_every_trial_spends_at_most_the_target_and_is_recorded(tuned):
    run, tuning, seen = tuned
    assert [t.number for t in seen] == [0, 1, 2]
    frame = collaborative_frame(tuning.study)
    assert list(frame["state"]) == ["COMPLETE"] * 3
    for trial in tuning.study.trials:
        record = TrialRecord.of(trial)
        config = trial_config(trial)
        # the recorded worst ε is the accountant's for the config the trial ran, and within the target
        charges = participant_privacy(config, tuning.shard_sizes, record.collaborative["parameter_count"], 1e-5)
        assert record.epsilon == pytest.approx(max(c.epsilon for c in charges))
        assert record.epsilon <= 3.0 + 1e-6
        assert record.epsilon == pytest.approx(3.0, rel=0.01)
        assert 0.01 <= config.theta_upload <= 1 and 0.1 <= config.theta_download <= 1
        assert [h["round"] for h in record.history] == [1, 2]
        assert record.val_accuracy == record.history[-1]["val_accuracy"] == trial.values[0]
        assert record.collaborative["uploads_per_round"] == math.ceil(config.theta_upload * 650 - 1e-9)


def test_the_search_charge_composes_every_trial(tuned):
    _run_, tuning, _ = tuned
    summary = StudyRecord.of(tuning.study).collaborative
    configs = [trial_config(t) for t in tuning.study.trials]
    expected = search_charges(configs, tuning.shard_sizes, 650, 1e-5)
    assert [c["epsilon"] for c in summary["search_charges"]] == pytest.approx([c.epsilon for c in expected])
    assert all(c["epsilon"] > 3.0 for c in summary["search_charges"])  # three runs cost more than one


def test_baselines_and_best_trial(tuned):
    run, tuning, _ = tuned
    record = StudyRecord.of(tuning.study)
    baselines = record.collaborative["baselines"]
    assert record.is_collaborative and record.target_epsilon == 3.0
    assert len(baselines["standalone"]) == 3 and sum(tuning.shard_sizes) == record.dataset.n_train
    assert baselines["centralized"] > baselines["standalone_mean"]
    accuracies = {t.number: t.values[0] for t in tuning.study.trials}
    assert tuning.best == best_trial(tuning.study) == max(accuracies, key=accuracies.get)


def test_the_export_is_the_best_trials_run_without_a_search(tuned):
    run, tuning, _ = tuned
    exported = exported_run(tuning.study, tuning.best)
    assert exported.search is None and exported.dataset == run.dataset and exported.model == run.model
    assert exported.collaborative == trial_config(tuning.study.trials[tuning.best])
    assert collaborative_run_from_dict(exported.to_dict()) == exported


def test_pareto_has_three_objectives_with_privacy_and_two_without():
    run = _run("/unused", {"objective": "pareto"}, DP_SGD)
    assert directions(run.search, run.collaborative) == ["maximize", "minimize", "minimize"]
    plain = _run("/unused", {"objective": "pareto"})
    assert directions(plain.search, plain.collaborative) == ["maximize", "minimize"]


def test_a_taken_study_name_is_refused_before_anything_runs(tuned, tmp_path):
    run, tuning, _ = tuned
    trials_before = len(tuning.study.trials)
    with pytest.raises(ConfigError, match="a study named 'collab' already exists"):
        tune_collaborative(run)
    storage = tuning.study._storage
    assert len(optuna.load_study(study_name="collab", storage=storage).trials) == trials_before


def test_a_run_without_a_search_block_is_refused(tmp_path):
    run = collaborative_run_from_dict({"dataset": {"builtin": "digits"}, "model": {"kind": "logreg"},
                                       "collaborative": {"participants": 3}})
    with pytest.raises(ConfigError, match="no search block"):
        tune_collaborative(run, workspace=tmp_path)


def test_a_diverging_trial_is_recorded_as_failed_charged_and_the_search_goes_on(tmp_path, capsys, monkeypatch):
    """The first run diverges (as a too large learning rate makes it: the engine raises
    TrainingError); the search records it as failed with the reason, charges it (its
    participants uploaded before it stopped) and runs the next trial."""
    real_run = collaborative.run_collaborative
    calls = []

    def first_run_diverges(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TrainingError("the local training loss became nan; lower the learning rate")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(collaborative, "run_collaborative", first_run_diverges)
    values = {"dataset": {"builtin": "digits"}, "model": {"kind": "logreg"}, "delta": 1e-5,
              "collaborative": {"participants": 3, "rounds": 2, "privacy": DP_SGD},
              "search": {"trials": 2, "study_name": "diverges"}}
    config = tmp_path / "collab.yaml"
    config.write_text(yaml.safe_dump(values))
    assert main(["collab", "--config", str(config), "--search", "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="diverges", storage=f"sqlite:///{tmp_path / 'studies.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    assert TrialRecord.of(study.trials[0]).fail_reason == "the local training loss became nan; lower the learning rate"
    assert "trial 0 (" in out and "): fail (the local training loss became nan" in out
    assert "best trial within the target: trial 1 (" in out
    charges = StudyRecord.of(study).collaborative["search_charges"]
    sizes = tuple(c["n_train"] for c in charges)
    expected = search_charges([trial_config(t) for t in study.trials], sizes, 650, 1e-5)
    assert [c["epsilon"] for c in charges] == pytest.approx([c.epsilon for c in expected])
    assert "its 2 local DP-SGD runs composed" in charges[0]["note"]
