"""Figures over the searched parameters: parallel coordinates, speed against m, importances."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dptune.report.plots._common import (
    PARAMETER_LABELS,
    _hover_text,
    _numeric,
    comparable_trials,
    message_figure,
    normalize_state,
)
from dptune.study.format import TrialRecord


def parallel_coordinates_figure(frame: pd.DataFrame, *, height: int = 420) -> go.Figure:
    """Parallel coordinates over C, σ, m, learning rate, batch size (log10 where it spans decades),
    coloured by validation accuracy."""
    done = comparable_trials(frame)
    if len(done) < 2:
        return message_figure("Parallel coordinates need at least two finished trials.")
    dimensions = []
    for column in ("l2_norm_clip", "noise_multiplier", "num_microbatches", "learning_rate", "batch_size", "epochs"):
        values = _numeric(done, column)
        if values.isna().all():
            continue
        label = PARAMETER_LABELS[column]
        positive = values[values > 0]
        if len(positive) == len(values) and positive.max() / positive.min() >= 20:
            values = np.log10(values)
            label = f"log10 {label}"
        dimensions.append({"label": label, "values": values.to_numpy()})
    accuracy = _numeric(done, "val_accuracy").to_numpy()
    dimensions.append({"label": "val accuracy", "values": accuracy})
    figure = go.Figure(
        go.Parcoords(
            line={"color": accuracy, "colorscale": "Viridis", "showscale": True, "colorbar": {"title": {"text": "val acc"}}},
            dimensions=dimensions,
        )
    )
    figure.update_layout(height=height, margin={"l": 60, "r": 40, "t": 50, "b": 20})
    return figure


def speed_vs_microbatches_figure(frame: pd.DataFrame, *, height: int = 380) -> go.Figure:
    """Training speed (examples/s, compilation excluded) against m, coloured by batch size.

    Per-example clipping (m = B) is the slow end; m = 1 is plain minibatch SGD speed."""
    done = frame[_numeric(frame, "examples_per_second").notna()] if len(frame) else frame
    if len(done) == 0:
        return message_figure("No timing yet: speed appears when trials report their epochs.")
    m = _numeric(done, "num_microbatches").to_numpy()
    batch = _numeric(done, "batch_size").to_numpy()
    figure = go.Figure(
        go.Scatter(
            x=m,
            y=_numeric(done, "examples_per_second").to_numpy(),
            mode="markers",
            customdata=done["number"].astype(int).to_numpy(),
            hovertext=[_hover_text(row) for row in done.to_dict("records")],
            hoverinfo="text",
            marker={"size": 9, "color": batch, "colorscale": "Plasma", "showscale": True,
                    "colorbar": {"title": {"text": "batch size"}}},
        )
    )
    figure.update_layout(
        height=height,
        xaxis={"title": {"text": "m (microbatches per step)"}, "type": "log"},
        yaxis_title="examples per second",
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return figure


def param_importances_figure(trials: Sequence[Any], *, height: int = 380) -> go.Figure:
    """Optuna's parameter-importance figure (PED-ANOVA), with validation accuracy as the target.

    `trials` are `optuna.trial.FrozenTrial`s (e.g. `study.get_trials()`); the complete ones
    with a `val_accuracy` user attr are copied, parameters only, into an in-memory study
    whose single objective is that accuracy, so the figure is the same for single- and
    multi-objective (pareto) studies. Fewer than two such trials give a message figure.
    """
    import optuna
    from optuna.trial import TrialState, create_trial

    usable = []
    for trial in trials:
        if normalize_state(trial.state) != "COMPLETE" or not trial.params:
            continue
        accuracy = TrialRecord.of(trial).val_accuracy
        if accuracy is None and trial.values and len(trial.values) == 1:
            accuracy = trial.values[0]
        if accuracy is None or not math.isfinite(float(accuracy)):
            continue
        usable.append(
            create_trial(
                state=TrialState.COMPLETE, values=[float(accuracy)], params=trial.params,
                distributions=trial.distributions,
            )
        )
    if len(usable) < 2:
        return message_figure("Parameter importances need at least two finished trials.")
    study = optuna.create_study(direction="maximize")
    study.add_trials(usable)
    try:
        figure = optuna.visualization.plot_param_importances(study, target_name="validation accuracy")
    except (RuntimeError, ValueError, ZeroDivisionError) as error:
        return message_figure(f"Importances not available yet: {error}")
    figure.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure
