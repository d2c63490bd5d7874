"""What every figure shares: ε captions, frame helpers, the best trial within a budget, the
Pareto front and the trade-off scatters' front line, selection ring and layout."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go

from dptune.study.results import best_within

EPSILON_PER_TRIAL = (
    "ε is per trial: the privacy cost of training that one configuration once "
    "(RDP accountant, at the study's δ). It does not include the cost of the search."
)


#: Trials drawn as their own coloured line in the per-trial curve plots; the rest are
#: drawn as one grey trace (keeps 500-trial studies fast to build and to render).
MAX_HIGHLIGHTED_CURVES = 12


#: ε axes turn logarithmic when the plotted ε values span more than this ratio (max/min, about
#: 1.5 decades): a pareto study's ε from 0.3 to 60 (or a recipe's up to 10^7) would otherwise
#: squash every trial of interest against 0.
EPSILON_LOG_SPAN = 30.0


PARAMETER_LABELS = {
    "l2_norm_clip": "C (clip norm)",
    "noise_multiplier": "σ (noise multiplier)",
    "num_microbatches": "m (microbatches)",
    "learning_rate": "learning rate",
    "batch_size": "B (batch size)",
    "epochs": "epochs",
}


def epsilon_with_search_caption(search_epsilon: float | None, delta: float | None) -> str:
    """Caption for a number that includes the search: the ε of releasing the chosen trial."""
    if search_epsilon is None:
        return "ε including the search is not available for this study."
    delta_text = f", δ = {delta:.2g}" if delta else ""
    return (
        f"ε including the search: releasing the best trial of this study costs "
        f"ε = {search_epsilon:.3g}{delta_text} (tuning cost accounted on top of one trial's ε)."
    )


def normalize_state(state: Any) -> str:
    """'TrialState.COMPLETE', TrialState.COMPLETE or 'complete' -> 'COMPLETE'."""
    name = getattr(state, "name", None) or str(state)
    return name.split(".")[-1].upper()


def _states(frame: pd.DataFrame) -> pd.Series:
    if "state" not in frame:
        return pd.Series(["COMPLETE"] * len(frame), index=frame.index)
    return frame["state"].map(normalize_state)


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series([np.nan] * len(frame), index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce")


def epsilon_axis_type(values: Iterable[Any]) -> str:
    """"log" when the positive finite ε values span more than EPSILON_LOG_SPAN (max/min),
    "linear" otherwise (including when there are fewer than two such values)."""
    numbers = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=float)
    positive = numbers[np.isfinite(numbers) & (numbers > 0)]
    if positive.size < 2:
        return "linear"
    return "log" if positive.max() / positive.min() > EPSILON_LOG_SPAN else "linear"


def _log_hline(figure: go.Figure, y: float, text: str, *, colour: str = "#555", dash: str | None = "dash") -> None:
    """A horizontal line at `y` on a log-scale y axis, labelled at the right (the annotation of
    `add_hline` would be placed at y in axis units, i.e. log10(y), so it is added separately)."""
    figure.add_hline(y=float(y), line_dash=dash, line_color=colour)
    figure.add_annotation(
        x=1.0, y=math.log10(float(y)), xref="paper", yref="y", text=text, showarrow=False,
        xanchor="right", yanchor="bottom", font={"color": colour, "size": 12},
    )


def _log_vline(figure: go.Figure, x: float, text: str, *, colour: str, dash: str | None = None, width: float = 1.5,
               row: int = 0) -> None:
    """A vertical line at `x` on a log-scale x axis, labelled at the top.

    (Plotly places the annotation of `add_vline` at x in axis units, i.e. log10(x) on a log
    axis; the label is added separately at log10(x). `row` staggers labels that are close.)"""
    figure.add_vline(x=float(x), line_dash=dash, line_color=colour, line_width=width)
    figure.add_annotation(
        x=math.log10(float(x)), y=1.0, xref="x", yref="paper", text=text, showarrow=False,
        yanchor="bottom", yshift=2 + 16 * row, font={"color": colour, "size": 12},
    )


def message_figure(message: str, *, height: int = 260) -> go.Figure:
    """An empty figure that says why there is nothing to plot yet."""
    figure = go.Figure()
    figure.add_annotation(
        text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 15}
    )
    figure.update_layout(
        height=height,
        xaxis={"visible": False},
        yaxis={"visible": False},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
    )
    return figure


def comparable_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """The trials the figures compare: COMPLETE ones with both an accuracy and an ε (the
    study's count of finished trials, which includes pruned and failed ones, is
    dptune.study.results.comparable_trials)."""
    if frame is None or len(frame) == 0:
        return pd.DataFrame(columns=list(frame.columns) if frame is not None else [])
    mask = (_states(frame) == "COMPLETE") & _numeric(frame, "val_accuracy").notna() & _numeric(frame, "epsilon").notna()
    return frame[mask]


def best_within_budget(frame: pd.DataFrame, target_epsilon: float | None) -> int | None:
    """The number of the best trial within the budget, by the one rule
    (dptune.study.results.best_within, as `dptune tune` and `dptune export` choose) applied to
    the frame's COMPLETE trials and their total ε (training plus the releases before it,
    `epsilon_total`), without those over the search's fairness_limit. None when no trial
    qualifies."""
    done = comparable_trials(frame)
    if "within_fairness_limit" in done:
        done = done[done["within_fairness_limit"].astype(object).ne(False)]  # over the fairness_limit: never chosen
    total = _numeric(done, "epsilon_total").fillna(_numeric(done, "epsilon"))
    return best_within(zip(done["number"], _numeric(done, "val_accuracy"), total), target_epsilon)


def _hover_text(row: Mapping[str, Any]) -> str:
    parts = [f"trial {int(row['number'])}"]
    for column, label, fmt in (
        ("val_accuracy", "val acc", "{:.4f}"),
        ("epsilon", "ε", "{:.3g}"),
        ("l2_norm_clip", "C", "{:.3g}"),
        ("noise_multiplier", "σ", "{:.3g}"),
        ("num_microbatches", "m", "{:.0f}"),
        ("learning_rate", "lr", "{:.3g}"),
        ("batch_size", "B", "{:.0f}"),
        ("epochs", "epochs", "{:.3g}"),
        ("examples_per_second", "examples/s", "{:,.0f}"),
    ):
        value = row.get(column)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            try:
                parts.append(f"{label} = {fmt.format(float(value))}")
            except (TypeError, ValueError):
                continue
    return "<br>".join(parts)


def _history_records(history: Any) -> list[dict[str, Any]]:
    if history is None or (isinstance(history, float) and math.isnan(history)):
        return []
    return [dict(item) for item in history if isinstance(item, Mapping)]


def highlighted_trials(frame: pd.DataFrame, highlight: Iterable[int] | None = None) -> list[int]:
    """Trials drawn individually: those asked for, else running ones and the most accurate."""
    if highlight is not None:
        return [int(n) for n in highlight][:MAX_HIGHLIGHTED_CURVES]
    states = _states(frame)
    running = frame.loc[states == "RUNNING", "number"].astype(int).tolist()
    done = comparable_trials(frame)
    best = done.sort_values("val_accuracy", ascending=False)["number"].astype(int).tolist() if len(done) else []
    chosen: list[int] = []
    for number in running + best + frame["number"].astype(int).tolist():
        if number not in chosen:
            chosen.append(number)
        if len(chosen) >= MAX_HIGHLIGHTED_CURVES:
            break
    return chosen


def plots_colorway() -> list[str]:
    """Plotly's default qualitative colours, in order (trial i gets colour i mod len)."""
    return list(plotly.colors.qualitative.Plotly)


def pareto_mask(epsilon: Sequence[float], accuracy: Sequence[float]) -> np.ndarray:
    """True where no other point has ε <= and accuracy >= with one strictly better.

    Lower ε and higher accuracy are better. O(n log n): sort by ε (ties: best accuracy
    first) and keep the points that raise the best accuracy seen so far.
    """
    eps = np.asarray(epsilon, dtype=float)
    acc = np.asarray(accuracy, dtype=float)
    mask = np.zeros(len(eps), dtype=bool)
    order = np.lexsort((-acc, eps))
    best = -math.inf
    for index in order:
        if not (math.isfinite(eps[index]) and math.isfinite(acc[index])):
            continue
        if acc[index] > best:
            mask[index] = True
            best = acc[index]
    return mask


def _trade_off_figure(x: np.ndarray, y: np.ndarray, numbers: np.ndarray, hover: list[str], *,
                      marker: Mapping[str, Any], selected: int | None, front_name: str) -> go.Figure:
    """A trade-off scatter (lower x, higher y is better): one marker per finished trial
    (customdata = its trial number, so a click selects it; `marker` sets its size, colour and
    colour bar on the Viridis scale), the step line `front_name` through the trials no other
    beats in both (pareto_mask), and a ring on the `selected` trial number."""
    figure = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="markers",
            name="trials",
            customdata=numbers,
            hovertext=hover,
            hoverinfo="text",
            marker={"colorscale": "Viridis", "line": {"width": 0.5, "color": "#333"}, **marker},
        )
    )
    front = pareto_mask(x, y)
    if front.any():
        order = np.argsort(x[front])
        figure.add_trace(
            go.Scatter(
                x=x[front][order],
                y=y[front][order],
                mode="lines",
                line={"shape": "hv", "color": "#c62828", "width": 2},
                name=front_name,
                hoverinfo="skip",
            )
        )
    if selected is not None and selected in set(numbers.tolist()):
        index = int(np.flatnonzero(numbers == selected)[0])
        figure.add_trace(
            go.Scatter(
                x=[x[index]],
                y=[y[index]],
                mode="markers",
                name=f"trial {selected}",
                marker={"size": 20, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": "#d81b60"}},
                hoverinfo="skip",
            )
        )
    return figure


def _trade_off_layout(figure: go.Figure, *, height: int, xaxis_title: str, xaxis_type: str, **layout: Any) -> None:
    """The layout of a trade-off scatter: validation accuracy up the y axis, the legend below,
    a click selects a trial; `layout` adds or overrides Plotly layout keys."""
    figure.update_layout(
        height=height,
        xaxis_title=xaxis_title,
        xaxis_type=xaxis_type,
        yaxis_title="validation accuracy",
        legend={"orientation": "h", "y": -0.2},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        clickmode="event+select",
        **layout,
    )
