"""dptune.privacy against the published values of ../shared/REFERENCES.md and dp_accounting."""

from __future__ import annotations

import logging
import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant

from dptune import privacy
from dptune.errors import PrivacyError
from dptune.privacy import accountant
from dptune.spec.config import DPSGDConfig

DELTA = 1e-5

# ../shared/REFERENCES.md, "Accountant values": dp_accounting 0.6.0, agreeing with TF Privacy
# 0.9.0's compute_dp_sgd_privacy(_statement). (n, B, sigma, epochs, steps, microbatched,
# RDP eps, RDP order or None, PLD eps)
REFERENCE_ROWS = [
    (60000, 250, 1.3, 3, 720, False, 0.5632, 18.0, 0.3703),
    (60000, 250, 1.3, 3, 720, True, 3.4259, None, 2.6075),
    (60000, 256, 1.1, 60, 14063, False, 2.5967, None, 2.3818),
    (60000, 256, 0.7, 45, 10547, False, 6.3197, None, 5.6397),
]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ------------------------------------------------------------------------ reference values


@pytest.mark.parametrize("n,b,sigma,epochs,steps,micro,eps_rdp,order,eps_pld", REFERENCE_ROWS)
def test_compute_epsilon_matches_published_values(n, b, sigma, epochs, steps, micro, eps_rdp, order, eps_pld):
    report = privacy.compute_epsilon(n, b, sigma, epochs=epochs, delta=DELTA, microbatched=micro)
    assert report.steps == steps
    assert _rel(report.epsilon_rdp, eps_rdp) < 0.005
    assert _rel(report.epsilon_pld, eps_pld) < 0.005
    if order is not None:
        assert report.rdp_order == order
    assert report.rdp_order in privacy.RDP_ORDERS
    assert report.sampling_rate == pytest.approx(b / n)
    assert report.delta == DELTA


def test_steps_argument_equals_epochs_argument():
    by_epochs = privacy.compute_epsilon(60000, 256, 1.1, epochs=60, delta=DELTA)
    by_steps = privacy.compute_epsilon(60000, 256, 1.1, steps=14063, delta=DELTA)
    assert by_steps.epsilon_rdp == by_epochs.epsilon_rdp
    assert by_steps.epsilon_pld == by_epochs.epsilon_pld
    assert by_steps.epochs is None and by_epochs.epochs == 60


def test_pld_for_14063_steps():
    """Its speed is measured in benchmarks/bench_accountant.py, never asserted here."""
    report = privacy.compute_epsilon(60000, 256, 1.1, epochs=60, delta=DELTA)
    assert report.steps == 14063 and report.epsilon_pld is not None
    assert report.epsilon_pld < report.epsilon_rdp


def test_pld_is_tighter_than_rdp_and_optional():
    report = privacy.compute_epsilon(60000, 256, 1.1, epochs=10, delta=DELTA)
    assert report.epsilon_pld < report.epsilon_rdp
    assert report.epsilon == report.epsilon_pld
    rdp_only = privacy.compute_epsilon(60000, 256, 1.1, epochs=10, delta=DELTA, pld=False)
    assert rdp_only.epsilon_pld is None
    assert rdp_only.epsilon_rdp == report.epsilon_rdp
    assert rdp_only.epsilon == report.epsilon_rdp


def test_microbatched_charges_half_the_noise_and_says_so():
    micro = privacy.compute_epsilon(60000, 250, 1.3, epochs=3, delta=DELTA, microbatched=True)
    halved = privacy.compute_epsilon(60000, 250, 0.65, epochs=3, delta=DELTA)
    assert micro.noise_multiplier == 1.3
    assert micro.charged_noise_multiplier == 0.65
    assert micro.microbatched is True
    assert micro.epsilon_rdp == halved.epsilon_rdp
    assert micro.epsilon_pld == halved.epsilon_pld
    assert any("sigma/2" in note and "2C" in note for note in micro.notes)
    assert halved.notes == ()


def test_zero_noise_gives_infinite_epsilon():
    report = privacy.compute_epsilon(1000, 10, 0.0, epochs=1, delta=1e-4)
    assert math.isinf(report.epsilon_rdp) and math.isinf(report.epsilon_pld)
    assert report.rdp_order is None
    assert all(math.isinf(eps) for _, eps in privacy.epsilon_curve(1000, 10, 0.0, epochs=2, delta=1e-4))


def test_report_to_dict_has_the_interface_fields():
    report = privacy.compute_epsilon(60000, 250, 1.3, epochs=3, delta=DELTA, microbatched=True)
    values = report.to_dict()
    for key in (
        "epsilon_rdp",
        "rdp_order",
        "epsilon_pld",
        "steps",
        "delta",
        "sampling_rate",
        "noise_multiplier",
        "charged_noise_multiplier",
        "microbatched",
    ):
        assert values[key] == getattr(report, key)
    assert isinstance(values["epsilon_rdp"], float) and isinstance(values["rdp_order"], float)


# ------------------------------------------------------------------------ steps, delta, orders


def test_rdp_orders_are_tf_privacy_orders():
    orders = privacy.RDP_ORDERS
    assert orders[:3] == (1.1, 1.2, 1.3)
    assert 10.9 in orders and 11 in orders and 63 in orders
    assert orders[-3:] == (128, 256, 512)
    assert len(orders) == 99 + 53 + 3
    assert list(orders) == sorted(orders)


def test_num_steps():
    assert privacy.num_steps(60000, 256, 60) == 14063  # REFERENCES.md
    assert privacy.num_steps(60000, 256, 45) == 10547
    assert privacy.num_steps(60000, 250, 3) == 720
    assert privacy.num_steps(60000, 250, 0.1) == 24  # 0.1 * 240 is 24 up to float noise
    assert privacy.num_steps(100, 30, 1) == 4
    assert privacy.num_steps(100, 30, 0.01) == 1


def test_default_delta_and_warning():
    assert privacy.default_delta(60000) == pytest.approx(60000**-1.1)
    assert privacy.default_delta(60000) < 1 / 60000
    assert privacy.delta_warning(1e-5, 60000) is None
    assert privacy.delta_warning(privacy.default_delta(100), 100) is None
    for delta in (1 / 100, 0.05):
        text = privacy.delta_warning(delta, 100)
        assert text is not None and "1/N" in text and f"{delta:.3g}" in text


def test_delta_none_means_default():
    report = privacy.compute_epsilon(60000, 256, 1.1, epochs=1, delta=None, pld=False)
    assert report.delta == privacy.default_delta(60000)


def test_delta_warning_in_report_notes():
    report = privacy.compute_epsilon(100, 10, 1.0, epochs=1, delta=0.02, pld=False)
    assert any("1/N" in note for note in report.notes)


# ------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda: privacy.compute_epsilon(0, 1, 1.0, epochs=1, delta=1e-5), "0"),
        (lambda: privacy.compute_epsilon(100, 101, 1.0, epochs=1, delta=1e-5), "101"),
        (lambda: privacy.compute_epsilon(100, 0, 1.0, epochs=1, delta=1e-5), "batch_size"),
        (lambda: privacy.compute_epsilon(100, 10, -0.5, epochs=1, delta=1e-5), "-0.5"),
        (lambda: privacy.compute_epsilon(100, 10, float("nan"), epochs=1, delta=1e-5), "nan"),
        (lambda: privacy.compute_epsilon(100, 10, 1.0, epochs=1, delta=1.5), "1.5"),
        (lambda: privacy.compute_epsilon(100, 10, 1.0, epochs=1, delta=0.0), "delta"),
        (lambda: privacy.compute_epsilon(100, 10, 1.0, epochs=1, steps=10, delta=1e-3), "exactly one"),
        (lambda: privacy.compute_epsilon(100, 10, 1.0, delta=1e-3), "exactly one"),
        (lambda: privacy.compute_epsilon(100, 10, 1.0, epochs=-2, delta=1e-3), "-2"),
        (lambda: privacy.compute_epsilon(100, 10, 1.0, steps=0, delta=1e-3), "steps"),
        (lambda: privacy.compute_epsilon(100, 10, 1.0, steps=2.5, delta=1e-3), "2.5"),
        (lambda: privacy.compute_epsilon(100.0, 10, 1.0, steps=2, delta=1e-3), "100.0"),
        (lambda: privacy.num_steps(100, 10, 0), "epochs"),
        (lambda: privacy.epsilon_curve(100, 10, 1.0, epochs=2, delta=1e-3, every=0), "every"),
        (lambda: privacy.epsilon_curve(100, 10, 1.0, epochs=2, delta=1e-3, every="step"), "'step'"),
        (lambda: privacy.calibrate_noise_multiplier(-1, 100, 10, epochs=1, delta=1e-3), "-1"),
        (lambda: privacy.calibrate_noise_multiplier(1, 100, 10, epochs=1, delta=1e-3, accountant="gdp"), "gdp"),
    ],
)
def test_bad_inputs_raise_privacy_error_naming_the_value(call, needle):
    with pytest.raises(PrivacyError) as info:
        call()
    assert needle in str(info.value)


# ------------------------------------------------------------------------ curve


def test_curve_per_epoch_ends_at_compute_epsilon_and_is_increasing():
    curve = privacy.epsilon_curve(60000, 256, 1.1, epochs=60, delta=DELTA)
    assert len(curve) == 60
    assert [step for step, _ in curve] == [privacy.num_steps(60000, 256, e) for e in range(1, 61)]
    epsilons = [eps for _, eps in curve]
    assert all(b > a for a, b in zip(epsilons, epsilons[1:]))
    full = privacy.compute_epsilon(60000, 256, 1.1, epochs=60, delta=DELTA, pld=False)
    assert curve[-1] == (full.steps, pytest.approx(full.epsilon_rdp, rel=1e-12))
    middle = privacy.compute_epsilon(60000, 256, 1.1, steps=curve[9][0], delta=DELTA, pld=False)
    assert curve[9][1] == pytest.approx(middle.epsilon_rdp, rel=1e-12)


def test_curve_every_k_steps_and_partial_epoch_microbatched():
    curve = privacy.epsilon_curve(1000, 64, 1.0, epochs=2.5, delta=1e-4, every=7, microbatched=True)
    steps = [step for step, _ in curve]
    total = privacy.num_steps(1000, 64, 2.5)
    assert steps == list(range(7, total, 7)) + [total]
    full = privacy.compute_epsilon(1000, 64, 1.0, epochs=2.5, delta=1e-4, microbatched=True, pld=False)
    assert curve[-1][1] == pytest.approx(full.epsilon_rdp, rel=1e-12)
    epochs_curve = privacy.epsilon_curve(1000, 64, 1.0, epochs=2.5, delta=1e-4)
    assert [s for s, _ in epochs_curve] == [16, 32, total]
    epsilons = [eps for _, eps in curve]
    assert all(b > a for a, b in zip(epsilons, epsilons[1:]))


# ------------------------------------------------------------------------ calibration


@pytest.mark.parametrize(
    "accountant,target",
    [("rdp", 0.5), ("rdp", 1.0), ("rdp", 3.0), ("rdp", 8.0), ("pld", 1.0), ("pld", 4.0)],
)
def test_calibration_within_one_percent_never_above(accountant, target):
    n, b, epochs = 60000, 256, 5
    sigma = privacy.calibrate_noise_multiplier(target, n, b, epochs=epochs, delta=DELTA, accountant=accountant)
    report = privacy.compute_epsilon(n, b, sigma, epochs=epochs, delta=DELTA)
    achieved = report.epsilon_rdp if accountant == "rdp" else report.epsilon_pld
    assert 0.99 * target <= achieved <= target
    # the smallest such sigma: 1 % less noise overshoots the target
    less = privacy.compute_epsilon(n, b, 0.99 * sigma, epochs=epochs, delta=DELTA, pld=accountant == "pld")
    assert (less.epsilon_rdp if accountant == "rdp" else less.epsilon_pld) > target


def test_calibration_round_trip_of_a_published_row():
    # REFERENCES.md: sigma = 1.1, 60 epochs -> RDP eps 2.5967; calibrating to it returns ~1.1
    sigma = privacy.calibrate_noise_multiplier(2.5967, 60000, 256, epochs=60, delta=DELTA)
    assert sigma == pytest.approx(1.1, rel=1e-3)
    assert privacy.compute_epsilon(60000, 256, sigma, epochs=60, delta=DELTA, pld=False).epsilon_rdp <= 2.5967


def test_calibration_microbatched_needs_twice_the_noise():
    per_example = privacy.calibrate_noise_multiplier(2.0, 60000, 256, epochs=5, delta=DELTA)
    micro = privacy.calibrate_noise_multiplier(2.0, 60000, 256, epochs=5, delta=DELTA, microbatched=True)
    assert micro == pytest.approx(2 * per_example, rel=1e-4)
    report = privacy.compute_epsilon(60000, 256, micro, epochs=5, delta=DELTA, microbatched=True, pld=False)
    assert 0.99 * 2.0 <= report.epsilon_rdp <= 2.0


def test_calibration_impossible_target_says_what_would_help():
    with pytest.raises(PrivacyError) as info:
        privacy.calibrate_noise_multiplier(0.005, 60000, 256, epochs=60, delta=DELTA)
    message = str(info.value)
    assert "0.005" in message and "1000" in message
    assert "fewer epochs" in message and "batch size" in message and "N = 60000" in message


def test_calibration_absurdly_large_target_is_refused():
    # sigma = 1e-3 already gives eps ~ 5e6 here: a target of 1e9 promises nothing
    with pytest.raises(PrivacyError, match="1e\\+09"):
        privacy.calibrate_noise_multiplier(1e9, 1000, 100, epochs=1, delta=1e-4)


# ------------------------------------------------------------------------ search cost


def _one_run_rdp(trial: privacy.DPSGDRun):
    accountant = rdp_privacy_accountant.RdpAccountant(list(privacy.RDP_ORDERS))
    accountant.compose(
        dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(
                trial.sampling_rate, dp_accounting.GaussianDpEvent(trial.charged_noise_multiplier)
            ),
            trial.steps,
        )
    )
    return accountant


TRIAL = privacy.DPSGDRun.planned(60000, 256, 1.1, epochs=10)


def test_the_run_record_halves_noise_when_microbatched():
    assert (TRIAL.sampling_rate, TRIAL.charged_noise_multiplier, TRIAL.steps) == (256 / 60000, 1.1, 2344)
    micro = privacy.DPSGDRun.planned(60000, 256, 1.1, steps=5, microbatched=True)
    assert (micro.sampling_rate, micro.noise_multiplier, micro.charged_noise_multiplier) == (256 / 60000, 1.1, 0.55)
    config = DPSGDConfig(noise_multiplier=1.1, num_microbatches=16, batch_size=256, epochs=10)
    assert privacy.DPSGDRun.of_config(config, 60000) == privacy.DPSGDRun(60000, 256, 1.1, 2344, True)
    assert privacy.DPSGDRun.of_config(config.replace(num_microbatches=256), 60000, steps=7).charged_noise_multiplier == 1.1


def test_repeat_and_select_costs_more_than_one_trial_and_grows_with_mean():
    single = privacy.compute_epsilon(60000, 256, 1.1, epochs=10, delta=DELTA, pld=False).epsilon_rdp
    costs = [privacy.search_cost_repeat_and_select(TRIAL, delta=DELTA, mean_trials=mu) for mu in (1, 2, 5, 20)]
    assert all(c.single_trial_epsilon == pytest.approx(single, rel=1e-12) for c in costs)
    epsilons = [c.epsilon for c in costs]
    assert epsilons[0] > single
    assert all(b > a for a, b in zip(epsilons, epsilons[1:]))
    assert costs[0].method == "repeat_and_select" and "best" in costs[0].covers


@pytest.mark.parametrize("mean_trials", [3.0, 10.0])
def test_repeat_and_select_poisson_matches_closed_form(mean_trials):
    # REFERENCES.md (Papernot & Steinke 2022, Poisson K with mean mu), at each order lambda:
    # eps' = eps + mu * delta_hat + log(mu) / (lambda - 1), delta_hat = delta of one run at
    # eps_hat = log(1 + 1 / (lambda - 1)); one-run RDP and delta from dp_accounting.
    cost = privacy.search_cost_repeat_and_select(TRIAL, delta=DELTA, mean_trials=mean_trials)
    accountant = _one_run_rdp(TRIAL)
    orders, rdp = accountant.orders, accountant.rdp
    closed = np.array(
        [
            r + mean_trials * accountant.get_delta(math.log(1 + 1 / (lam - 1))) + math.log(mean_trials) / (lam - 1)
            for lam, r in zip(orders, rdp)
        ]
    )
    # at the fixed order the search picked
    lam = cost.rdp_order
    at_lam = closed[list(orders).index(lam)]
    eps_at_lam, _ = rdp_privacy_accountant.compute_epsilon([lam], [at_lam], DELTA)
    assert cost.epsilon == pytest.approx(eps_at_lam, rel=1e-9)
    # and over all orders
    eps_all, order_all = rdp_privacy_accountant.compute_epsilon(orders, closed, DELTA)
    assert cost.epsilon == pytest.approx(eps_all, rel=1e-9) and cost.rdp_order == order_all


def test_repeat_and_select_geometric_matches_closed_form():
    # REFERENCES.md, truncated negative binomial with eta = 1 (geometric), E[K] = 1/gamma:
    # eps' = eps + (1+eta)(1-1/lh) eps_hat + (1+eta) log(1/gamma)/lh + log(E[K])/(lambda-1),
    # minimised over lambda_hat, then RDP's monotonicity in the order.
    eta, gamma = 1.0, 0.1
    cost = privacy.search_cost_repeat_and_select(
        TRIAL, delta=DELTA, distribution="truncated_negative_binomial", eta=eta, mean_trials=1 / gamma
    )
    assert cost.mean_trials == pytest.approx(1 / gamma) and cost.eta == eta
    accountant = _one_run_rdp(TRIAL)
    orders, rdp = accountant.orders, accountant.rdp
    hat_term = min((1 + eta) * ((1 - 1 / lh) * eh + math.log(1 / gamma) / lh) for lh, eh in zip(orders, rdp))
    closed = rdp + hat_term + math.log(1 / gamma) / (orders - 1)
    closed = np.array([closed[i:].min() for i in range(len(closed))])
    eps, _ = rdp_privacy_accountant.compute_epsilon(orders, closed, DELTA)
    assert cost.epsilon == pytest.approx(eps, rel=1e-6)
    single = privacy.compute_epsilon(60000, 256, 1.1, epochs=10, delta=DELTA, pld=False).epsilon_rdp
    assert cost.epsilon > single


def test_repeat_and_select_several_candidates_use_the_worst():
    cheaper = privacy.DPSGDRun.planned(60000, 256, 2.0, epochs=10)
    alone = privacy.search_cost_repeat_and_select(TRIAL, delta=DELTA, mean_trials=5)
    both = privacy.search_cost_repeat_and_select([TRIAL, cheaper], delta=DELTA, mean_trials=5)
    assert both.epsilon == pytest.approx(alone.epsilon, rel=1e-12)
    other = privacy.DPSGDRun.planned(60000, 1024, 2.0, epochs=10)  # neither dominates everywhere
    mixed = privacy.search_cost_repeat_and_select([TRIAL, other], delta=DELTA, mean_trials=5)
    only_other = privacy.search_cost_repeat_and_select(other, delta=DELTA, mean_trials=5)
    assert mixed.epsilon >= max(alone.epsilon, only_other.epsilon) - 1e-12


def test_naive_composition_of_identical_trials_equals_longer_run():
    k = 4
    cost = privacy.search_cost_naive_composition(TRIAL, delta=DELTA, num_trials=k, pld=True)
    longer = privacy.compute_epsilon(60000, 256, 1.1, steps=k * TRIAL.steps, delta=DELTA)
    assert cost.epsilon == pytest.approx(longer.epsilon_rdp, rel=1e-9)
    assert cost.epsilon_pld == pytest.approx(longer.epsilon_pld, rel=1e-6)
    as_list = privacy.search_cost_naive_composition([TRIAL] * k, delta=DELTA)
    assert as_list.epsilon == pytest.approx(cost.epsilon, rel=1e-9)
    assert as_list.num_trials == k and cost.num_trials == k


def test_naive_composition_of_differing_trials():
    first = privacy.DPSGDRun(60000, 256, 1.1, 1000)
    second = privacy.DPSGDRun(60000, 512, 0.9, 300)
    both = privacy.search_cost_naive_composition([first, second], delta=DELTA)
    swapped = privacy.search_cost_naive_composition([second, first], delta=DELTA)
    assert both.epsilon == pytest.approx(swapped.epsilon, rel=1e-12)
    singles = [privacy.search_cost_naive_composition(t, delta=DELTA).epsilon for t in (first, second)]
    assert both.epsilon > max(singles)
    assert both.single_trial_epsilon == pytest.approx(max(singles), rel=1e-12)


def test_search_cost_with_a_noiseless_trial_is_infinite():
    noiseless = privacy.DPSGDRun(1000, 10, 0.0, 10)
    assert math.isinf(privacy.search_cost_naive_composition([TRIAL, noiseless], delta=DELTA).epsilon)
    assert math.isinf(privacy.search_cost_repeat_and_select(noiseless, delta=DELTA, mean_trials=2).epsilon)


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda: privacy.search_cost_repeat_and_select(TRIAL, delta=DELTA, mean_trials=0.5), "0.5"),
        (lambda: privacy.search_cost_repeat_and_select(TRIAL, delta=DELTA), "None"),
        (lambda: privacy.search_cost_repeat_and_select(TRIAL, delta=DELTA, mean_trials=2, distribution="uniform"), "uniform"),
        (lambda: privacy.search_cost_repeat_and_select(TRIAL, delta=DELTA, mean_trials=2, eta=1.0), "eta"),
        (
            lambda: privacy.search_cost_repeat_and_select(
                TRIAL, delta=DELTA, distribution="truncated_negative_binomial", eta=-1, mean_trials=2
            ),
            "-1",
        ),
        (lambda: privacy.search_cost_repeat_and_select([], delta=DELTA, mean_trials=2), "candidate"),
        (lambda: privacy.search_cost_naive_composition((0.1, 1.0, 10), delta=DELTA), "DPSGDRun"),
        (lambda: privacy.DPSGDRun(100, 150, 1.0, 10), "150"),
        (lambda: privacy.DPSGDRun(100, 10, 1.0, -1), "steps"),
        (lambda: privacy.DPSGDRun(100, 10, 1.0, 2.5), "2.5"),
        (lambda: privacy.search_cost_naive_composition(TRIAL, delta=DELTA, num_trials=0), "num_trials"),
        (lambda: privacy.search_cost_naive_composition(TRIAL, delta=2.0), "2.0"),
    ],
)
def test_search_cost_bad_inputs(call, needle):
    with pytest.raises(PrivacyError) as info:
        call()
    assert needle in str(info.value)


def test_naive_composition_of_different_trials_equals_dp_accountings_composed_event():
    trials = [privacy.DPSGDRun(1438, b, s, t, mb)
              for b, s, t, mb in [(32, 0.9, 40, False), (64, 1.7, 25, True), (128, 1.1, 90, False)]]
    ours = privacy.search_cost_naive_composition(trials, delta=1e-4, num_trials=2)
    accountant = dp_accounting.rdp.RdpAccountant(list(privacy.RDP_ORDERS))
    steps = [dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(t.sampling_rate, dp_accounting.GaussianDpEvent(t.charged_noise_multiplier)),
        t.steps) for t in trials]
    accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.ComposedDpEvent(steps), 2))
    assert ours.epsilon == pytest.approx(accountant.get_epsilon(1e-4), rel=1e-9)


def test_calibration_does_not_flood_the_log_with_excluded_order_warnings(caplog):
    """Issue 10 item 17: the calculator's calibration printed hundreds of absl warnings."""
    absl_logger = logging.getLogger("absl")

    def converge_warnings() -> int:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="absl"):
            privacy.calibrate_noise_multiplier(0.01, 1423, 256, epochs=5, delta=privacy.default_delta(1423))
        return sum("failed to converge" in r.getMessage() for r in caplog.records)

    assert converge_warnings() == 0
    absl_logger.removeFilter(accountant.EXCLUDED_ORDER_FILTER)  # the check can fail: without the filter
    try:
        assert converge_warnings() > 0
    finally:
        absl_logger.addFilter(accountant.EXCLUDED_ORDER_FILTER)
