"""Helpers for the dashboard's tests and benchmark: an AppTest on a throw-away workspace."""

from __future__ import annotations

import os
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app.py"


def app_test(workspace: str | os.PathLike, *, timeout: float = 60.0):
    """`AppTest` of app.py whose workspace (and storage) is `workspace` (sets $DPTUNE_WORKSPACE)."""
    from streamlit.testing.v1 import AppTest

    os.environ["DPTUNE_WORKSPACE"] = str(workspace)
    os.environ.pop("DPTUNE_STORAGE", None)
    return AppTest.from_file(str(APP), default_timeout=timeout)


def open_page(workspace: str | os.PathLike, page: str, *, timeout: float = 60.0):
    """Run the app once, switch to `pages/<page>.py` and run it; returns the AppTest."""
    at = app_test(workspace, timeout=timeout).run()
    if page not in ("home", "start"):
        at.switch_page(f"pages/{page}.py").run()
    return at


def storage_url(workspace: str | os.PathLike) -> str:
    """The workspace's SQLite storage URL (the workspace folder is created if missing)."""
    Path(workspace).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(workspace).resolve() / 'studies.db'}"


def texts(elements) -> list[str]:
    return [str(element.value) for element in elements]


def messages(at) -> dict[str, list[str]]:
    """Every error, warning, exception, info and success on the page (main and sidebar)."""
    return {
        "error": texts(at.error),
        "warning": texts(at.warning),
        "exception": texts(at.exception),
        "info": texts(at.info),
        "success": texts(at.success),
    }
