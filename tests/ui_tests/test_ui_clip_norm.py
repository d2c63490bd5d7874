"""Clip norm page (AppTest): private histogram release (profiled by a `dptune profile`
subprocess), quantile lines, C and its cost."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ui_testing import messages, open_page

from dptune.workspace import Workspace


def state(workspace):
    return json.loads((workspace / "ui_state.json").read_text())


def metrics(at):
    return {m.label: m.value for m in at.main.metric}


def spent(workspace):
    clip = state(workspace)["clip"]
    return clip["spent"][clip["dataset"]]


def profiles(workspace):
    """The gradient-norm profiles (.npy) in the workspace."""
    return sorted((workspace / "profiles").glob("*.npy"))


def test_release_sets_c_at_the_chosen_quantile_and_counts_its_cost(workspace):
    at = open_page(workspace, "clip_norm")
    assert not at.exception and not at.error, messages(at)
    assert "chosen C" not in metrics(at)
    at.button(key="clip-release").click().run()
    assert not at.exception and not at.error, messages(at)
    shown = metrics(at)
    assert {"50% quantile", "75% quantile", "90% quantile", "chosen C"} <= set(shown)
    assert shown["chosen C"] == shown["75% quantile"]
    clip = state(workspace)["clip"]
    assert spent(workspace) == {"releases": 1, "epsilon": pytest.approx(0.1)}
    assert clip["selection"]["examples"] > 1000  # every training row of digits, not a sample
    # the exact norms were written by the `dptune profile` subprocess and stay in the workspace
    [profile] = profiles(workspace)
    assert profile.name.startswith(clip["dataset"]) and profile.suffix == ".npy"
    written = profile.stat().st_mtime_ns
    assert len(at.get("plotly_chart")) >= 1
    cost = [m.value for m in at.markdown if "Privacy cost of this C" in m.value]
    assert cost and "ε_C = 0.1" in cost[0]

    # another quantile of the released histogram is free: no new release
    at.radio(key="clip-quantile").set_value(0.9).run()
    assert metrics(at)["chosen C"] == metrics(at)["90% quantile"]
    assert spent(workspace)["releases"] == 1

    # a second release spends ε_C again
    at.button(key="clip-release").click().run()
    assert spent(workspace) == {"releases": 2, "epsilon": pytest.approx(0.2)}
    assert profiles(workspace) == [profile] and profile.stat().st_mtime_ns == written  # profiled once

    # switching to a typed C does not give the spent ε back: the search YAML still charges it
    at.radio(key="clip-method").set_value("manual").run()
    assert any("ε_C = 0.2" in m.value for m in at.markdown if "Spent on this dataset" in m.value)
    at.switch_page("pages/search.py").run()
    assert not at.exception, messages(at)
    yaml_text = " ".join(c.value for c in at.code)
    assert "clip_selection_epsilon: 0.2" in yaml_text, yaml_text


def test_manual_c_costs_nothing_and_feeds_the_search(workspace):
    at = open_page(workspace, "clip_norm")
    at.radio(key="clip-method").set_value("manual").run()
    at.number_input(key="clip-manual").set_value(2.0).run()
    assert not at.error, messages(at)
    assert any("none" in m.value for m in at.markdown if "Privacy cost" in m.value)
    at.radio(key="clip-use").set_value("fix").run()
    at.switch_page("pages/search.py").run()
    assert any("2 … 2" in m.value for m in at.markdown), [m.value for m in at.markdown]


def test_a_failed_profile_shows_its_error_and_spends_nothing(workspace):
    at = open_page(workspace, "clip_norm")
    assert not at.exception and not at.error, messages(at)
    [stored] = [path for path in workspace.iterdir() if path.suffix == ".npz"]
    stored.write_bytes(b"not a dataset")  # what the subprocess loads by fingerprint
    at.button(key="clip-release").click().run()
    [error] = [e.value for e in at.error]
    assert "`dptune profile` exited with code 2" in error and "no ε was spent" in error
    assert f"error: the stored dataset {stored} cannot be read" in error, error  # the subprocess's own message
    assert not profiles(workspace) and not Workspace.at(workspace).load_state().get("clip", {}).get("spent")
    assert "chosen C" not in metrics(at)


RELEASE_IN_A_FRESH_PROCESS = """
import sys
from ui_testing import open_page
at = open_page(sys.argv[1], "clip_norm")
at.button(key="clip-release").click().run()
assert not at.error and not at.exception, [e.value for e in at.error]
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""


@pytest.mark.slow
def test_the_release_does_not_import_tensorflow_in_the_app_process(workspace):
    tests = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", RELEASE_IN_A_FRESH_PROCESS, str(workspace)], cwd=tests,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(tests)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["False", "False"]
    assert profiles(workspace)
