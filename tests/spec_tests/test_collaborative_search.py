"""The `search` block of a collaborative YAML (dptune.spec.collaborative_search): defaults,
round trip, and every problem of a bad block reported at once with the rest of the file."""

from __future__ import annotations

import pytest

from dptune.errors import ConfigError
from dptune.spec.collaborative import collaborative_run_from_dict
from dptune.spec.collaborative_search import DEFAULT_THETA_DOWNLOAD, DEFAULT_THETA_UPLOAD

BASE = {"dataset": {"builtin": "digits"}, "model": {"kind": "logreg"},
        "collaborative": {"participants": 3, "rounds": 2}}
DP_SGD = {"kind": "dp_sgd", "noise_multiplier": 1.0, "l2_norm_clip": 1.0, "batch_size": 16}


def _run(search, privacy=None):
    collaborative = dict(BASE["collaborative"], **({"privacy": privacy} if privacy else {}))
    return collaborative_run_from_dict({**BASE, "collaborative": collaborative, "search": search})


def test_defaults_search_theta_upload_and_download_and_round_trip():
    run = _run({"trials": 4})
    search = run.search
    assert search.trials == 4 and search.objective == "accuracy" and search.target_epsilon is None
    assert search.range_of("theta_upload") == DEFAULT_THETA_UPLOAD
    assert search.range_of("theta_download") == DEFAULT_THETA_DOWNLOAD
    assert search.range_of("learning_rate") is None
    assert collaborative_run_from_dict(run.to_dict()) == run


def test_a_run_without_search_has_none():
    assert collaborative_run_from_dict(BASE).search is None


def test_dp_sgd_search_with_a_target_and_a_clip_range():
    run = _run({"target_epsilon": 3, "l2_norm_clip": [0.1, 10], "theta_upload": 0.1}, DP_SGD)
    assert run.search.target_epsilon == 3.0
    assert run.search.range_of("l2_norm_clip") == (0.1, 10.0)
    assert run.search.range_of("theta_upload") == (0.1, 0.1)


def test_every_problem_of_the_search_block_is_reported_at_once_with_the_rest_of_the_file():
    values = {**BASE, "collaborative": {**BASE["collaborative"], "rounds": 0, "privacy": DP_SGD},
              "search": {"trials": 0, "objective": "pareto", "target_epsilon": 2, "theta_upload": [0.5, 2],
                         "noise_multiplier": [0.5, 4], "gamma": [0.01, 0.1], "colour": "red", "storage": ""}}
    with pytest.raises(ConfigError) as raised:
        collaborative_run_from_dict(values)
    message = str(raised.value)
    for expected in ("rounds must be an integer", "unknown key(s) in search: colour", "search.trials must be an integer",
                     "search.theta_upload", "search.gamma: privacy dp_sgd has no such parameter",
                     "search.noise_multiplier cannot be searched with target_epsilon",
                     "search.objective pareto needs no target_epsilon", "search.storage must be a non-empty string"):
        assert expected in message, expected
    assert "8 problems" in message


def test_a_target_needs_privacy():
    with pytest.raises(ConfigError, match="target_epsilon needs privacy dp_sgd or laplace_svt"):
        _run({"target_epsilon": 1})


def test_a_range_beyond_what_a_run_accepts_is_refused_when_the_file_is_read():
    with pytest.raises(ConfigError) as raised:
        _run({"learning_rate": [1e5, 1e7], "l2_norm_clip": [0, 1]}, DP_SGD)
    message = str(raised.value)
    assert "search.learning_rate[1] (high)" in message and "1000000" in message.replace(",", "")
    assert "search.l2_norm_clip[0] (low)" in message and "2 problems" in message
