"""dptune dashboard: `streamlit run app.py` (this file is the Start page).

Start: what dptune does, the current choices, and a one-button search on digits. The other
pages are in pages/ (Streamlit's multipage convention). No training happens in this
process: trials run in worker processes started from here or the Search page, and every
page reads the Optuna study in the workspace.
"""

import streamlit as st

from dptune.ui import core, live, searching, serving, shell

serving.require_local_or_explicit()  # before anything is shown: localhost unless the user asked otherwise
shell.frame("Start")
st.title("dptune — tune differentially private SGD")
st.markdown(
    "Find the clip norm **C**, noise multiplier **σ**, microbatches **m**, learning rate, batch size and epochs "
    "that give the best accuracy for a privacy budget **(ε, δ)**, watch every trial's accuracy and ε grow, "
    "compare the trade-offs, and export the chosen configuration as YAML that `dptune train --config` reproduces."
)

with core.guard("Start page"):
    state = core.load_state()
    data = core.loaded_data(state)
    model = core.current_model_spec(state, data)
    cols = st.columns(4)
    cols[0].metric("Data", data.dataset.name, f"N = {data.dataset.n_train:,}", delta_color="off", delta_arrow="off", border=True)
    cols[1].metric("Model", model.kind, "suggested" if state["model"]["source"] == "suggested" else "chosen",
                   delta_color="off", delta_arrow="off", border=True)
    clip = state["clip"].get("l2_norm_clip")
    cols[2].metric("Clip norm C", f"{clip:.3g}" if clip else "searched",
                   "from the Clip norm page" if clip else "range on the Search page", delta_color="off", delta_arrow="off", border=True)
    cols[3].metric("Target ε", f"{state['search']['target_epsilon']:g}", state["search"]["mode"], delta_color="off", delta_arrow="off", border=True)

    st.subheader("Try it in one click")
    st.markdown(
        "Runs **3 small trials on the built-in digits** (budgeted mode: σ calibrated so each trial spends ε = 3, "
        "2 epochs each, per-example clipping) in a worker process, and shows them live below. "
        "It takes about a minute on a laptop CPU."
    )
    if st.button("Run a quick search on digits", type="primary", icon=":material/play_arrow:", key="quick-start"):
        name = searching.quick_start()
        st.toast(f"Started study {name}", icon=":material/rocket_launch:")

    study = core.load_state().get("study")
    if study:
        st.subheader(f"Study {study}")
        live.live_monitor(study, key="home-live", show_table=True)
        left, right = st.columns(2)
        left.page_link("pages/tradeoffs.py", label="Compare the trade-offs", icon=":material/scatter_plot:")
        right.page_link("pages/export.py", label="Export a configuration", icon=":material/download:")

    st.subheader("Or go step by step")
    steps = [
        ("pages/data.py", "Data", "upload your dataset (CSV, Parquet, NPZ, ZIP of images) or keep digits"),
        ("pages/model.py", "Model", "the suggested model, another built-in one, or your `.keras` file"),
        ("pages/clip_norm.py", "Clip norm", "per-example gradient norms, and C at a quantile (with its ε cost)"),
        ("pages/search.py", "Search", "mode, target ε and δ, ranges, workers; start, stop, watch live"),
        ("pages/tradeoffs.py", "Trade-offs", "Pareto front, ε and accuracy curves, importances, speed"),
        ("pages/export.py", "Export", "the chosen trial as YAML, and the command that reproduces it"),
    ]
    for index, (path, title, text) in enumerate(steps, start=1):
        left, right = st.columns([1, 4])
        left.page_link(path, label=f"{index}. {title}")
        right.caption(text)
