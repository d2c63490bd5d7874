"""The budgeted study's main figure: validation accuracy against training time, coloured by m.

In budgeted mode σ is calibrated so that every trial spends the target ε: the trials' ε
differ only by the rounding of the step count, so an ε-accuracy Pareto front is noise (and
can put a chance-level model on it). What does vary is the time a trial takes and the
hyperparameters behind it (m, B, epochs, C, learning rate): this figure shows accuracy
against the training time of each trial, coloured by the number of microbatches m.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dptune.report.plots._common import (
    _hover_text,
    _numeric,
    _trade_off_figure,
    _trade_off_layout,
    comparable_trials,
    epsilon_axis_type,
    message_figure,
)


def accuracy_vs_time_figure(frame: pd.DataFrame, *, selected: int | None = None, height: int = 430) -> go.Figure:
    """Validation accuracy (y) against training seconds per trial (x), coloured by m.

    Each marker is one complete trial (customdata = trial number, so a click selects it);
    per-example clipping (m = B) is drawn as a diamond, microbatched trials (m < B) as
    circles. A step line joins the trials no other beats in both accuracy and time (the most
    accurate for the time spent), and a ring marks the `selected` trial. The time axis is
    logarithmic when the times span more than a factor of 30.
    """
    done = comparable_trials(frame)
    seconds = _numeric(done, "train_seconds")
    done = done[seconds.notna()]
    if len(done) == 0:
        return message_figure("No finished trial yet: accuracy against training time appears when the first "
                              "trial completes.")
    seconds = _numeric(done, "train_seconds").to_numpy()
    accuracy = _numeric(done, "val_accuracy").to_numpy()
    m = _numeric(done, "num_microbatches").to_numpy()
    batch = _numeric(done, "batch_size").to_numpy()
    numbers = done["number"].astype(int).to_numpy()
    has_m = bool(np.isfinite(m).any() and (m > 0).any())
    colour = np.log2(np.where(np.isfinite(m) & (m > 0), m, 1.0)) if has_m else "#1565c0"
    ticks = sorted({int(v) for v in m[np.isfinite(m) & (m > 0)]}) if has_m else []
    if len(ticks) > 8:
        ticks = [int(v) for v in 2 ** np.unique(np.round(np.log2(ticks)))]
    per_example = np.isfinite(m) & np.isfinite(batch) & (m == batch)
    hover = [_hover_text(row) + f"<br>train time = {float(row['train_seconds']):.3g} s"
             for row in done.to_dict("records")]
    figure = _trade_off_figure(seconds, accuracy, numbers, hover, selected=selected,
                               front_name="most accurate for the time", marker={
                                   "size": 11,
                                   "color": colour,
                                   "showscale": has_m,
                                   "colorbar": {"title": {"text": "m (microbatches)"},
                                                "tickvals": np.log2(ticks).tolist(),
                                                "ticktext": [str(t) for t in ticks]} if has_m else None,
                                   "symbol": np.where(per_example, "diamond", "circle").tolist(),
                               })
    axis_type = epsilon_axis_type(seconds)  # the same "spans more than 30x" rule as the ε axes
    _trade_off_layout(figure, height=height, xaxis_type=axis_type,
                      xaxis_title="training time per trial (s)" + (", log scale" if axis_type == "log" else ""))
    return figure
