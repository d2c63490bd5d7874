"""The privacy cost of a search: composition over trials, repeat-and-select, the clip-norm
release, and the one σ solver behind every calibration."""

from __future__ import annotations

import math

import dp_accounting
import pytest
from dp_accounting.rdp import rdp_privacy_accountant

from dptune import privacy
from dptune.errors import PrivacyError
from dptune.privacy.search_cost import (
    calibrate_search_noise,
    calibrate_with_clip_selection,
    epsilon_with_clip_selection,
    search_event,
    with_clip_selection,
)
from dptune.spec.trial_count import tnb_gamma, tnb_mean

N, B, EPOCHS = 1438, 64, 2
DELTA = privacy.default_delta(N)
STEPS = privacy.num_steps(N, B, EPOCHS)
FIXED = {"distribution": "fixed", "n": 4}
POISSON = {"distribution": "poisson", "mean": 4}
GEOMETRIC = {"distribution": "truncated_negative_binomial", "mean": 4, "shape": 1.0}


def run(sigma: float, microbatched: bool = False, steps: int = STEPS) -> privacy.DPSGDRun:
    return privacy.DPSGDRun(N, B, sigma, steps, microbatched)


def naive(runs, clip_epsilon: float = 0.0) -> float:
    return privacy.search_cost_naive_composition(runs, delta=DELTA, clip_epsilon=clip_epsilon).epsilon


def repeat(runs, mean: float, eta: float | None = None, clip_epsilon: float = 0.0) -> float:
    distribution = "poisson" if eta is None else "truncated_negative_binomial"
    return privacy.search_cost_repeat_and_select(
        runs, delta=DELTA, distribution=distribution, mean_trials=mean, eta=eta, clip_epsilon=clip_epsilon
    ).epsilon


def search_cost(one_run: privacy.DPSGDRun, trials: dict, clip_epsilon: float = 0.0) -> float:
    """What dptune.study.results reports for a search whose every trial is `one_run`."""
    if trials["distribution"] == "fixed":
        return naive([one_run] * trials["n"], clip_epsilon)
    return repeat(one_run, trials["mean"], trials.get("shape"), clip_epsilon)


def test_one_trial_costs_what_privacy_says():
    single = privacy.compute_epsilon(N, B, 1.0, epochs=EPOCHS, delta=DELTA, pld=False).epsilon_rdp
    assert naive([run(1.0)]) == pytest.approx(single)
    assert naive([]) == 0.0
    assert naive([run(1.0, steps=0)]) == 0.0  # never trained
    assert math.isinf(naive([run(1.0), run(0.0)]))  # sigma = 0 anywhere: no privacy


def test_composition_grows_with_trials_and_microbatching_costs_more():
    one, four = naive([run(1.0)]), naive([run(1.0)] * 4)
    assert one < four < 4 * one  # RDP composition beats adding epsilons
    # microbatched: charged sigma/2
    assert naive([run(2.0, microbatched=True)]) == pytest.approx(one)
    # four equal trials = one run four times as long
    assert four == pytest.approx(naive([run(1.0, steps=4 * STEPS)]), rel=1e-9)


def test_repeat_and_select_is_between_one_trial_and_composition():
    one = naive([run(1.0)])
    many = naive([run(1.0)] * 10)
    poisson = repeat(run(1.0), 10)
    geometric = repeat(run(1.0), 10, eta=1.0)
    assert one < poisson < many and one < geometric < many
    # several candidate curves are bounded by the most costly one
    assert repeat([run(1.0), run(0.8)], 10) == pytest.approx(repeat(run(0.8), 10))


def test_the_clip_selection_composes_with_every_search_cost():
    """dp_accounting 0.6.0 exports RepeatAndSelectDpEvent only from dp_event: this path crashed."""
    for without, with_clip in [
        (repeat(run(1.0), 10), repeat(run(1.0), 10, clip_epsilon=0.1)),
        (repeat([run(1.0), run(0.8)], 10), repeat([run(1.0), run(0.8)], 10, clip_epsilon=0.1)),
        (naive([run(1.0)] * 3), naive([run(1.0)] * 3, clip_epsilon=0.1)),
    ]:
        assert math.isfinite(with_clip) and without < with_clip < without + 0.1 + 1e-9
    assert naive([], clip_epsilon=0.1) > 0  # the histogram was released even if no trial ran


@pytest.mark.parametrize("trials", [FIXED, POISSON, GEOMETRIC])
@pytest.mark.parametrize("clip_epsilon", [0.0, 0.1])
def test_search_costs_equal_dp_accounting_on_the_search_event(trials, clip_epsilon):
    """The fast costs (cached step curves) are the RDP accountant's own arithmetic on the event
    the calibration solves for, so calibrated and reported ε cannot disagree."""
    one_run = run(1.3)
    by_event = privacy.rdp_epsilon_of_event(search_event(one_run, trials, clip_epsilon), DELTA)[0]
    assert search_cost(one_run, trials, clip_epsilon) == pytest.approx(by_event, rel=1e-12)


def test_the_three_calibrations_use_the_one_solver():
    """Each calibration solves for its composed event: 0.99 · target <= ε <= target, and the
    reporting functions recompute that ε."""
    target = 3.0
    one = privacy.calibrate_noise_multiplier(target, N, B, epochs=EPOCHS, delta=DELTA)
    assert 0.99 * target <= privacy.compute_epsilon(N, B, one, epochs=EPOCHS, delta=DELTA).epsilon_rdp <= target
    assert 0.99 * target <= privacy.rdp_epsilon_of_event(run(one).event(), DELTA)[0] <= target

    with_clip = calibrate_with_clip_selection(target, N, B, epochs=EPOCHS, delta=DELTA, microbatched=True,
                                              clip_epsilon=0.2)
    event = with_clip_selection(run(with_clip, microbatched=True).event(), 0.2)
    assert 0.99 * target <= privacy.rdp_epsilon_of_event(event, DELTA)[0] <= target
    assert epsilon_with_clip_selection(run(with_clip, microbatched=True), 0.2, DELTA)[0] <= target
    # no clip release: the same solver on the same event as calibrate_noise_multiplier
    assert calibrate_with_clip_selection(target, N, B, epochs=EPOCHS, delta=DELTA, microbatched=False,
                                         clip_epsilon=0.0) == one

    for trials in (FIXED, POISSON, GEOMETRIC):
        sigma = calibrate_search_noise(target, N, B, epochs=EPOCHS, delta=DELTA, microbatched=False, trials=trials,
                                       clip_epsilon=0.1)
        assert 0.99 * target <= privacy.rdp_epsilon_of_event(search_event(run(sigma), trials, 0.1), DELTA)[0] <= target
        assert 0.99 * target <= search_cost(run(sigma), trials, 0.1) <= target
        assert sigma > one  # a search needs more noise per trial than one run


def test_calibrate_noise_solves_any_event_and_says_when_it_cannot():
    template = run(1.0)
    two_runs = privacy.calibrate_noise(template, 3.0, DELTA,
                                       make_event=lambda r: dp_accounting.SelfComposedDpEvent(r.event(), 2))
    assert two_runs == pytest.approx(calibrate_search_noise(
        3.0, N, B, epochs=EPOCHS, delta=DELTA, microbatched=False, trials={"distribution": "fixed", "n": 2}))
    with pytest.raises(PrivacyError, match="unreachable for the whole search.*fewer trials"):
        calibrate_search_noise(1e-4, N, B, epochs=EPOCHS, delta=DELTA, microbatched=False, trials=POISSON)
    with pytest.raises(PrivacyError, match="unreachable for training plus the clip-norm selection"):
        calibrate_with_clip_selection(0.05, N, B, epochs=EPOCHS, delta=DELTA, microbatched=False, clip_epsilon=0.1)
    with pytest.raises(PrivacyError, match="promises no meaningful privacy"):
        calibrate_search_noise(1e9, N, B, epochs=EPOCHS, delta=DELTA, microbatched=False, trials=FIXED)
    with pytest.raises(PrivacyError, match="mean_trials"):
        calibrate_search_noise(3.0, N, B, epochs=EPOCHS, delta=DELTA, microbatched=False,
                               trials={"distribution": "poisson"})


@pytest.mark.parametrize("gamma, shape", [(0.05, 0.5), (0.1, 1.0), (0.3, 2.5)])
def test_the_truncated_negative_binomial_mean_is_dp_accountings(gamma, shape):
    """dptune.spec.trial_count owns E[K] (it draws K); dp_accounting derives the same from (E[K], η)."""
    mean = tnb_mean(gamma, shape)
    assert mean == pytest.approx(rdp_privacy_accountant._truncated_negative_binomial_mean(gamma, shape), rel=1e-12)
    assert tnb_gamma(mean, shape) == pytest.approx(gamma, rel=1e-9)
    assert rdp_privacy_accountant._gamma_truncated_negative_binomial(shape, mean) == pytest.approx(gamma, rel=1e-8)
