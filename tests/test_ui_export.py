"""Export page (AppTest): default trial, YAML preview that validates, download, command."""

import optuna
import yaml

from dptune.run_config import RunConfig
from dptune.ui.synthetic import make_study
from dptune.ui.testing import messages, open_page, storage_url

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_exports_the_best_trial_within_the_target(workspace):
    study = make_study(storage_url(workspace), "s", 12, failed=1, target_epsilon=3.0)
    within = [t for t in study.trials if t.state.name == "COMPLETE" and t.user_attrs["epsilon_rdp"] <= 3.0]
    best = max(within, key=lambda t: t.user_attrs["val_accuracy"])
    at = open_page(workspace, "export")
    assert not at.exception and not at.error, messages(at)
    assert at.selectbox(key="export-trial-s").value == best.number
    text = [c.value for c in at.code if c.language == "yaml"][0]
    values = yaml.safe_load(text)
    RunConfig.from_dict(values)  # validates: no unknown or missing keys
    assert values["l2_norm_clip"] == best.user_attrs["config"]["l2_norm_clip"]
    assert values["search"]["trial"] == best.number and values["search"]["study"] == "s"
    assert any("Validated" in s for s in messages(at)["success"])
    assert len(at.get("download_button")) == 1
    commands = [c.value for c in at.code if c.value.startswith("dptune train --config")]
    assert commands == [f"dptune train --config s-trial{best.number}.yaml"]
    assert (workspace / "exports" / f"s-trial{best.number}.yaml").read_text().strip() == text.strip()


def test_choosing_another_trial_changes_the_yaml(workspace):
    study = make_study(storage_url(workspace), "s", 6)
    at = open_page(workspace, "export")
    other = [t.number for t in study.trials if t.number != at.selectbox(key="export-trial-s").value][0]
    at.selectbox(key="export-trial-s").set_value(other).run()
    values = yaml.safe_load([c.value for c in at.code if c.language == "yaml"][0])
    assert values["search"]["trial"] == other


def test_no_trial_within_the_target_warns_and_still_exports_the_most_accurate(workspace):
    study = make_study(storage_url(workspace), "s", 4, target_epsilon=0.01)
    at = open_page(workspace, "export")
    assert not at.exception
    assert any("No finished trial is within the target" in w for w in messages(at)["warning"])
    best = max(study.trials, key=lambda t: t.user_attrs["val_accuracy"])
    assert at.selectbox(key="export-trial-s").value == best.number


def test_nothing_to_export_yet(workspace):
    make_study(storage_url(workspace), "s", 0, running=1)
    at = open_page(workspace, "export")
    assert not at.exception and not at.error
    assert any("nothing to export" in w for w in messages(at)["warning"])
