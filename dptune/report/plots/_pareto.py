"""The Pareto front of ε against validation accuracy, coloured by training speed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dptune.report.plots._common import (
    _hover_text,
    _log_vline,
    _numeric,
    _trade_off_figure,
    _trade_off_layout,
    comparable_trials,
    epsilon_axis_type,
    message_figure,
)


def pareto_front_figure(
    frame: pd.DataFrame,
    *,
    target_epsilon: float | None = None,
    selected: int | None = None,
    height: int = 430,
) -> go.Figure:
    """ε (x, lower is better) against validation accuracy (y), coloured by training speed.

    Each marker is one complete trial (customdata = trial number, so a click selects it);
    the Pareto-optimal trials are joined by a step line; a dashed line marks the target ε
    and a ring marks the `selected` trial. The ε axis is logarithmic when the trials' ε span
    more than EPSILON_LOG_SPAN (epsilon_axis_type), linear otherwise.
    """
    done = comparable_trials(frame)
    if len(done) == 0:
        return message_figure("No finished trial yet: the Pareto front appears when the first trial completes.")
    eps = _numeric(done, "epsilon").to_numpy()
    acc = _numeric(done, "val_accuracy").to_numpy()
    speed = _numeric(done, "examples_per_second").to_numpy()
    numbers = done["number"].astype(int).to_numpy()
    hover = [_hover_text(row) for row in done.to_dict("records")]
    has_speed = bool(np.isfinite(speed).any())
    figure = _trade_off_figure(eps, acc, numbers, hover, selected=selected, front_name="Pareto front", marker={
        "size": 10,
        "color": np.nan_to_num(speed, nan=0.0) if has_speed else "#1565c0",
        "showscale": has_speed,
        "colorbar": {"title": {"text": "examples/s"}} if has_speed else None,
    })
    axis_type = epsilon_axis_type(eps)
    if target_epsilon is not None and axis_type == "log":
        _log_vline(figure, float(target_epsilon), f"target ε = {target_epsilon:g}", colour="#555", dash="dash")
    elif target_epsilon is not None:
        figure.add_vline(
            x=float(target_epsilon),
            line_dash="dash",
            line_color="#555",
            annotation_text=f"target ε = {target_epsilon:g}",
            annotation_position="top",
        )
    finite = eps[np.isfinite(eps)]
    if axis_type == "linear" and finite.size and (finite.max() - finite.min()) <= 0.02 * max(abs(finite.max()), 1e-12):
        # budgeted mode: every trial spends (almost) the target ε; widen the axis around it
        centre = float(np.median(finite))
        span = max(0.1 * abs(centre), 1e-3)
        figure.update_xaxes(range=[centre - span, centre + span])
    _trade_off_layout(figure, height=height, xaxis_type=axis_type, xaxis_tickformat=".3~g",
                      xaxis_title="ε per trial (lower is more private)" + (", log scale" if axis_type == "log" else ""))
    return figure
