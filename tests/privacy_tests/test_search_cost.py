"""The privacy cost of a search: composition over trials, repeat-and-select, and the
calibration that keeps a whole search within a budget."""

from __future__ import annotations

import math

import pytest

from dptune import privacy
from dptune.privacy.search_cost import (
    TrainingPrivacy,
    calibrate_search_noise,
    naive_search_epsilon,
    repeat_and_select_epsilon,
    search_epsilon,
)

N, B, EPOCHS = 1438, 64, 2
DELTA = privacy.default_delta(N)
STEPS = privacy.num_steps(N, B, EPOCHS)


def run(sigma: float, microbatched: bool = False, steps: int = STEPS) -> TrainingPrivacy:
    return TrainingPrivacy(N, B, sigma, steps, microbatched)


def test_one_trial_costs_what_privacy_says():
    single = privacy.compute_epsilon(N, B, 1.0, epochs=EPOCHS, delta=DELTA, pld=False).epsilon_rdp
    assert naive_search_epsilon([run(1.0)], DELTA) == pytest.approx(single)
    assert naive_search_epsilon([], DELTA) == 0.0
    assert naive_search_epsilon([run(1.0, steps=0)], DELTA) == 0.0  # never trained
    assert math.isinf(naive_search_epsilon([run(1.0), run(0.0)], DELTA))  # sigma = 0 anywhere: no privacy


def test_composition_grows_with_trials_and_microbatching_costs_more():
    one, four = naive_search_epsilon([run(1.0)], DELTA), naive_search_epsilon([run(1.0)] * 4, DELTA)
    assert one < four < 4 * one  # RDP composition beats adding epsilons
    # microbatched: charged sigma/2
    assert naive_search_epsilon([run(2.0, microbatched=True)], DELTA) == pytest.approx(one)
    # four equal trials = one run four times as long
    assert four == pytest.approx(naive_search_epsilon([run(1.0, steps=4 * STEPS)], DELTA), rel=1e-9)


def test_repeat_and_select_is_between_one_trial_and_composition():
    one = naive_search_epsilon([run(1.0)], DELTA)
    many = naive_search_epsilon([run(1.0)] * 10, DELTA)
    poisson = repeat_and_select_epsilon(run(1.0), 10, math.inf, DELTA)
    geometric = repeat_and_select_epsilon(run(1.0), 10, 1.0, DELTA)
    assert one < poisson < many and one < geometric < many
    # several candidate curves are bounded by the most costly one
    mixed = repeat_and_select_epsilon([run(1.0), run(0.8)], 10, math.inf, DELTA)
    assert mixed == pytest.approx(repeat_and_select_epsilon(run(0.8), 10, math.inf, DELTA))


@pytest.mark.parametrize("trials", [
    {"distribution": "fixed", "n": 4},
    {"distribution": "poisson", "mean": 4},
    {"distribution": "truncated_negative_binomial", "mean": 4, "shape": 1.0},
])
def test_calibrating_the_whole_search_to_the_target(trials):
    sigma = calibrate_search_noise(3.0, N, B, epochs=EPOCHS, delta=DELTA, microbatched=False, trials=trials)
    cost = search_epsilon(run(sigma), trials, DELTA)
    assert 0.99 * 3.0 <= cost <= 3.0
    per_trial = privacy.calibrate_noise_multiplier(3.0, N, B, epochs=EPOCHS, delta=DELTA)
    assert sigma > per_trial  # a search needs more noise per trial than one run


def test_repeat_and_select_composes_with_a_clip_selection():
    """dp_accounting 0.6.0 exports RepeatAndSelectDpEvent only from dp_event: this path crashed."""
    plain = repeat_and_select_epsilon(run(1.0), 10, math.inf, DELTA)
    with_clip = repeat_and_select_epsilon(run(1.0), 10, math.inf, DELTA, clip_epsilon=0.1)
    assert math.isfinite(with_clip) and plain < with_clip < plain + 0.1 + 1e-9
    trials = {"distribution": "poisson", "mean": 4}
    sigma = calibrate_search_noise(3.0, N, B, epochs=EPOCHS, delta=DELTA, microbatched=False, trials=trials,
                                   clip_epsilon=0.1)
    assert 0.99 * 3.0 <= search_epsilon(run(sigma), trials, DELTA, clip_epsilon=0.1) <= 3.0
