"""Plotly figures for the privacy-utility-speed trade-offs (pure functions, no Streamlit).

Every function takes plain data (the `dptune.study.results.trials_frame` DataFrame, a trial's
history records, arrays) and returns a `plotly.graph_objects.Figure`; nothing here reads
storage or keeps state. Column names are those of `trials_frame` (docs/INTERFACES.md):
`number, state, val_accuracy, epsilon, epsilon_pld, l2_norm_clip, noise_multiplier,
num_microbatches, learning_rate, batch_size, epochs, seconds_per_step,
examples_per_second, train_seconds, device, fail_reason, history, epochs_done, phase`.

Epsilon semantics shown in captions (`EPSILON_PER_TRIAL`, `epsilon_with_search_caption`):
a trial's ε is the privacy cost of training that one configuration once (RDP accountant
at the trial's δ); releasing the best of many trials costs more, which the search-cost
accountant (`dptune.privacy.search_cost_*`) adds on top.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

EPSILON_PER_TRIAL = (
    "ε is per trial: the privacy cost of training that one configuration once "
    "(RDP accountant, at the study's δ). It does not include the cost of the search."
)

#: Trials drawn as their own coloured line in the per-trial curve plots; the rest are
#: drawn as one grey trace (keeps 500-trial studies fast to build and to render).
MAX_HIGHLIGHTED_CURVES = 12

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


def finished_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """Complete trials with both an accuracy and an ε."""
    if frame is None or len(frame) == 0:
        return pd.DataFrame(columns=list(frame.columns) if frame is not None else [])
    mask = (_states(frame) == "COMPLETE") & _numeric(frame, "val_accuracy").notna() & _numeric(frame, "epsilon").notna()
    return frame[mask]


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


def best_within_budget(frame: pd.DataFrame, target_epsilon: float | None) -> int | None:
    """Number of the most accurate complete trial whose total ε (training plus the releases
    before it, `epsilon_total`, as `dptune.study.results.best_trial_within` and `dptune export`
    use) is <= target (any ε when target is None).

    Ties go to the smaller ε, then the lower trial number. None when no trial qualifies.
    """
    done = finished_trials(frame)
    total = _numeric(done, "epsilon_total").fillna(_numeric(done, "epsilon"))
    if target_epsilon is not None:
        done, total = done[total <= float(target_epsilon) * (1 + 1e-9)], total[total <= float(target_epsilon) * (1 + 1e-9)]
    if len(done) == 0:
        return None
    ranked = done.assign(_acc=_numeric(done, "val_accuracy"), _eps=total).sort_values(
        ["_acc", "_eps", "number"], ascending=[False, True, True]
    )
    return int(ranked["number"].iloc[0])


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
    and a ring marks the `selected` trial.
    """
    done = finished_trials(frame)
    if len(done) == 0:
        return message_figure("No finished trial yet: the Pareto front appears when the first trial completes.")
    eps = _numeric(done, "epsilon").to_numpy()
    acc = _numeric(done, "val_accuracy").to_numpy()
    speed = _numeric(done, "examples_per_second").to_numpy()
    numbers = done["number"].astype(int).to_numpy()
    hover = [_hover_text(row) for row in done.to_dict("records")]
    has_speed = bool(np.isfinite(speed).any())
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=eps,
            y=acc,
            mode="markers",
            name="trials",
            customdata=numbers,
            hovertext=hover,
            hoverinfo="text",
            marker={
                "size": 10,
                "color": np.nan_to_num(speed, nan=0.0) if has_speed else "#1565c0",
                "colorscale": "Viridis",
                "showscale": has_speed,
                "colorbar": {"title": {"text": "examples/s"}} if has_speed else None,
                "line": {"width": 0.5, "color": "#333"},
            },
        )
    )
    front = pareto_mask(eps, acc)
    if front.any():
        order = np.argsort(eps[front])
        figure.add_trace(
            go.Scatter(
                x=eps[front][order],
                y=acc[front][order],
                mode="lines",
                line={"shape": "hv", "color": "#c62828", "width": 2},
                name="Pareto front",
                hoverinfo="skip",
            )
        )
    if selected is not None and selected in set(numbers.tolist()):
        index = int(np.flatnonzero(numbers == selected)[0])
        figure.add_trace(
            go.Scatter(
                x=[eps[index]],
                y=[acc[index]],
                mode="markers",
                name=f"trial {selected}",
                marker={"size": 20, "color": "rgba(0,0,0,0)", "line": {"width": 3, "color": "#d81b60"}},
                hoverinfo="skip",
            )
        )
    if target_epsilon is not None:
        figure.add_vline(
            x=float(target_epsilon),
            line_dash="dash",
            line_color="#555",
            annotation_text=f"target ε = {target_epsilon:g}",
            annotation_position="top",
        )
    finite = eps[np.isfinite(eps)]
    if finite.size and (finite.max() - finite.min()) <= 0.02 * max(abs(finite.max()), 1e-12):
        # budgeted mode: every trial spends (almost) the target ε; widen the axis around it
        centre = float(np.median(finite))
        span = max(0.1 * abs(centre), 1e-3)
        figure.update_xaxes(range=[centre - span, centre + span])
    figure.update_layout(
        height=height,
        xaxis_title="ε per trial (lower is more private)",
        xaxis_tickformat=".3~g",
        yaxis_title="validation accuracy",
        legend={"orientation": "h", "y": -0.2},
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        clickmode="event+select",
    )
    return figure


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
    done = finished_trials(frame)
    best = done.sort_values("val_accuracy", ascending=False)["number"].astype(int).tolist() if len(done) else []
    chosen: list[int] = []
    for number in running + best + frame["number"].astype(int).tolist():
        if number not in chosen:
            chosen.append(number)
        if len(chosen) >= MAX_HIGHLIGHTED_CURVES:
            break
    return chosen


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
    if target_epsilon is not None and len(figure.data):
        figure.add_hline(
            y=float(target_epsilon), line_dash="dash", line_color="#555", annotation_text=f"target ε = {target_epsilon:g}"
        )
    recorded = [
        float(value) for trace in figure.data
        if trace.name and not trace.name.endswith("planned run") and trace.y is not None
        for value in trace.y if value is not None and math.isfinite(float(value))
    ]
    if recorded and accountant_curves:
        # planned runs can end far above what was recorded (pareto mode, small σ): keep the
        # recorded ε readable and let those curves leave the top of the chart
        top = max(max(recorded), float(target_epsilon or 0.0)) * 1.3
        figure.update_yaxes(range=[0, top])
    return figure


def plots_colorway() -> list[str]:
    import plotly.colors

    return list(plotly.colors.qualitative.Plotly)


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


def parallel_coordinates_figure(frame: pd.DataFrame, *, height: int = 420) -> go.Figure:
    """Parallel coordinates over C, σ, m, learning rate, batch size (log10 where it spans decades),
    coloured by validation accuracy."""
    done = finished_trials(frame)
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
        accuracy = trial.user_attrs.get("val_accuracy")
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
