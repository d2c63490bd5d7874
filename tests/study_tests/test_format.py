"""The study format (dptune.study.format): typed records over Optuna's user attributes."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import optuna
import pytest

from dptune.study.format import StudyRecord, TrialRecord, trial_attrs, write_study, write_trial

INTERFACES = Path(__file__).resolve().parents[2] / "docs" / "INTERFACES.md"


def _documented(label: str) -> set[str]:
    """The backquoted names of the INTERFACES.md paragraph that starts with `label`."""
    text = INTERFACES.read_text(encoding="utf-8")
    paragraph = text[text.index(label):].split("\n\n", 1)[0]
    return set(re.findall(r"`([a-z_]+)`", paragraph))


def test_interfaces_md_lists_exactly_the_records_fields():
    study_fields = {f.name for f in fields(StudyRecord)} | {"name", "fingerprint", "n_train", "preprocessing"}
    assert _documented("Study attrs:") == study_fields
    trial_fields = {f.name for f in fields(TrialRecord)} | {"failed_trial"}
    assert _documented("Trial attrs:") == trial_fields


def test_an_old_study_without_the_newer_attributes_reads_with_defaults():
    """A study written before `search_cost`, `recipe`, `preprocessing` were recorded still loads."""
    old = {"mode": "budgeted", "search_spec": {"mode": "budgeted"}, "dataset": {"name": "d", "fingerprint": "ab",
           "n_train": 100}, "workspace": "/w", "target_epsilon": 2.0, "delta": 1e-5}
    record = StudyRecord.from_attrs(old)
    assert (record.mode, record.n_train, record.target_epsilon, record.delta) == ("budgeted", 100, 2.0, 1e-5)
    assert record.dataset.preprocessing is None and record.search_cost is None and record.clip_epsilon == 0.0
    assert record.n_trials_planned == 0 and record.is_dptune
    assert not StudyRecord.from_attrs({}).is_dptune


def test_records_round_trip_through_a_real_storage():
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage())
    write_study(study, mode="pareto", search_spec={"mode": "pareto"}, n_trials_planned=3,
                ui_clip_selection={"epsilon_spent": 0.25})
    record = StudyRecord.of(study)
    assert (record.mode, record.n_trials_planned, record.clip_epsilon) == ("pareto", 3, 0.25)

    study.enqueue_trial({}, user_attrs=trial_attrs(phase="search"))
    trial = study.ask()
    write_trial(trial, epsilon_rdp=float("inf"), val_accuracy=0.75, history=[{"epoch": 1, "val_accuracy": 0.5}])
    study.tell(trial, 0.75)
    frozen = study.trials[0]
    record = TrialRecord.of(frozen)
    assert record.is_planned and record.phase == "search"
    assert record.epsilon_rdp is None  # inf is not JSON: stored as None
    assert record.accuracy == 0.75 and record.last_epoch == {"epoch": 1, "val_accuracy": 0.5}
    assert frozen.user_attrs["val_accuracy"] == 0.75  # the stored key is the field's name


def test_a_trial_without_its_final_accuracy_reads_the_last_epoch():
    study = optuna.create_study()
    trial = study.ask()
    write_trial(trial, history=[{"val_accuracy": 0.4}, {"val_accuracy": 0.6}])
    assert TrialRecord.of(trial).accuracy == 0.6 and TrialRecord.of(trial).val_accuracy is None


def test_epsilon_is_the_total_when_recorded_else_the_training_run():
    assert TrialRecord(epsilon_rdp=1.0).epsilon == 1.0
    assert TrialRecord(epsilon_rdp=1.0, epsilon_total=1.2).epsilon == 1.2
    assert TrialRecord().epsilon is None


@pytest.mark.parametrize("write", [
    lambda study, trial: write_study(study, target_epsilonn=1.0),
    lambda study, trial: write_trial(trial, val_acc=0.5),
    lambda study, trial: write_trial(trial, retry_of=3),  # Optuna's own link, not ours to write
])
def test_a_misspelt_attribute_name_fails_instead_of_writing_an_unread_attribute(write):
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(TypeError, match="has no field"):
        write(study, trial)
    assert study.user_attrs == {} and trial.user_attrs == {}
