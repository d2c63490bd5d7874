"""Trade-offs page (AppTest): the plots, their ε captions, choosing a trial."""

import base64
import json

import numpy as np
import optuna
from synthetic_studies import make_study
from ui_testing import messages, open_page, storage_url

from dptune.privacy.statement import format_epsilon

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_no_study_yet_says_where_to_start(workspace):
    at = open_page(workspace, "tradeoffs")
    assert not at.exception and not at.error
    assert any("No study yet" in i for i in messages(at)["info"])


def test_plots_and_captions(workspace):
    make_study(storage_url(workspace), "s", 25, running=1, failed=1, target_epsilon=3.0)
    at = open_page(workspace, "tradeoffs")
    assert not at.exception and not at.error, messages(at)
    assert len(at.get("plotly_chart")) == 3  # pareto, the trial's curves, ε vs steps (the open tab)
    captions = " ".join(c.value for c in at.caption)
    assert "ε is per trial" in captions and "ε including the search" in captions
    assert "ε per trial against DP-SGD steps" in captions
    expected = {"Accuracy per epoch": "Validation accuracy after each epoch",
                "Parallel coordinates": "One line per finished trial", "Importances": "PED-ANOVA",
                "Speed vs m": "examples per second"}
    for label, caption in expected.items():
        at.session_state["trade-tabs"] = label
        at.run()
        assert not at.exception and not at.error, messages(at)
        assert len(at.get("plotly_chart")) == 3, label
        assert caption in " ".join(c.value for c in at.caption), label
    best = at.selectbox(key="trade-trial-s").value
    assert "best within target ε" in at.selectbox(key="trade-trial-s").format_func(best)


def test_choosing_a_trial_shows_it(workspace):
    study = make_study(storage_url(workspace), "s", 10, target_epsilon=100.0)
    at = open_page(workspace, "tradeoffs")
    other = [t.number for t in study.trials if t.number != at.selectbox(key="trade-trial-s").value][0]
    at.selectbox(key="trade-trial-s").set_value(other).run()
    assert not at.exception
    assert any(f"Trial {other}" in m.value for m in at.markdown)
    attrs = study.trials[other].user_attrs
    shown = {m.label: m.value for m in at.main.metric}
    assert shown["val accuracy"] == f"{attrs['val_accuracy']:.4g}"
    assert shown["ε (RDP, this run)"] == format_epsilon(attrs["epsilon_rdp"])  # rounded up, never down
    assert float(shown["ε (RDP, this run)"]) >= attrs["epsilon_rdp"]


def test_the_preselected_trial_is_the_best_within_the_target(workspace):
    study = make_study(storage_url(workspace), "s", 12, target_epsilon=3.0)
    total = lambda t: t.user_attrs.get("epsilon_total", t.user_attrs["epsilon_rdp"])  # noqa: E731
    within = [t for t in study.trials if t.state.name == "COMPLETE" and total(t) <= 3.0]
    best = max(within, key=lambda t: (t.user_attrs["val_accuracy"], -total(t)))
    at = open_page(workspace, "tradeoffs")
    assert not at.exception, messages(at)
    assert at.selectbox(key="trade-trial-s").value == best.number


def test_no_trial_within_the_target_is_a_warning(workspace):
    make_study(storage_url(workspace), "s", 5, target_epsilon=0.01)
    at = open_page(workspace, "tradeoffs")
    assert not at.exception
    assert any("No finished trial is within the target" in w for w in messages(at)["warning"])


def test_nothing_finished_yet_is_a_warning(workspace):
    make_study(storage_url(workspace), "s", 0, running=2)
    at = open_page(workspace, "tradeoffs")
    assert not at.exception and not at.error, messages(at)
    assert any("No trial has finished yet" in w for w in messages(at)["warning"])


def _decoded(value):
    """Plotly's JSON writes numeric arrays as {"bdata": base64, "dtype": ...}: as a list."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return value


def _main_figure(at) -> dict:
    """The first plotly chart of the page (the main figure), as Plotly's JSON (arrays decoded)."""
    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    for trace in figure["data"]:
        for key in ("x", "y", "customdata"):
            if key in trace:
                trace[key] = _decoded(trace[key])
    return figure


def test_a_budgeted_study_shows_accuracy_against_time_not_an_epsilon_front(workspace):
    """Issue 10 item 14: every budgeted trial spends the target ε, so the main figure is
    accuracy against training time coloured by m, and the caption says why."""
    study = make_study(storage_url(workspace), "b", 12, mode="budgeted", target_epsilon=3.0)
    at = open_page(workspace, "tradeoffs")
    assert not at.exception and not at.error, messages(at)
    assert any("Validation accuracy against training time" in m.value for m in at.markdown)
    assert not any("Pareto front: ε" in m.value for m in at.markdown)
    figure = _main_figure(at)
    assert "training time" in figure["layout"]["xaxis"]["title"]["text"]
    trials = figure["data"][0]
    assert trials["name"] == "trials" and trials["marker"]["colorbar"]["title"]["text"] == "m (microbatches)"
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    by_number = {t.number: t for t in done}
    assert sorted(trials["customdata"]) == sorted(by_number)
    for number, seconds, accuracy in zip(trials["customdata"], trials["x"], trials["y"], strict=True):
        assert seconds == by_number[number].user_attrs["train_seconds"]
        assert accuracy == by_number[number].user_attrs["val_accuracy"]
    assert "most accurate for the time" in [trace.get("name") for trace in figure["data"]]
    captions = " ".join(c.value for c in at.caption)
    assert "every trial spends the target ε = 3" in captions and "ε is per trial" in captions


def test_a_pareto_study_keeps_the_epsilon_pareto_front(workspace):
    make_study(storage_url(workspace), "p", 12, mode="pareto", target_epsilon=3.0)
    at = open_page(workspace, "tradeoffs")
    assert not at.exception and not at.error, messages(at)
    assert any("Pareto front: ε against validation accuracy" in m.value for m in at.markdown)
    figure = _main_figure(at)
    assert figure["layout"]["xaxis"]["title"]["text"].startswith("ε per trial")
    assert [trace.get("name") for trace in figure["data"]][:2] == ["trials", "Pareto front"]
