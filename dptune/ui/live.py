"""The live view of a study: polled from the storage with `st.fragment(run_every=...)`.

Nothing here trains: trials run in worker processes; this reads what they write after
every epoch (history, ε so far) and shows it. While trials run or wait, the fragment
reruns every `POLL_SECONDS`; when the study goes quiet it triggers one full rerun (so the
other parts of the page pick up the final results) and stops polling.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from dptune.privacy.statement import format_epsilon
from dptune.report import plots
from dptune.study.format import TrialRecord
from dptune.study.modes import study_mode
from dptune.ui import core, searching
from dptune.ui.workers import live_workers

STATE_LABELS = {
    "COMPLETE": "finished",
    "PRUNED": "pruned",
    "FAIL": "failed",
    "RUNNING": "running",
    "WAITING": "queued",
}


def _fmt(value: Any, pattern: str = "{:.4g}") -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return pattern.format(number) if math.isfinite(number) else "–"


def study_is_active(name: str) -> bool:
    """True while trials run (here or on another machine) or a worker started here is alive."""
    study = core.load_study(name)
    if core.state_counts(study).get("RUNNING", 0):
        return True
    return bool(live_workers(core.workspace(), name))


def _reason(row: pd.Series, trial: Any) -> str:
    state = plots.normalize_state(row["state"])
    record = TrialRecord.of(trial) if trial is not None else TrialRecord()
    if state == "FAIL":
        return str(row.get("fail_reason") or record.fail_reason or "failed (no reason recorded; see the worker log)")
    if state == "PRUNED":
        return str(record.prune_reason or "pruned: its validation accuracy was below what the pruner keeps")
    if state == "COMPLETE":
        return "stopped early" if record.stopped_early else ""
    return ""


def status_table(snapshot: core.StudySnapshot, *, limit: int | None = 200) -> pd.DataFrame:
    """Finished, pruned and failed trials with their numbers and the reason, newest first."""
    frame = snapshot.frame
    by_number = {t.number: t for t in snapshot.trials}
    done = frame[frame["state"].map(plots.normalize_state).isin(["COMPLETE", "PRUNED", "FAIL"])]
    done = done.sort_values("number", ascending=False)
    if limit is not None:
        done = done.head(limit)
    rows = []
    for _, row in done.iterrows():
        state = plots.normalize_state(row["state"])
        rows.append(
            {
                "trial": int(row["number"]),
                "status": STATE_LABELS.get(state, state.lower()),
                "val accuracy": row.get("val_accuracy"),
                "ε": row.get("epsilon"),
                "C": row.get("l2_norm_clip"),
                "σ": row.get("noise_multiplier"),
                "m": row.get("num_microbatches"),
                "lr": row.get("learning_rate"),
                "B": row.get("batch_size"),
                "epochs": f"{int(row.get('epochs_done') or 0)}/{_fmt(row.get('epochs'), '{:g}')}",
                "reason": _reason(row, by_number.get(int(row["number"]))),
            }
        )
    return pd.DataFrame(rows)


def recipe_steps(recipe: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """The recipe's steps as (status, title, text) from the study attribute `recipe`;
    status is "done", "failed" or "pending"."""
    recipe = recipe or {}
    steps: list[tuple[str, str, str]] = []
    clip = recipe.get("clip")
    steps.append(("done", "1. Clip norm", (
        f"C = {_fmt(clip.get('l2_norm_clip'), '{:.3g}')} ({clip.get('source')}"
        + (f", {clip.get('quantile'):.0%} quantile, ε_C = {_fmt(clip.get('epsilon'), '{:g}')}" if clip.get("quantile")
           else "") + ")"
    )) if clip else ("pending", "1. Clip norm", "profiling the gradient norms…"))
    baseline = recipe.get("baseline")
    steps.append(("done", "2a. Non-private baseline", (
        f"val accuracy {_fmt(baseline.get('val_accuracy'))}; the noise search keeps ≥ "
        f"{_fmt(baseline.get('threshold'))} (tolerance {_fmt(baseline.get('tolerance'), '{:g}')})"
    )) if baseline else ("pending", "2a. Non-private baseline", "training without noise (σ = 0, m = 1)…"))
    noise = recipe.get("noise_search")
    if noise and noise.get("message") and not noise.get("feasible_trials"):
        steps.append(("failed", "2b. Largest σ at m = 1", noise["message"]))
    elif noise:
        steps.append(("done", "2b. Largest σ at m = 1", (
            f"σ₁ = {_fmt(noise.get('noise_multiplier'))} (trial {noise.get('trial')}, val accuracy "
            f"{_fmt(noise.get('val_accuracy'))}, effective noise σC = {_fmt(noise.get('effective_noise'))})"
        )))
    else:
        steps.append(("pending", "2b. Largest σ at m = 1", "searching σ and the learning rate with m = 1…"))
    scaled = recipe.get("scaled")
    if scaled and not scaled.get("feasible"):
        steps.append(("failed", "3. Scale σ and m to the target ε",
                      (scaled.get("message") or "") + ("; would work: " + "; ".join(scaled.get("suggestions") or [])
                                                       if scaled.get("suggestions") else "")))
    elif scaled:
        steps.append(("done", "3. Scale σ and m to the target ε", (
            f"k = {scaled.get('factor')}: σ = {_fmt(scaled.get('noise_multiplier'))}, m = {scaled.get('num_microbatches')}"
            f" (σ/m unchanged), B = {scaled.get('batch_size')}, ε = {format_epsilon(scaled.get('epsilon_rdp'))}"
            f", with the clip selection {format_epsilon(scaled.get('epsilon_total'))}"
        )))
    elif noise and noise.get("feasible_trials"):
        steps.append(("pending", "3. Scale σ and m to the target ε", "calibrating…"))
    verify = recipe.get("verify")
    if verify:
        steps.append(("done", "4. Verify", (
            f"val accuracy {_fmt(verify.get('val_accuracy_mean'))} ± {_fmt(verify.get('val_accuracy_std'), '{:.2g}')} "
            f"over trials {verify.get('trials')} (predicted at m = 1: {_fmt(verify.get('predicted_val_accuracy'))})"
        )))
    elif scaled and scaled.get("feasible"):
        steps.append(("pending", "4. Verify", "full runs of the scaled configuration…"))
    return steps


def recipe_panel(recipe: dict[str, Any] | None) -> None:
    icons = {"done": ":material/check_circle:", "failed": ":material/error:", "pending": ":material/hourglass_top:"}
    for status, title, text in recipe_steps(recipe):
        st.markdown(f"{icons[status]} **{title}** — {text}")


def running_trial(trial: Any, *, target_epsilon: float | None, chart_key: str) -> None:
    """One running trial: a progress bar over its epochs and its accuracy and ε curves."""
    record = TrialRecord.of(trial)
    history = list(record.history)
    config = record.config or {}
    total = float(record.total_epochs or config.get("epochs") or 0)
    done = len(history)
    fraction = min(1.0, done / total) if total else 0.0
    last = history[-1] if history else {}
    text = (
        f"trial {trial.number} · epoch {done}/{_fmt(total, '{:g}')} · val acc {_fmt(last.get('val_accuracy'))} · "
        f"ε so far {format_epsilon(last.get('epsilon'))} of {format_epsilon(record.epsilon_planned)} planned · "
        f"C={_fmt(config.get('l2_norm_clip'), '{:.3g}')} σ={_fmt(config.get('noise_multiplier'), '{:.3g}')} "
        f"m={config.get('num_microbatches', '–')} B={config.get('batch_size', '–')}"
    )
    if not config:
        text = f"trial {trial.number} · starting (choosing its configuration, compiling the model)…"
    st.progress(fraction, text=text)
    if history:
        figure = plots.trial_progress_figure(
            history, total_epochs=total, epsilon_planned=record.epsilon_planned, target_epsilon=target_epsilon
        )
        st.plotly_chart(figure, key=chart_key, config={"displayModeBar": False})


@dataclass(frozen=True)
class LiveView:
    """What the live panel shows, all from ONE read of the trials (one snapshot), so the
    counts and the running-trial panels always agree: `running` are exactly the trials
    counted as running."""

    counts: dict[str, int]
    running: tuple
    finished: int
    total: int


def live_view(snapshot: core.StudySnapshot) -> LiveView:
    """The counts and the running trials of `snapshot`, derived from the same trials."""
    trials = tuple(snapshot.trials)
    counts = core.counts_of(trials)
    running = tuple(t for t in trials if t.state.name == "RUNNING")
    planned = snapshot.record.n_trials_planned
    finished = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) + counts.get("FAIL", 0)
    total = max(planned, finished + len(running) + counts.get("WAITING", 0), 1)
    return LiveView(counts=counts, running=running, finished=finished, total=total)


def _summary(view: LiveView, workers: list) -> None:
    counts = view.counts
    st.progress(
        min(1.0, view.finished / view.total),
        text=(
            f"{view.finished} of {view.total} trials done — {counts.get('COMPLETE', 0)} finished, "
            f"{counts.get('PRUNED', 0)} pruned, {counts.get('FAIL', 0)} failed, "
            f"{len(view.running)} running, {counts.get('WAITING', 0)} queued · "
            f"{len(workers)} worker process{'es' if len(workers) != 1 else ''} started here alive"
        ),
    )


def live_monitor(name: str, *, key: str = "live", show_table: bool = True) -> None:
    """Progress of the study `name`, refreshed every POLL_SECONDS while it runs."""
    active = study_is_active(name)

    @st.fragment(run_every=core.POLL_SECONDS if active else None)
    def monitor() -> None:
        # one container, replaced whole on every run: nothing of an earlier run (a panel of a
        # trial that has finished since) stays on screen beside the new counts
        with st.empty().container(), core.guard("Reading the study"):
            snapshot = core.snapshot(name)  # the one read of the trials this rerun shows
            view = live_view(snapshot)
            workers = live_workers(core.workspace(), name)
            _summary(view, workers)
            if study_mode(snapshot.record).phased:  # the recipe: show its steps
                recipe_panel(snapshot.record.recipe)
            target = snapshot.record.target_epsilon
            running = view.running
            for trial in running:
                running_trial(trial, target_epsilon=target, chart_key=f"{key}-trial-{trial.number}")
            if running and not workers:
                # nothing of ours runs them: they may be on another machine, or their worker was
                # stopped; Optuna's heartbeat tells (checked at most every 10 s)
                last = st.session_state.get(f"{key}-reaped", 0.0)
                if time.time() - last > 10:
                    st.session_state[f"{key}-reaped"] = time.time()
                    searching.reap_stale(name)
                st.caption("Trials without a worker started here: running on another machine, or interrupted "
                           "(an interrupted trial is marked failed and re-queued once its heartbeat is 3 "
                           "intervals old).")
            if view.counts.get("WAITING", 0) and not workers and not running:
                st.info(
                    f"{view.counts['WAITING']} trial(s) are queued but no worker is running: press "
                    "**Start workers** on the Search page (or run `dptune worker` on another machine).",
                    icon=":material/pause_circle:",
                )
            if show_table:
                table = status_table(snapshot, limit=50)
                if len(table):
                    st.dataframe(
                        table,
                        hide_index=True,
                        column_config={
                            "val accuracy": st.column_config.NumberColumn(format="%.4f"),
                            "ε": st.column_config.NumberColumn(format="%.3f"),
                            "C": st.column_config.NumberColumn(format="%.3g"),
                            "σ": st.column_config.NumberColumn(format="%.3g"),
                            "lr": st.column_config.NumberColumn(format="%.3g"),
                            "reason": st.column_config.TextColumn(width="large"),
                        },
                        key=f"{key}-table",
                    )
            still_active = bool(running) or bool(workers)
            if active and not still_active and st.session_state.get(f"{key}-was-active"):
                st.session_state[f"{key}-was-active"] = False
                st.rerun()
            st.session_state[f"{key}-was-active"] = still_active

    monitor()
