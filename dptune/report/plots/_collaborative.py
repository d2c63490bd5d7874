"""A collaborative (DSSGD) search's figures: the server model's accuracy against what each trial
traded for it (θu, the worst participant's ε, the bytes a participant uploads per round),
with the baselines the search computed once (centralized, standalone mean) as reference lines.

Input: `dptune.study.collaborative.collaborative_frame` (one row per trial) and the study's
baselines mapping (`study_summary()["baselines"]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dptune.report.plots._common import (
    _numeric,
    _trade_off_figure,
    _trade_off_layout,
    epsilon_axis_type,
    message_figure,
)

COLLABORATIVE_AXES = {
    "theta_upload": "θu, fraction of the parameters uploaded per round",
    "worst_epsilon": "worst participant's ε",
    "bytes_per_round": "bytes a participant uploads per round",
}
"""The x axes of `collaborative_figure`: collaborative_frame column -> axis title."""


def _hover(row: Mapping[str, Any]) -> str:
    worst = row.get("worst_epsilon")
    return (f"trial {int(row['number'])}<br>accuracy = {float(row['accuracy']):.4f}<br>"
            f"θu = {float(row['theta_upload']):.3g}, θd = {float(row['theta_download']):.3g}<br>"
            f"worst ε = {'∞' if worst is None or pd.isna(worst) else f'{float(worst):.3g}'}<br>"
            f"{float(row['bytes_per_round']):,.0f} bytes per round")


def collaborative_figure(frame: pd.DataFrame, x: str, baselines: Mapping[str, Any], *, selected: int | None = None,
                         height: int = 380) -> go.Figure:
    """Accuracy (y) of every complete trial against column `x` (a COLLABORATIVE_AXES key), log
    scale when it spans more than 30×; the step line joins the trials no other beats in both
    (less x, more accuracy); colour: log10 θd when it varies; dashed lines: centralized and
    standalone mean accuracy. A trial
    without privacy has no finite ε: the ε figure says so instead of plotting it."""
    done = frame[(frame["state"] == "COMPLETE") & _numeric(frame, "accuracy").notna()]
    values = _numeric(done, x)
    if len(done) == 0:
        return message_figure("No finished trial yet: the figures fill in as trials complete.")
    if values.isna().all():
        return message_figure("No trial has a finite ε: the runs have no privacy (privacy kind none).")
    done = done[values.notna()]
    xs = _numeric(done, x).to_numpy(dtype=float)
    ys = _numeric(done, "accuracy").to_numpy(dtype=float)
    numbers = done["number"].astype(int).to_numpy()
    theta_download = np.log10(_numeric(done, "theta_download").to_numpy(dtype=float))
    varies = bool(np.nanmax(theta_download) > np.nanmin(theta_download))  # a fixed θd colours nothing
    marker = ({"size": 11, "color": theta_download, "showscale": True, "colorbar": {"title": {"text": "log10 θd"}}}
              if varies else {"size": 11, "color": "#1565c0"})
    figure = _trade_off_figure(xs, ys, numbers, [_hover(row) for row in done.to_dict("records")], marker=marker,
                               selected=selected, front_name="most accurate for less")
    for key, text, colour in (("centralized", "centralized", "#2e7d32"), ("standalone_mean", "standalone mean", "#6d4c41")):
        if baselines.get(key) is not None:
            figure.add_hline(y=float(baselines[key]), line_dash="dash", line_color=colour,
                             annotation_text=f"{text} {float(baselines[key]):.3f}", annotation_position="bottom right")
    axis_type = epsilon_axis_type(xs)
    _trade_off_layout(figure, height=height, xaxis_type=axis_type,
                      xaxis_title=COLLABORATIVE_AXES[x] + (", log scale" if axis_type == "log" else ""))
    return figure
