"""Choosing a study and a trial, and showing one trial in full (Trade-offs and Export pages)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from dptune import privacy
from dptune.errors import DPTuneError
from dptune.privacy.statement import format_epsilon
from dptune.report import plots
from dptune.study.format import TrialRecord
from dptune.ui import core


def study_picker(key: str, *, collaborative: bool = False) -> str | None:
    """A select box of the workspace's studies (the current one first; collaborative searches
    too with `collaborative`); None when there is none."""
    names = core.study_names(collaborative=collaborative)
    if not names:
        st.info("No study yet: start one on the Search page, or press the one-click search on the Start page.",
                icon=":material/info:")
        return None
    current = core.load_state().get("study")
    index = names.index(current) if current in names else 0
    name = st.selectbox("Study", names, index=index, key=key)
    if name != current:
        core.update_state("study", name=name)
    return name


def exportable(frame: pd.DataFrame) -> pd.DataFrame:
    """Trials with a result: COMPLETE, or PRUNED (exported with the epochs they ran)."""
    states = frame["state"].map(plots.normalize_state)
    return frame[states.isin(["COMPLETE", "PRUNED"]) & frame["val_accuracy"].notna()]


def trial_label(row: Any, best: int | None = None) -> str:
    parts = [f"trial {int(row['number'])}"]
    if row.get("val_accuracy") is not None and not pd.isna(row.get("val_accuracy")):
        parts.append(f"val acc {float(row['val_accuracy']):.4f}")
    if row.get("epsilon") is not None and not pd.isna(row.get("epsilon")):
        parts.append(f"ε {float(row['epsilon']):.3g}")
    state = plots.normalize_state(row["state"])
    if state != "COMPLETE":
        parts.append(state.lower())
    if best is not None and int(row["number"]) == best:
        parts.append("★ best within target ε")
    return " · ".join(parts)


def _fmt(value: Any, pattern: str = "{:.4g}") -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–" if value in (None, "") else str(value)
    return pattern.format(number) if math.isfinite(number) else "∞"


def trial_details(snapshot: core.StudySnapshot, number: int, *, key: str) -> None:
    """Everything about one trial: its hyperparameters, accuracy, ε (per trial), timing, curves."""
    trial = next((t for t in snapshot.trials if t.number == number), None)
    if trial is None:
        st.warning(f"Trial {number} is not in this study.")
        return
    record = TrialRecord.of(trial)
    config = record.config or {}
    state = trial.state.name
    st.markdown(f"#### Trial {number} — {state.lower()}" + (f" ({record.phase})" if record.phase else ""))
    if state == "FAIL":
        st.error(record.fail_reason or "failed without a recorded reason (its worker was killed or lost)")
    elif state == "PRUNED":
        st.warning(record.prune_reason or "pruned: its accuracy was below what the pruner keeps")
    cols = st.columns(3)
    cols[0].metric("val accuracy", _fmt(record.val_accuracy))
    cols[1].metric("ε (RDP, this run)", format_epsilon(record.epsilon_rdp),
                   help=f"RDP accountant at δ = {_fmt(record.delta, '{:.2g}')}, order {record.rdp_order}")
    cols[2].metric("ε (PLD, this run)", format_epsilon(record.epsilon_pld))
    hyper = {
        "C (l2_norm_clip)": _fmt(config.get("l2_norm_clip")),
        "σ (noise_multiplier)": _fmt(config.get("noise_multiplier")),
        "m (num_microbatches)": _fmt(config.get("num_microbatches"), "{:.0f}"),
        "learning_rate": _fmt(config.get("learning_rate")),
        "batch_size": _fmt(config.get("batch_size"), "{:.0f}"),
        "epochs": _fmt(config.get("epochs"), "{:g}"),
        "optimizer": config.get("optimizer", "–"),
        "sampling": config.get("sampling", "–"),
        "effective noise σC/m": _fmt(
            (config.get("noise_multiplier") or 0) * (config.get("l2_norm_clip") or 0)
            / max(1, config.get("num_microbatches") or 1)
        ),
        "δ": _fmt(record.delta, "{:.3g}"),
        "ε incl. releases before training": format_epsilon(record.epsilon_total),
        "train seconds": _fmt(record.train_seconds, "{:.2f}"),
        "examples / s": _fmt(record.examples_per_second, "{:,.0f}"),
        "device": record.device or "–",
        "gradient path": record.gradient_path or "–",
    }
    st.dataframe(pd.DataFrame({"value": hyper}), key=f"{key}-hyper")
    if record.history:
        st.plotly_chart(
            plots.trial_progress_figure(record.history, total_epochs=record.total_epochs,
                                        epsilon_planned=record.epsilon_planned,
                                        target_epsilon=snapshot.record.target_epsilon),
            key=f"{key}-curves", config={"displayModeBar": False},
        )


def budgeted_epsilon_caption(done: pd.DataFrame, target: Any) -> str:
    """Why a budgeted study's main figure has no ε axis: every trial's ε is the target (σ
    calibrated to it), up to the rounding of the step count; the range actually spent is said."""
    epsilon = pd.to_numeric(done["epsilon"], errors="coerce").dropna() if "epsilon" in done else pd.Series([], dtype=float)
    spent = (f" (here ε = {format_epsilon(float(epsilon.min()))} to {format_epsilon(float(epsilon.max()))})"
             if len(epsilon) else "")
    return (f"Budgeted search: σ is calibrated so that every trial spends the target ε = {_fmt(target, '{:g}')}"
            f"{spent}; its differences are the rounding of the step count, so the trials are compared on "
            "accuracy, time and the hyperparameters that vary (m, C, learning rate, B, epochs).")


def search_cost_caption(snapshot: core.StudySnapshot) -> str:
    """What the whole search spent, beside the per-trial ε (from the study's `search_cost`)."""
    cost = snapshot.record.search_cost or {}
    if not cost:
        return "ε including the search: not computed yet (it appears once a trial finishes)."
    release = cost.get("selected_release_epsilon")
    text = (
        f"ε including the search: releasing the selected trial of this study costs "
        f"ε = {format_epsilon(release)} at δ = {_fmt(cost.get('delta'), '{:.2g}')} "
        f"({cost.get('n_trials_charged')} trial(s) charged). "
    )
    return text + (cost.get("note") or "")


@st.cache_data(show_spinner=False, max_entries=2048)
def _curve(n: int, batch: int, sigma: float, epochs: float, delta: float, microbatched: bool) -> list:
    steps = privacy.num_steps(n, batch, epochs)
    return privacy.epsilon_curve(n, batch, sigma, epochs=epochs, delta=delta, microbatched=microbatched,
                                 every=max(1, steps // 60))


def accountant_curves(snapshot: core.StudySnapshot, numbers: list[int]) -> dict[int, list]:
    """{trial: the accountant's ε after every few steps of its planned run} (RDP, study's δ)."""
    study = snapshot.record
    n = study.n_train
    by_number = {t.number: TrialRecord.of(t) for t in snapshot.trials}
    curves = {}
    for number in numbers:
        record = by_number.get(number, TrialRecord())
        config = record.config or {}
        delta = record.delta or study.delta
        if not n or not config or not delta or not config.get("noise_multiplier"):
            continue
        try:
            curves[number] = _curve(n, int(config["batch_size"]), float(config["noise_multiplier"]),
                                    float(config["epochs"]), float(delta),
                                    int(config["num_microbatches"]) < int(config["batch_size"]))
        except (DPTuneError, KeyError, TypeError, ValueError):
            continue
    return curves
