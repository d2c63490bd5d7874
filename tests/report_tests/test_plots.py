"""dptune.report.plots: pure functions from trial data to Plotly figures."""


import math

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
import pytest
from synthetic_studies import make_study

from dptune.report import plots
from dptune.study.results import best_trial_within
from dptune.ui.adapters import trials_frame

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def study():
    return make_study(optuna.storages.InMemoryStorage(), "plots", 30, running=2, failed=2, pruned=2, seed=1)


@pytest.fixture(scope="module")
def frame(study):
    return trials_frame(study)


def test_pareto_mask_keeps_exactly_the_non_dominated_points():
    epsilon = [1.0, 2.0, 3.0, 2.0, 0.5, 3.0]
    accuracy = [0.5, 0.7, 0.9, 0.6, 0.2, 0.8]
    mask = plots.pareto_mask(epsilon, accuracy)
    assert mask.tolist() == [True, True, True, False, True, False]
    # brute force on random points
    rng = np.random.default_rng(0)
    eps, acc = rng.random(200), rng.random(200)
    mask = plots.pareto_mask(eps, acc)
    for i in range(200):
        dominated = np.any((eps <= eps[i]) & (acc >= acc[i]) & ((eps < eps[i]) | (acc > acc[i])))
        assert mask[i] == (not dominated)


def test_pareto_mask_ignores_missing_values():
    assert plots.pareto_mask([1.0, np.nan, 2.0], [0.5, 0.9, np.nan]).tolist() == [True, False, False]


def test_best_within_budget_is_the_most_accurate_trial_within_the_target(frame):
    done = plots.comparable_trials(frame)
    target = float(done["epsilon"].median())
    best = plots.best_within_budget(frame, target)
    within = done[done["epsilon"] <= target]
    assert best == int(within.loc[within["val_accuracy"].idxmax(), "number"])
    assert plots.best_within_budget(frame, 1e-9) is None
    assert plots.best_within_budget(frame, None) == int(done.loc[done["val_accuracy"].idxmax(), "number"])


@pytest.mark.parametrize("quantile", [0.1, 0.5, 0.9, None])
def test_the_pages_and_the_cli_choose_the_same_best_trial(quantile):
    """One rule (results.best_within): the Trade-offs/Export pages (on the frame) and `dptune
    tune`/`dptune export` (on the trials) pick the same trial, also when a clip-norm release
    puts a trial's total ε over the target while its training ε is under it (issue 9's bug),
    and with tied accuracies."""
    source = make_study(optuna.storages.InMemoryStorage(), "same-best", 24, mode="pareto", running=1, failed=1,
                        pruned=1, seed=3)
    study = optuna.create_study(directions=source.directions)
    for trial in source.trials:
        study.set_user_attr("search_spec", source.user_attrs["search_spec"])
        attrs = dict(trial.user_attrs)
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.number % 4 == 0:
            attrs["epsilon_total"] = attrs["epsilon_rdp"] + 0.4  # a clip-norm release on top of training
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.number in (5, 6):
            attrs["val_accuracy"] = 0.999  # a tie
        study.add_trial(optuna.trial.create_trial(
            state=trial.state, values=trial.values, params=trial.params, distributions=trial.distributions,
            user_attrs=attrs,
        ) if trial.state.is_finished() else trial)
    frame = trials_frame(study)
    totals = sorted(float(t.user_attrs.get("epsilon_total", t.user_attrs["epsilon_rdp"])) for t in study.trials
                    if t.state == optuna.trial.TrialState.COMPLETE)
    target = None if quantile is None else totals[int(quantile * (len(totals) - 1))]
    chosen = best_trial_within(study, target if target is not None else math.inf)
    assert plots.best_within_budget(frame, target) == (None if chosen is None else chosen.number)
    if target is not None and chosen is not None:
        assert float(chosen.user_attrs.get("epsilon_total", chosen.user_attrs["epsilon_rdp"])) <= target


def test_finished_trials_excludes_running_failed_and_pruned(frame):
    done = plots.comparable_trials(frame)
    assert set(done["state"]) == {"COMPLETE"}
    assert len(done) == 30


def test_pareto_front_figure(frame):
    figure = plots.pareto_front_figure(frame, target_epsilon=3.0, selected=int(frame["number"].iloc[0]))
    assert isinstance(figure, go.Figure)
    names = [trace.name for trace in figure.data]
    assert names[:2] == ["trials", "Pareto front"]
    trials = figure.data[0]
    assert len(trials.x) == 30
    assert sorted(int(n) for n in trials.customdata) == sorted(int(n) for n in plots.comparable_trials(frame)["number"])
    assert trials.marker.showscale  # coloured by training speed
    assert "ε per trial" in figure.layout.xaxis.title.text
    assert any("target ε" in (a.text or "") for a in figure.layout.annotations)
    assert names[-1] == f"trial {int(frame['number'].iloc[0])}"  # the selected trial is ringed


def test_pareto_front_of_no_finished_trial_says_so():
    figure = plots.pareto_front_figure(pd.DataFrame(columns=["number", "state", "val_accuracy", "epsilon"]))
    assert "No finished trial" in figure.layout.annotations[0].text


def test_curve_figures_draw_a_line_per_highlighted_trial_and_one_for_the_rest(frame):
    figure = plots.epsilon_curves_figure(frame, target_epsilon=3.0)
    individual = [trace for trace in figure.data if trace.name and trace.name.startswith("trial ")]
    assert len(individual) == plots.MAX_HIGHLIGHTED_CURVES
    assert figure.data[0].name == "other trials"
    assert any("(running)" in trace.name for trace in individual)  # running trials come first
    # each highlighted curve is that trial's history (steps, epsilon)
    trace = individual[0]
    number = int(trace.name.split()[1])
    history = frame.loc[frame["number"] == number, "history"].iloc[0]
    assert list(trace.x) == [r["step"] for r in history]
    assert list(trace.y) == [r["epsilon"] for r in history]
    accuracy = plots.accuracy_curves_figure(frame, highlight=[number])
    assert [t.name for t in accuracy.data][-1].startswith(f"trial {number}")
    assert list(accuracy.data[-1].y) == [r["val_accuracy"] for r in history]


def test_curves_without_history_say_so():
    frame = pd.DataFrame({"number": [0], "state": ["RUNNING"], "history": [[]]})
    assert "No epoch finished yet" in plots.epsilon_curves_figure(frame).layout.annotations[0].text


def test_trial_progress_figure_grows_towards_the_planned_epochs():
    history = [{"epoch": 1, "step": 10, "val_accuracy": 0.5, "epsilon": 1.0},
               {"epoch": 2, "step": 20, "val_accuracy": 0.6, "epsilon": 1.4}]
    figure = plots.trial_progress_figure(history, total_epochs=5, epsilon_planned=2.2, target_epsilon=3)
    assert list(figure.data[0].y) == [0.5, 0.6]
    assert list(figure.data[1].y) == [1.0, 1.4]
    assert figure.layout.xaxis.range[1] > 5


def test_parallel_coordinates_cover_the_hyperparameters(frame):
    figure = plots.parallel_coordinates_figure(frame)
    labels = [d.label for d in figure.data[0].dimensions]
    for name in ("C (clip norm)", "σ (noise multiplier)", "m (microbatches)", "learning rate", "B (batch size)"):
        assert any(name in label for label in labels), labels
    assert labels[-1] == "val accuracy"
    assert "log10 learning rate" in labels  # spans three decades


def test_speed_against_microbatches(frame):
    figure = plots.speed_vs_microbatches_figure(frame)
    assert figure.layout.xaxis.type == "log"
    assert len(figure.data[0].x) == int(frame["examples_per_second"].notna().sum())


def test_param_importances_use_optunas_figure(study):
    figure = plots.param_importances_figure(study.get_trials())
    assert isinstance(figure, go.Figure)
    assert set(figure.data[0].y) <= {"l2_norm_clip", "noise_multiplier", "num_microbatches", "learning_rate",
                                     "batch_size"}
    assert "Parameter importances need" in plots.param_importances_figure(study.get_trials()[:1]).layout.annotations[0].text


def test_histograms_and_class_balance():
    norms = np.random.default_rng(0).lognormal(0.0, 0.5, 500)
    figure = plots.gradient_norm_histogram(norms, quantiles={0.5: 1.0, 0.9: 1.9}, clip_norm=1.2)
    assert figure.layout.xaxis.type == "log"
    assert {a.text for a in figure.layout.annotations} >= {"50%: 1", "90%: 1.9", "C = 1.2"}
    edges = np.logspace(-6, 4, 101)
    counts = np.zeros(102)
    counts[61:64] = [10, 30, 5]
    released = plots.clip_histogram_figure(counts, edges, quantiles={"0.5": 1.5, "0.75": 2.0, "0.9": 2.5},
                                           clip_norm=2.0)
    assert sum(released.data[0].y) == 45
    assert "C = 2" in {a.text for a in released.layout.annotations}
    balance = plots.class_balance_figure([0, 1, 1, 2, 2, 2], ["a", "b", "c"])
    assert list(balance.data[0].y) == [1, 2, 3]


def test_epsilon_captions_say_what_epsilon_covers():
    assert "per trial" in plots.EPSILON_PER_TRIAL and "does not include" in plots.EPSILON_PER_TRIAL
    assert "including the search" in plots.epsilon_with_search_caption(4.5, 1e-5)


def test_500_trials_plot():
    """Every figure draws a 500-trial study (benchmarks/bench_ui.py measures how fast)."""
    study = make_study(optuna.storages.InMemoryStorage(), "big", 500, running=3, seed=2)
    frame = trials_frame(study)
    for function in (plots.pareto_front_figure, plots.epsilon_curves_figure, plots.accuracy_curves_figure,
                     plots.parallel_coordinates_figure, plots.speed_vs_microbatches_figure):
        assert len(function(frame).data) >= 1, function.__name__


def test_epsilon_curves_with_the_accountants_planned_run(frame):
    number = plots.highlighted_trials(frame)[0]
    curve = [(step, 0.01 * step) for step in range(0, 200, 10)]
    figure = plots.epsilon_curves_figure(frame, accountant_curves={number: curve})
    recorded = next(t for t in figure.data if t.name and t.name.startswith(f"trial {number} ("))
    planned = next(t for t in figure.data if t.name == f"trial {number}: accountant, planned run")
    assert recorded.mode == "markers" and planned.mode == "lines"
    assert planned.line.color == recorded.line.color
    assert list(planned.x) == [s for s, _ in curve]


def test_pareto_axis_is_readable_when_every_trial_spends_the_target():
    frame = pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE"] * 3, "val_accuracy": [0.7, 0.8, 0.75],
                          "epsilon": [2.9999998, 3.0, 2.9999999], "examples_per_second": [1e4, 2e4, 3e4]})
    figure = plots.pareto_front_figure(frame, target_epsilon=3.0)
    low, high = figure.layout.xaxis.range
    assert low <= 2.8 and high >= 3.2


def _pareto_frame(epsilons):
    n = len(epsilons)
    history = [[{"epoch": 1, "step": 10, "val_accuracy": 0.5, "epsilon": e / 3},
                {"epoch": 2, "step": 20, "val_accuracy": 0.6, "epsilon": e}] for e in epsilons]
    return pd.DataFrame({"number": list(range(n)), "state": ["COMPLETE"] * n,
                         "val_accuracy": np.linspace(0.5, 0.9, n), "epsilon": epsilons,
                         "examples_per_second": [1e4] * n, "history": history})


def test_epsilon_axes_are_logarithmic_when_epsilon_spans_decades():
    """Issue 10 item 13: a pareto study's ε from 0.4 to 58 (a recipe's to 3·10^7) squashed every
    trial of interest near 0 on a linear axis; above a ratio of 30 the ε axes are log."""
    wide = _pareto_frame([0.4, 1.2, 2.9, 7.5, 58.0])
    pareto = plots.pareto_front_figure(wide, target_epsilon=3.0)
    assert pareto.layout.xaxis.type == "log" and "log scale" in pareto.layout.xaxis.title.text
    assert any(a.text == "target ε = 3" for a in pareto.layout.annotations)
    curves = plots.epsilon_curves_figure(wide, target_epsilon=3.0)
    assert curves.layout.yaxis.type == "log"
    low, high = curves.layout.yaxis.range
    assert 10**low <= 0.4 / 3 and 10**high >= 58.0  # every recorded ε inside the drawn range
    assert any(a.text == "target ε = 3" for a in curves.layout.annotations)
    recipe = _pareto_frame([0.8, 2.5, 3.1e7])
    assert plots.pareto_front_figure(recipe).layout.xaxis.type == "log"

    narrow = _pareto_frame([1.0, 1.8, 2.9, 6.0])  # 6x (and 18x with the first epochs): linear
    assert plots.pareto_front_figure(narrow, target_epsilon=3.0).layout.xaxis.type == "linear"
    assert plots.epsilon_curves_figure(narrow, target_epsilon=3.0).layout.yaxis.type != "log"
    assert plots.epsilon_axis_type([0.5, 15.0]) == "linear" and plots.epsilon_axis_type([0.5, 15.1]) == "log"
    assert plots.epsilon_axis_type([0.0, 2.0, float("nan"), None]) == "linear"  # one positive value


def test_accuracy_against_training_time_for_budgeted_studies(frame):
    """Issue 10 item 14: one marker per finished trial at (train seconds, accuracy), coloured by
    m, per-example clipping as diamonds, the most accurate trials for their time joined."""
    number = int(plots.comparable_trials(frame)["number"].iloc[0])
    figure = plots.accuracy_vs_time_figure(frame, selected=number)
    done = plots.comparable_trials(frame).set_index("number")
    trials = figure.data[0]
    assert sorted(int(n) for n in trials.customdata) == sorted(int(n) for n in done.index)
    for n, seconds, accuracy, symbol in zip(trials.customdata, trials.x, trials.y, trials.marker.symbol, strict=True):
        row = done.loc[int(n)]
        assert (seconds, accuracy) == (row["train_seconds"], row["val_accuracy"])
        assert symbol == ("diamond" if row["num_microbatches"] == row["batch_size"] else "circle")
    assert trials.marker.colorbar.title.text == "m (microbatches)"
    assert [t.name for t in figure.data] == ["trials", "most accurate for the time", f"trial {number}"]
    assert "training time" in figure.layout.xaxis.title.text
    assert "No finished trial" in plots.accuracy_vs_time_figure(frame.iloc[:0]).layout.annotations[0].text
