"""Export page (AppTest): default trial, YAML preview that validates, download, command."""

import optuna
import yaml
from synthetic_studies import make_study
from ui_testing import messages, open_page, storage_url

from dptune import privacy
from dptune.privacy.statement import format_epsilon
from dptune.spec.run import RunConfig

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

    # the numbers shown are the accountant's for this trial, rounded up, in the statement too
    config, attrs = best.user_attrs["config"], best.user_attrs
    training = privacy.compute_epsilon(values["dataset"]["n_train"], config["batch_size"],
                                       config["noise_multiplier"], steps=values["accountant"]["steps"],
                                       delta=attrs["delta"], microbatched=config["num_microbatches"]
                                       < config["batch_size"]).epsilon_rdp
    shown = {m.label: m.value for m in at.main.metric}
    assert shown["ε of this run (RDP)"] == format_epsilon(training)
    statement = [c.value for c in at.code if c.value.startswith("Privacy statement")]
    assert statement and f"training: ε = {format_epsilon(training, 4)} (RDP" in statement[0]
    assert statement[0] == values["privacy_statement"]["text"]


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


def test_the_page_and_dptune_export_pick_the_same_trial_when_a_clip_release_pushes_one_over(workspace):
    """Trial A's training ε is within the target but its total (with the clip-norm release) is
    not; the page must not preselect it (it filtered on training ε before issue 8)."""
    from dptune.report.export import choose_trial

    study = make_study(storage_url(workspace), "s", 4, target_epsilon=3.0)
    base = next(t for t in study.trials if t.state.name == "COMPLETE")
    numbers = {}
    for name, accuracy, training, total in (("A", 0.999, 2.9, 3.2), ("B", 0.998, 2.7, 2.8)):
        attrs = {**base.user_attrs, "val_accuracy": accuracy, "epsilon_rdp": training, "epsilon_total": total}
        study.add_trial(optuna.trial.create_trial(value=accuracy, params=base.params,
                                                  distributions=base.distributions, user_attrs=attrs))
        numbers[name] = study.trials[-1].number
    assert choose_trial(study).number == numbers["B"]
    at = open_page(workspace, "export")
    assert not at.exception, messages(at)
    assert at.selectbox(key="export-trial-s").value == numbers["B"]
