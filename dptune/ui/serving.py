"""Where the dashboard listens: this machine only, unless the user asked for another address.

Streamlit reads `.streamlit/config.toml` from the working directory, so `streamlit run
/abs/path/app.py` started in another folder misses the project's `address = "localhost"`
and listens on every network interface. Every page checks, before it shows anything, that
the address is set (by the project's config file, a user config or `--server.address`);
if nobody set it, the page shows only the command to use and stops.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st
from streamlit import runtime

APP = Path(__file__).resolve().parents[2] / "app.py"
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")


def serving_problem(address: str | None, *, real_server: bool) -> str | None:
    """Why the dashboard must not serve (markdown), or None. `address`: Streamlit's
    server.address option (None when nobody set it: Streamlit then listens on all interfaces)."""
    if not real_server or address:
        return None
    project = APP.parent
    return (
        "**dptune serves on this machine only**, but this server was started without an address, so it "
        "listens on every network interface (Streamlit reads `.streamlit/config.toml` from the working "
        f"directory, and this one is not `{project}`). Stop it (Ctrl+C) and start it with "
        f"`cd {project} && streamlit run app.py` or, from anywhere, "
        f"`streamlit run {APP} --server.address localhost`. "
        "(To serve on a network on purpose: `--server.address 0.0.0.0`.)"
    )


def _address() -> str | None:
    """Streamlit's server.address: set by a config file or `--server.address`, else None."""
    return st.get_option("server.address")


def _real_server() -> bool:
    """True inside `streamlit run`; False under Streamlit's AppTest (which also starts a Runtime,
    but serves nothing: it is told apart by its module being loaded) and in bare mode."""
    return runtime.exists() and "streamlit.testing.v1.app_test" not in sys.modules


def require_local_or_explicit() -> None:
    """Stop the page (st.error + st.stop) when the server listens on every interface without
    the user having asked for it."""
    problem = serving_problem(_address(), real_server=_real_server())
    if problem is not None:
        st.set_page_config(page_title="dptune: restart on localhost", layout="centered")
        st.error(problem, icon=":material/lan:")
        st.stop()
