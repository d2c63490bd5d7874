"""Fixtures shared by the dashboard's page tests."""

import pytest


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A dptune workspace path (not created yet) that the app under test uses (DPTUNE_WORKSPACE)."""
    path = tmp_path / "ws"
    monkeypatch.setenv("DPTUNE_WORKSPACE", str(path))
    return path
