"""Clip norm page (AppTest): private histogram release, quantile lines, C and its cost."""

import json

import pytest
from ui_testing import messages, open_page


def state(workspace):
    return json.loads((workspace / "ui_state.json").read_text())


def metrics(at):
    return {m.label: m.value for m in at.main.metric}


def spent(workspace):
    clip = state(workspace)["clip"]
    return clip["spent"][clip["dataset"]]


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
