"""Trade-offs page (AppTest) of a collaborative search made by real DSSGD runs: the baselines,
the best trial's accuracy and ε, the three figures, one trial's participants and its YAML;
the other pages do not offer the collaborative study."""

import pandas as pd
import pytest
from ui_testing import messages, open_page

from dptune.privacy.statement import format_epsilon
from dptune.spec.collaborative import collaborative_run_from_dict
from dptune.study.collaborative import tune_collaborative
from dptune.study.format import StudyRecord, TrialRecord


@pytest.fixture
def collaborative_study(workspace):
    run = collaborative_run_from_dict({
        "dataset": {"builtin": "digits"}, "model": {"kind": "logreg"}, "delta": 1e-5,
        "collaborative": {"participants": 3, "rounds": 2, "privacy": {
            "kind": "dp_sgd", "noise_multiplier": 1.0, "l2_norm_clip": 1.0, "batch_size": 16}},
        "search": {"trials": 3, "target_epsilon": 3.0, "study_name": "collab"}})
    return tune_collaborative(run, workspace=workspace)


def test_tradeoffs_shows_the_numbers_of_a_collaborative_search(workspace, collaborative_study):
    at = open_page(workspace, "tradeoffs")
    assert not at.exception and not at.error, messages(at)
    study = collaborative_study.study
    record = StudyRecord.of(study)
    baselines = record.collaborative["baselines"]
    best = study.trials[collaborative_study.best]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Centralized accuracy"] == f"{baselines['centralized']:.4f}"
    assert metrics["Standalone accuracy (mean)"] == f"{baselines['standalone_mean']:.4f}"
    assert metrics[f"Best collaborative accuracy (trial {best.number})"] == f"{best.values[0]:.4f}"
    assert metrics[f"Worst participant's ε (trial {best.number})"] == format_epsilon(TrialRecord.of(best).epsilon)
    assert len(at.get("plotly_chart")) == 3
    assert at.selectbox(key="collab-trial-collab").value == best.number
    participants = at.dataframe[0].value
    assert list(participants["n_train"]) == list(collaborative_study.shard_sizes)
    table = at.dataframe[1].value
    assert sorted(table["number"]) == [0, 1, 2]
    assert table.set_index("number").loc[best.number, "accuracy"] == pytest.approx(best.values[0])
    captions = " ".join(c.value for c in at.caption)
    worst = max(c["epsilon"] for c in record.collaborative["search_charges"])
    assert f"up to ε = {format_epsilon(worst)}" in captions
    assert "does not cover the baselines" in captions and "validation rows" in captions


def test_choosing_another_trial_shows_its_participants(workspace, collaborative_study):
    at = open_page(workspace, "tradeoffs")
    other = next(t.number for t in collaborative_study.study.trials if t.number != collaborative_study.best)
    at.selectbox(key="collab-trial-collab").set_value(other).run()
    assert not at.exception, messages(at)
    # the YAML's content is exported_run's (tests/study_tests/test_collaborative_tuning.py); here, its name
    assert at.get("download_button")[0].proto.label == "Download this trial's YAML"
    shown = at.dataframe[0].value
    trial = TrialRecord.of(collaborative_study.study.trials[other]).collaborative
    assert list(shown["bytes_per_round"]) == pytest.approx([p["bytes_per_round"] for p in trial["participants"]])
    assert isinstance(shown, pd.DataFrame)


def test_the_export_page_does_not_offer_a_collaborative_study(workspace, collaborative_study):
    at = open_page(workspace, "export")
    assert not at.exception and not at.error, messages(at)
    assert any("No study yet" in i for i in messages(at)["info"])


def test_the_other_pages_work_after_the_collaborative_study_was_chosen(workspace, collaborative_study):
    at = open_page(workspace, "tradeoffs")  # makes it the current study
    for page in ("search", "export", "data"):
        at.switch_page(f"pages/{page}.py").run()
        assert not at.exception and not at.error, (page, messages(at))
