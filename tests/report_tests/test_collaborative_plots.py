"""The collaborative search's figures (dptune.report.plots.collaborative_figure): what is drawn
is the trials' numbers and the baselines, on the axis asked for."""

import math

import numpy as np
import pandas as pd
import pytest

from dptune.report.plots import COLLABORATIVE_AXES, collaborative_figure

BASELINES = {"centralized": 0.91, "standalone_mean": 0.72}


def _frame(worst_epsilon=(2.0, 3.0, None, 2.5)):
    return pd.DataFrame({
        "number": [0, 1, 2, 3], "state": ["COMPLETE", "COMPLETE", "RUNNING", "COMPLETE"],
        "accuracy": [0.80, 0.88, None, 0.85], "worst_epsilon": list(worst_epsilon),
        "theta_upload": [0.01, 1.0, 0.1, 0.1], "theta_download": [0.5, 1.0, 0.2, 0.3],
        "bytes_per_round": [520.0, 2600.0, 5200.0, 5200.0],
    })


def test_each_axis_plots_the_complete_trials_against_it_with_the_baselines():
    for axis in COLLABORATIVE_AXES:
        figure = collaborative_figure(_frame(), axis, BASELINES, selected=1)
        trials = figure.data[0]
        assert list(trials.customdata) == [0, 1, 3]
        assert list(trials.y) == [0.80, 0.88, 0.85]
        assert list(trials.x) == list(_frame().set_index("number").loc[[0, 1, 3], axis])
        lines = sorted(shape.y0 for shape in figure.layout.shapes)
        assert lines == [0.72, 0.91]
        assert figure.layout.xaxis.title.text.startswith(COLLABORATIVE_AXES[axis])
        assert any(trace.name == "trial 1" for trace in figure.data)
    # θu spans 100x: log scale; ε spans 1.5x: linear
    assert collaborative_figure(_frame(), "theta_upload", BASELINES).layout.xaxis.type == "log"
    assert collaborative_figure(_frame(), "worst_epsilon", BASELINES).layout.xaxis.type == "linear"


def test_the_front_joins_the_trials_no_other_beats():
    figure = collaborative_figure(_frame(), "bytes_per_round", BASELINES)
    front = next(trace for trace in figure.data if trace.name == "most accurate for less")
    # 520 B -> 0.80 and 2600 B -> 0.88 are on it; 5200 B -> 0.85 is beaten by the second
    assert list(front.x) == [520.0, 2600.0] and list(front.y) == [0.80, 0.88]


def test_without_privacy_the_epsilon_figure_says_why_it_is_empty():
    figure = collaborative_figure(_frame(worst_epsilon=(None, math.nan, None, None)), "worst_epsilon", BASELINES)
    assert "No trial has a finite ε" in figure.layout.annotations[0].text
    empty = collaborative_figure(_frame().assign(state="RUNNING"), "theta_upload", BASELINES)
    assert "No finished trial yet" in empty.layout.annotations[0].text


def test_the_colour_scale_is_theta_download_only_when_it_varies():
    varied = collaborative_figure(_frame(), "theta_upload", BASELINES).data[0].marker
    assert varied.showscale and list(varied.color) == pytest.approx(np.log10([0.5, 1.0, 0.3]))
    fixed = collaborative_figure(_frame().assign(theta_download=1.0), "theta_upload", BASELINES).data[0].marker
    assert not fixed.showscale and fixed.color == "#1565c0"
