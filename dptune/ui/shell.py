"""The frame around every page: navigation and the shared sidebar."""

from __future__ import annotations

import streamlit as st

from dptune.ui import core

PAGES = (
    # (file under pages/, title, icon, url path)
    ("pages/home.py", "Start", ":material/home:", "start"),
    ("pages/data.py", "Data", ":material/table:", "data"),
    ("pages/model.py", "Model", ":material/neurology:", "model"),
    ("pages/clip_norm.py", "Clip norm", ":material/content_cut:", "clip-norm"),
    ("pages/search.py", "Search", ":material/travel_explore:", "search"),
    ("pages/tradeoffs.py", "Trade-offs", ":material/scatter_plot:", "trade-offs"),
    ("pages/export.py", "Export", ":material/download:", "export"),
)


def pages() -> list:
    return [
        st.Page(path, title=title, icon=icon, url_path=url, default=(index == 0))
        for index, (path, title, icon, url) in enumerate(PAGES)
    ]


def page_path(title: str) -> str:
    for path, page_title, _, _ in PAGES:
        if page_title == title:
            return path
    raise KeyError(title)


def sidebar() -> None:
    """Workspace and current choices, then the ε calculator (always at hand)."""
    from dptune.ui.calculator import calculator

    with st.sidebar:
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
        calculator(default_n)
