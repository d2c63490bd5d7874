"""The Trade-offs page of a collaborative (DSSGD) search (`dptune.study.collaborative`): the
baselines, the server model's accuracy against θu, the worst participant's ε and the bytes
uploaded per round, one trial's participants, and its YAML (`dptune collab --config` runs it)."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st
import yaml

from dptune.privacy.collaborative import NOT_COVERED
from dptune.privacy.statement import format_epsilon
from dptune.report import plots
from dptune.study.collaborative import best_trial, collaborative_frame, exported_run, worst_search_charge
from dptune.study.format import StudyRecord, TrialRecord
from dptune.ui import core

FIGURE_TABS = {"theta_upload": "Accuracy vs θu", "worst_epsilon": "Accuracy vs ε",
               "bytes_per_round": "Accuracy vs bytes per round"}


def _epsilon(value: float | None) -> str:
    return format_epsilon(math.inf if value is None or pd.isna(value) else float(value))


def show(name: str) -> None:
    """Draw the page for the collaborative study `name`."""
    study = core.load_study(name)
    record = StudyRecord.of(study)
    summary = record.collaborative or {}
    baselines = summary.get("baselines") or {}
    frame = collaborative_frame(study)
    done = frame[frame["state"] == "COMPLETE"]
    best = best_trial(study)
    target = record.target_epsilon
    st.caption(f"Collaborative search (distributed selective SGD) on {record.dataset.name}: {len(done)} finished "
               f"trial(s) of {record.n_trials_planned} · shard sizes {', '.join(map(str, summary.get('shard_sizes', [])))}"
               + (f" · target ε {target:g} per participant" if target is not None else ""))
    columns = st.columns(4)
    columns[0].metric("Centralized accuracy", f"{baselines.get('centralized', float('nan')):.4f}",
                      help="All training rows pooled, plain SGD, same model and epochs: what sharing everything buys.")
    columns[1].metric("Standalone accuracy (mean)", f"{baselines.get('standalone_mean', float('nan')):.4f}",
                      help="Each participant alone on its own shard, plain SGD: what no collaboration gives. Worst "
                           f"participant: {min(baselines.get('standalone') or [float('nan')]):.4f}.")
    if best is None:
        columns[2].metric("Best collaborative accuracy", "–")
        st.warning("No finished trial" + (f" within the target ε = {target:g}" if target is not None else "") + " yet.",
                   icon=":material/hourglass_top:")
    else:
        row = done[done["number"] == best].iloc[0]
        columns[2].metric(f"Best collaborative accuracy (trial {best})", f"{row['accuracy']:.4f}")
        columns[3].metric(f"Worst participant's ε (trial {best})", _epsilon(row["worst_epsilon"]),
                          help="The largest ε any participant is charged for that one run.")
    tabs = st.tabs(list(FIGURE_TABS.values()))
    for tab, axis in zip(tabs, FIGURE_TABS):
        with tab:
            st.plotly_chart(plots.collaborative_figure(frame, axis, baselines, selected=best),
                            key=f"collab-{axis}-{name}")
    st.caption("One marker per finished trial (colour: θd, when the search varies it); the red line joins the trials no other beats with less "
               "of the x axis; dashed: the baselines. Each trial's ε is for that one run.")
    _charge_caption(record)
    st.caption(f"What ε covers: {NOT_COVERED.replace('epsilon', 'ε', 1)}.")
    if len(done):
        _trial_details(study, done, best, name)
    st.dataframe(frame, hide_index=True, key=f"collab-table-{name}")


def _charge_caption(record: StudyRecord) -> None:
    charge = worst_search_charge(record)
    if charge is not None and math.isinf(charge[0]):
        st.caption("No privacy: the uploads are exact parameter changes, ε = ∞ for every trial.")
    elif charge is not None:
        st.caption(f"The search itself: every participant took part in every trial, so releasing all of them costs "
                   f"each participant up to ε = {format_epsilon(charge[0])} ({charge[1]}).")


def _trial_details(study, done: pd.DataFrame, best: int | None, name: str) -> None:
    numbers = [int(n) for n in done["number"]]
    number = st.selectbox("Trial", numbers, index=numbers.index(best) if best in numbers else 0,
                          format_func=lambda n: f"trial {n}" + (" (best)" if n == best else ""),
                          key=f"collab-trial-{name}")
    trial_summary = TrialRecord.of(study.trials[number]).collaborative or {}
    participants = pd.DataFrame(trial_summary.get("participants", []))
    if len(participants):
        participants.insert(0, "participant", range(len(participants)))
        participants["epsilon"] = participants["epsilon"].map(_epsilon)
        st.dataframe(participants, hide_index=True, key=f"collab-participants-{name}")
    text = yaml.safe_dump(exported_run(study, number).to_dict(), sort_keys=False)
    st.download_button("Download this trial's YAML", text, file_name=f"{name}-trial-{number}.yaml",
                       mime="application/x-yaml", icon=":material/download:", key=f"collab-yaml-{name}",
                       help="Run it again with: dptune collab --config <file>")
