"""The frame around every page: page config, the navigation and the shared sidebar.

The app follows Streamlit's `pages/` convention (app.py is the Start page, every file in
pages/ is a page, its URL is the file's stem). Streamlit's automatic page list is hidden
(.streamlit/config.toml: client.showSidebarNavigation = false) and replaced by `frame`'s
own links, so the pages have titles and icons and come in the order of the workflow.
Every page calls `frame(title)` first.
"""

from __future__ import annotations

import streamlit as st

from dptune.ui import core

PAGES = (
    # (script, title, icon) in the order of the workflow
    ("app.py", "Start", ":material/home:"),
    ("pages/data.py", "Data", ":material/table:"),
    ("pages/model.py", "Model", ":material/neurology:"),
    ("pages/clip_norm.py", "Clip norm", ":material/content_cut:"),
    ("pages/search.py", "Search", ":material/travel_explore:"),
    ("pages/tradeoffs.py", "Trade-offs", ":material/scatter_plot:"),
    ("pages/export.py", "Export", ":material/download:"),
)


def frame(title: str) -> None:
    """Page config, then the sidebar: links to every page, workspace, the ε calculator."""
    from dptune.ui.serving import require_local_or_explicit

    require_local_or_explicit()  # every page: localhost unless the user asked for another address
    st.set_page_config(page_title=f"{title} · dptune", page_icon=":material/shield_lock:", layout="wide")
    sidebar()


def sidebar() -> None:
    """Navigation, workspace and current study, then the ε calculator (always at hand)."""
    from dptune.ui.calculator import calculator

    with st.sidebar:
        for path, title, icon in PAGES:
            st.page_link(path, label=title, icon=icon)
        st.divider()
        default_n = 1000
        with core.guard("Workspace"):
            state = core.load_state()
            ws = core.workspace()
            study = state.get("study")
            st.caption(f"Workspace `{ws.root}`" + (f" · study **{study}**" if study else ""))
            try:
                default_n = core.loaded_data(state).dataset.n_train
            except Exception:  # noqa: BLE001 - the Data page shows the error; the calculator still works
                default_n = 1000
        if st.session_state.get("calc-n-default") != default_n:  # a new dataset: its N, not the last one typed
            st.session_state["calc-n-default"] = default_n
            st.session_state["calc-n"] = default_n
            if "calc-b" in st.session_state:  # a batch larger than the new N would only be an error
                st.session_state["calc-b"] = min(int(st.session_state["calc-b"]), default_n)
        calculator(default_n)
