"""Export: the chosen trial as run YAML (validated), downloadable, with the command that reproduces it."""

import streamlit as st

from dptune.report import plots
from dptune.ui import core, exporting, shell, trial_view

shell.frame("Export")
st.title("Export")
st.caption(
    "One YAML file with the TF Privacy keys (l2_norm_clip, noise_multiplier, num_microbatches, learning_rate, "
    "batch_size, epochs, optimizer), the sampling, ε and δ with the accountant's details, the dataset fingerprint, "
    "the model spec, the metrics, the search (study, trial, tuning cost) and the package versions. "
    "`dptune train --config` retrains exactly this run and recomputes its ε."
)

with core.guard("Export"):
    name = trial_view.study_picker("export-study")
    if name is None:
        st.stop()
    snapshot = core.snapshot(name)
    frame = snapshot.frame
    target = snapshot.record.target_epsilon
    candidates = trial_view.exportable(frame)
    if len(candidates) == 0:
        st.warning("No trial has finished yet, so there is nothing to export. Start or resume the search on the "
                   "Search page and come back when a trial has completed.", icon=":material/hourglass_top:")
        st.stop()
    best = plots.best_within_budget(frame, target)
    numbers = [int(n) for n in candidates["number"]]
    selected = core.load_state().get("selected") or {}
    if best is None:
        st.warning(
            f"No finished trial is within the target ε = {target}: every one spent more. The list below starts with "
            "the most accurate trial; its YAML states its real ε. To get one within the budget, run more trials, or a "
            "larger σ range (pareto mode), or use budgeted mode (σ calibrated to the target).",
            icon=":material/warning:",
        )
    default = best
    if selected.get("study") == name and selected.get("trial") in numbers:
        default = int(selected["trial"])
    if default is None:
        default = int(candidates.sort_values("val_accuracy", ascending=False)["number"].iloc[0])
    labels = {int(row["number"]): trial_view.trial_label(row, best) for _, row in candidates.iterrows()}
    number = st.selectbox("Trial to export", numbers, index=numbers.index(default), format_func=labels.get,
                          key=f"export-trial-{name}")
    if number != selected.get("trial") or selected.get("study") != name:
        core.update_state("selected", study=name, trial=number)

    export = exporting.export_yaml(snapshot, number)
    cols = st.columns(4)
    cols[0].metric("val accuracy", f"{export.val_accuracy:.4f}" if export.val_accuracy is not None else "–")
    cols[1].metric("ε of this run (RDP)", exporting.fmt(export.epsilon, void=export.void),
                   help="The training run alone, at the study's δ (every checkpoint).")
    cols[2].metric("ε incl. releases before training", exporting.fmt(export.epsilon_total, void=export.void),
                   help="Adds every clip-norm histogram released on this dataset and the preprocessing.")
    cols[3].metric("ε incl. the search", exporting.fmt(export.search_epsilon, void=export.void),
                   help="Releasing this trial after the whole search (composition over every trial that ran, or "
                   "the Papernot-Steinke bound when the number of trials was random).")
    st.markdown("**Privacy statement** (the same text `dptune export` and `dptune train` print and the YAML "
                "carries):")
    st.code(export.statement, language="text", wrap_lines=True)
    if export.valid:
        st.success(f"Validated: `{export.file_name}` loads with yaml.safe_load and passes dptune's run-config "
                   "checks (no unknown or missing keys).", icon=":material/verified:")
    else:
        st.error(f"The YAML did not validate: {export.error}")
    st.download_button("Download YAML", export.text, file_name=export.file_name, mime="application/x-yaml",
                       type="primary", icon=":material/download:", key="export-download")
    st.markdown("Reproduce it (the dataset is found by its fingerprint in the workspace; built-in data is rebuilt):")
    st.code(export.command, language="bash")
    st.caption(f"A copy is in the workspace: `{export.path}`")
    st.code(export.text, language="yaml", line_numbers=True)
