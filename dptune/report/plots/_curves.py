"""Per-trial curves over epochs and steps: accuracy, ε (recorded and the accountant's), live progress."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dptune.report.plots._common import (
    _history_records,
    _log_hline,
    _states,
    epsilon_axis_type,
    highlighted_trials,
    message_figure,
    plots_colorway,
)


def _curves_figure(
    frame: pd.DataFrame,
    *,
    x_key: str,
    y_key: str,
    x_title: str,
    y_title: str,
    highlight: Iterable[int] | None,
    empty_message: str,
    height: int,
) -> go.Figure:
    if frame is None or len(frame) == 0 or "history" not in frame:
        return message_figure(empty_message)
    chosen = highlighted_trials(frame, highlight)
    chosen_set = set(chosen)
    figure = go.Figure()
    other_x: list[Any] = []
    other_y: list[Any] = []
    individual: dict[int, tuple[list[Any], list[Any], str]] = {}
    for number, state, history in zip(
        frame["number"].astype(int), _states(frame), frame["history"], strict=False
    ):
        records = _history_records(history)
        xs = [r.get(x_key) for r in records if r.get(y_key) is not None]
        ys = [r.get(y_key) for r in records if r.get(y_key) is not None]
        if not xs:
            continue
        if number in chosen_set:
            individual[number] = (xs, ys, state)
        else:
            other_x.extend(xs + [None])
            other_y.extend(ys + [None])
    if not individual and not other_x:
        return message_figure(empty_message)
    if other_x:
        figure.add_trace(
            go.Scatter(  # one SVG path for all of them (WebGL is slow without a GPU)
                x=other_x,
                y=other_y,
                mode="lines",
                line={"color": "rgba(120,120,120,0.35)", "width": 1},
                name="other trials",
                hoverinfo="skip",
            )
        )
    colours = plots_colorway()
    for position, number in enumerate(chosen):
        if number not in individual:
            continue
        xs, ys, state = individual[number]
        figure.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines+markers",
                name=f"trial {number} ({state.lower()})",
                line={"dash": "dot" if state == "RUNNING" else "solid", "color": colours[position % len(colours)]},
                marker={"color": colours[position % len(colours)]},
                hovertemplate=f"trial {number}<br>{x_title} %{{x}}<br>{y_title} %{{y:.4g}}<extra></extra>",
            )
        )
    figure.update_layout(
        height=height,
        xaxis_title=x_title,
        yaxis_title=y_title,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"font": {"size": 11}},
    )
    return figure


def epsilon_curves_figure(
    frame: pd.DataFrame,
    *,
    highlight: Iterable[int] | None = None,
    target_epsilon: float | None = None,
    accountant_curves: Mapping[int, Sequence[tuple[int, float]]] | None = None,
    height: int = 380,
) -> go.Figure:
    """ε (RDP, per trial) against the number of DP-SGD steps.

    Markers: the ε each trial recorded after each epoch (the live accountant). Lines: the
    accountant's curve over every step of the trial's planned run, for the highlighted
    trials whose curve is given in `accountant_curves` ({trial number: [(step, ε), ...]},
    e.g. from `dptune.privacy.epsilon_curve`), so a running trial shows where it is going.
    The ε axis is logarithmic when the recorded ε span more than EPSILON_LOG_SPAN
    (epsilon_axis_type), linear otherwise.
    """
    figure = _curves_figure(
        frame,
        x_key="step",
        y_key="epsilon",
        x_title="steps",
        y_title="ε per trial (so far)",
        highlight=highlight,
        empty_message="No epoch finished yet: ε curves grow here epoch by epoch.",
        height=height,
    )
    if accountant_curves:
        named = {trace.name.split()[1]: index for index, trace in enumerate(figure.data)
                 if trace.name and trace.name.startswith("trial ")}
        for number, curve in accountant_curves.items():
            index = named.get(str(number))
            if index is None or not curve:
                continue
            colour = figure.data[index].line.color
            figure.data[index].mode = "markers"
            figure.data[index].marker.size = 8
            steps, values = zip(*curve)
            figure.add_trace(
                go.Scatter(
                    x=list(steps), y=list(values), mode="lines", line={"color": colour, "width": 1.5},
                    name=f"trial {number}: accountant, planned run", showlegend=False,
                    hovertemplate=f"trial {number} (planned)<br>step %{{x}}<br>ε %{{y:.4g}}<extra></extra>",
                )
            )
    recorded = [
        float(value) for trace in figure.data
        if trace.name and not trace.name.endswith("planned run") and trace.y is not None
        for value in trace.y if value is not None and math.isfinite(float(value))
    ]
    axis_type = epsilon_axis_type(recorded)
    if target_epsilon is not None and len(figure.data):
        if axis_type == "log":
            _log_hline(figure, float(target_epsilon), f"target ε = {target_epsilon:g}")
        else:
            figure.add_hline(y=float(target_epsilon), line_dash="dash", line_color="#555",
                             annotation_text=f"target ε = {target_epsilon:g}")
    if axis_type == "log":
        # ε spans decades (pareto and recipe studies): log axis, from the smallest recorded ε
        # to above the largest (planned runs may leave the top of the chart)
        positive = [value for value in recorded if value > 0]
        top = max(max(positive), float(target_epsilon or 0.0)) * (1.5 if accountant_curves else 1.0)
        bottom = min(positive) / 1.5
        figure.update_yaxes(type="log", range=[math.log10(bottom), math.log10(top * 1.2)],
                            title_text="ε per trial (so far, log scale)")
    elif recorded and accountant_curves:
        # planned runs can end far above what was recorded (pareto mode, small σ): keep the
        # recorded ε readable and let those curves leave the top of the chart
        top = max(max(recorded), float(target_epsilon or 0.0)) * 1.3
        figure.update_yaxes(range=[0, top])
    return figure


def accuracy_curves_figure(
    frame: pd.DataFrame, *, highlight: Iterable[int] | None = None, height: int = 380
) -> go.Figure:
    """Validation accuracy after each epoch, one line per trial."""
    return _curves_figure(
        frame,
        x_key="epoch",
        y_key="val_accuracy",
        x_title="epoch",
        y_title="validation accuracy",
        highlight=highlight,
        empty_message="No epoch finished yet: accuracy curves grow here epoch by epoch.",
        height=height,
    )


def trial_progress_figure(
    history: Sequence[Mapping[str, Any]],
    *,
    total_epochs: float | None = None,
    epsilon_planned: float | None = None,
    target_epsilon: float | None = None,
    height: int = 260,
) -> go.Figure:
    """One trial, live: validation accuracy (left) and ε so far (right) after each epoch.

    The x axes run to `total_epochs` so the curves visibly grow towards the end; the
    planned final ε (known when the trial starts) is a dotted line on the right.
    """
    records = _history_records(history)
    figure = make_subplots(rows=1, cols=2, subplot_titles=("validation accuracy", "ε so far (per trial)"))
    epochs = [r.get("epoch") for r in records]
    figure.add_trace(
        go.Scatter(x=epochs, y=[r.get("val_accuracy") for r in records], mode="lines+markers", name="val accuracy"),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Scatter(
            x=epochs, y=[r.get("epsilon") for r in records], mode="lines+markers", name="ε", line={"color": "#c62828"}
        ),
        row=1,
        col=2,
    )
    if epsilon_planned is not None:
        figure.add_hline(
            y=float(epsilon_planned), line_dash="dot", line_color="#c62828", row=1, col=2,
            annotation_text=f"planned ε = {epsilon_planned:.3g}",
        )
    if target_epsilon is not None:
        figure.add_hline(y=float(target_epsilon), line_dash="dash", line_color="#555", row=1, col=2)
    if total_epochs:
        upper = max(float(total_epochs), 1.0) + 0.2
        figure.update_xaxes(range=[0.8, upper], title_text="epoch")
    else:
        figure.update_xaxes(title_text="epoch")
    figure.update_layout(height=height, showlegend=False, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure
