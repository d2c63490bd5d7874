"""Figures of the data and of the clip-norm release: class balance, gradient-norm histograms."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dptune.report.plots._common import _log_vline, message_figure


def gradient_norm_histogram(
    norms: Sequence[float],
    *,
    quantiles: Mapping[float, float] | None = None,
    clip_norm: float | None = None,
    height: int = 360,
) -> go.Figure:
    """Histogram of per-example gradient L2 norms (log-spaced bins), with the 50/75/90%
    quantile lines and the chosen clip norm C."""
    values = np.asarray(norms, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return message_figure("No gradient norms to show.")
    edges = np.geomspace(values.min(), values.max() * 1.0001, 41) if values.max() > values.min() else None
    figure = go.Figure()
    if edges is not None:
        counts, edges = np.histogram(values, bins=edges)
        centres = np.sqrt(edges[:-1] * edges[1:])
        figure.add_trace(
            go.Bar(x=centres, y=counts, width=np.diff(edges), name="examples", marker_color="#90a4ae",
                   hovertemplate="norm ≈ %{x:.3g}<br>%{y} examples<extra></extra>")
        )
    else:
        figure.add_trace(go.Bar(x=[values[0]], y=[values.size], name="examples", marker_color="#90a4ae"))
    for row, (level, value) in enumerate(sorted((quantiles or {}).items())):
        _log_vline(figure, value, f"{level * 100:.0f}%: {value:.3g}", colour="#1565c0", dash="dot", row=row)
    if clip_norm is not None:
        _log_vline(figure, clip_norm, f"C = {clip_norm:.3g}", colour="#c62828", width=3,
                   row=len(quantiles or {}))
    figure.update_layout(
        height=height,
        xaxis={"title": {"text": "per-example gradient L2 norm (log scale)"}, "type": "log"},
        yaxis_title="examples",
        bargap=0.02,
        showlegend=False,
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
    )
    return figure


def class_balance_figure(labels: Sequence[int], class_names: Sequence[str], *, height: int = 280) -> go.Figure:
    """Number of training examples per class."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(class_names))
    figure = go.Figure(go.Bar(x=[str(c) for c in class_names], y=counts, marker_color="#5c6bc0"))
    figure.update_layout(
        height=height, xaxis_title="class", yaxis_title="training examples",
        xaxis={"type": "category"}, margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return figure


def clip_histogram_figure(
    counts: Sequence[float],
    bin_edges: Sequence[float],
    *,
    quantiles: Mapping[Any, float] | None = None,
    clip_norm: float | None = None,
    noisy: bool = True,
    height: int = 380,
) -> go.Figure:
    """The released histogram of per-example gradient norms, with the 50/75/90% quantile
    lines read from it and the chosen clip norm C.

    counts: len(bin_edges) + 1 values (underflow bin, one per [edge_i, edge_i+1), overflow
    bin), as `dptune.study.recipe.private_clip_norm` releases them (Laplace noise added, so the
    counts are not the exact ones when `noisy`). Only the bins with mass are drawn.
    """
    counts = np.asarray(counts, dtype=float)
    edges = np.asarray(bin_edges, dtype=float)
    if counts.size != edges.size + 1 or edges.size < 2:
        return message_figure("No histogram to show.")
    inner = np.maximum(counts[1:-1], 0.0)
    # the range drawn: bins holding at least 2% of the largest count (post-processing of the
    # released counts; the Laplace noise in empty bins far away is not drawn)
    mass = np.flatnonzero(inner >= max(0.02 * inner.max(), 0.5 if noisy else 1e-12))
    if mass.size == 0:
        return message_figure("The released histogram is empty (all counts drowned in the noise).")
    low, high = max(0, mass[0] - 3), min(inner.size - 1, mass[-1] + 3)
    marks = [float(v) for v in (quantiles or {}).values()] + ([float(clip_norm)] if clip_norm else [])
    if marks:  # one decade either side of the quantiles and C (noise in far-away bins is not drawn)
        low = max(low, int(np.searchsorted(edges, min(marks) / 10.0, side="right")) - 1, 0)
        high = min(high, int(np.searchsorted(edges, max(marks) * 10.0, side="left")), inner.size - 1)
    left, right = edges[low : high + 1], edges[low + 1 : high + 2]
    centres = np.sqrt(left * right)
    figure = go.Figure(
        go.Bar(
            x=centres, y=inner[low : high + 1], width=right - left, marker_color="#90a4ae",
            name="examples (noisy)" if noisy else "examples",
            hovertemplate="norm %{x:.3g}<br>%{y:.1f} examples<extra></extra>",
        )
    )
    colours = {"0.5": "#1565c0", "0.75": "#6a1b9a", "0.9": "#00838f"}
    levels = sorted((float(k), float(v)) for k, v in (quantiles or {}).items())
    for row, (level, value) in enumerate(levels):
        _log_vline(figure, value, f"{level * 100:.0f}%: {value:.3g}", colour=colours.get(str(level), "#1565c0"),
                   dash="dot", row=row)
    if clip_norm is not None:
        _log_vline(figure, clip_norm, f"C = {clip_norm:.3g}", colour="#c62828", width=3, row=len(levels))
    figure.update_layout(
        height=height,
        xaxis={"title": {"text": "per-example gradient L2 norm of the initial model (log scale)"}, "type": "log"},
        yaxis_title="examples (noisy counts)" if noisy else "examples",
        bargap=0.02,
        showlegend=False,
        margin={"l": 10, "r": 10, "t": 80, "b": 10},
    )
    return figure
