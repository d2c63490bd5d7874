"""Trade-offs: privacy (ε), utility (accuracy) and speed across the trials of a study."""

import streamlit as st

from dptune.report import plots
from dptune.study.format import StudyRecord
from dptune.study.modes import NoisePolicy, study_mode
from dptune.ui import collaborative_view, core, harms_view, shell, trial_view

shell.frame("Trade-offs")
st.title("Trade-offs")

with core.guard("Trade-offs"):
    name = trial_view.study_picker("trade-study", collaborative=True)
    if name is None:
        st.stop()
    if StudyRecord.of(core.load_study(name)).is_collaborative:
        collaborative_view.show(name)
        st.stop()
    snapshot = core.snapshot(name)
    frame = snapshot.frame
    record = snapshot.record
    target = record.target_epsilon
    done = plots.comparable_trials(frame)
    best = plots.best_within_budget(frame, target)
    st.caption(
        f"{len(done)} finished trial(s) of {len(frame)} · mode {record.mode} · target ε {target}"
        + (f" · best within the target: trial {best}" if best is not None else "")
    )
    if len(done) == 0:
        st.warning("No trial has finished yet: the plots fill in as trials complete (watch them on the Search page).",
                   icon=":material/hourglass_top:")
    elif best is None:
        st.warning(f"No finished trial is within the target ε = {target}. Pick the closest one below, or run more "
                   "trials / a larger σ range / a larger target on the Search page.", icon=":material/warning:")

    numbers = [int(n) for n in done["number"]]
    select_key = f"trade-trial-{name}"
    if select_key not in st.session_state or st.session_state[select_key] not in numbers:
        st.session_state[select_key] = best if best is not None else (numbers[0] if numbers else None)

    def on_click() -> None:
        event = st.session_state.get(f"trade-pareto-{name}")
        points = (event or {}).get("selection", {}).get("points", []) if event else []
        for point in points:
            custom = point.get("customdata")
            number = custom[0] if isinstance(custom, (list, tuple)) else custom
            if number is not None and int(number) in numbers:
                st.session_state[select_key] = int(number)
                break

    left, right = st.columns([3, 2])
    with left:
        if study_mode(record).noise_policy is NoisePolicy.CALIBRATED:
            # every trial spends the target ε (σ calibrated): an ε front would be step-rounding
            # noise, so the main figure shows what varies - time and m - against accuracy
            st.markdown("**Validation accuracy against training time** (every trial spends the target ε; "
                        "colour: microbatches m, ◆ per-example clipping; click a point)")
            st.plotly_chart(
                plots.accuracy_vs_time_figure(frame, selected=st.session_state.get(select_key)),
                key=f"trade-pareto-{name}", on_select=on_click, selection_mode="points",
            )
            st.caption(trial_view.budgeted_epsilon_caption(done, target) + " " + plots.EPSILON_PER_TRIAL + " "
                       + trial_view.search_cost_caption(snapshot))
        else:
            st.markdown("**Pareto front: ε against validation accuracy** (colour: training speed; click a point)")
            st.plotly_chart(
                plots.pareto_front_figure(frame, target_epsilon=target, selected=st.session_state.get(select_key)),
                key=f"trade-pareto-{name}", on_select=on_click, selection_mode="points",
            )
            st.caption(plots.EPSILON_PER_TRIAL + " " + trial_view.search_cost_caption(snapshot))
    with right:
        if numbers:
            labels = {int(row["number"]): trial_view.trial_label(row, best) for _, row in done.iterrows()}
            st.selectbox("Trial", numbers, format_func=labels.get, key=select_key)
            number = st.session_state[select_key]
            trial_view.trial_details(snapshot, number, key="trade-detail")
            if st.button("Export this trial", icon=":material/download:", key="trade-export"):
                core.update_state("selected", study=name, trial=number)
                st.switch_page("pages/export.py")

    # Lazy tabs: only the open tab's figure is built and sent (parallel coordinates draw with
    # WebGL, slow without a GPU; importances are a fit) - keeps the page fast at 500 trials.
    labels = ["ε vs steps", "Accuracy per epoch", "Parallel coordinates", "Importances", "Speed vs m",
              "Attacks & fairness"]
    tabs = st.tabs(labels, key="trade-tabs", on_change="rerun")
    with tabs[0]:
        if tabs[0].open is not False:
            shown = plots.highlighted_trials(frame)
            st.plotly_chart(plots.epsilon_curves_figure(frame, target_epsilon=target,
                                                        accountant_curves=trial_view.accountant_curves(snapshot, shown)),
                            key="trade-eps")
            st.caption("ε per trial against DP-SGD steps, by the RDP accountant at the study's δ: markers are what each "
                       "worker recorded after every epoch (the live accountant), lines the accountant's curve over the "
                       f"trial's whole planned run ({len(shown)} trials drawn: running ones and the most accurate; the "
                       "others in grey). It does not include the cost of the search.")
    with tabs[1]:
        if tabs[1].open is not False:
            st.plotly_chart(plots.accuracy_curves_figure(frame), key="trade-acc")
            st.caption("Validation accuracy after each epoch (running trials dotted). No privacy cost is shown here; "
                       "each trial's ε is per trial (see the ε curves).")
    with tabs[2]:
        if tabs[2].open is not False:
            st.plotly_chart(plots.parallel_coordinates_figure(frame), key="trade-parallel")
            st.caption("One line per finished trial over C, σ, m, learning rate, batch size and epochs, coloured by "
                       "validation accuracy. Drag along an axis to filter. ε is per trial (not shown here; in budgeted "
                       "mode every trial has the target ε).")
    with tabs[3]:
        if tabs[3].open is not False:
            st.plotly_chart(core.importances_figure(name, snapshot), key="trade-importance")
            st.caption("Optuna's PED-ANOVA importances of the searched hyperparameters for validation accuracy "
                       "(parameters fixed in the search do not appear). Per-trial results only; no ε is involved.")
    with tabs[4]:
        if tabs[4].open is not False:
            st.plotly_chart(plots.speed_vs_microbatches_figure(frame), key="trade-speed")
            st.caption("Training speed (examples per second, compilation excluded) against the number of "
                       "microbatches m: per-example clipping (m = B) costs time, m < B is faster but the accountant "
                       "charges σ/2 (more ε per trial for the same σ). ε is per trial.")
    with tabs[5]:
        if tabs[5].open is not False:
            harms_view.harms_tab(snapshot, st.session_state.get(select_key))
