"""Each participant's ε in collaborative mode (dptune.privacy.collaborative), checked against
independent computations: the Laplace composition by hand and dp_accounting's own accountants."""

from __future__ import annotations

import math

import dp_accounting
import pytest
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from dptune import privacy
from dptune.errors import PrivacyError
from dptune.privacy.collaborative import (
    calibrate_participants,
    participant_privacy,
    pure_epsilon,
    search_charges,
    svt_upload_noise,
    upload_count,
    value_release_event,
    worst_epsilon,
)
from dptune.spec.collaborative import CollaborativeConfig, CollaborativePrivacy

SIZES = (300, 250, 200)
PARAMETERS = 4810


def test_upload_count_is_ceil_of_theta_times_p():
    assert upload_count(0.1, 4810) == 481
    assert upload_count(0.01, 4810) == 49
    assert upload_count(1.0, 4810) == 4810
    assert upload_count(1e-9, 10) == 1


def test_laplace_svt_noise_matches_the_documented_split_by_hand():
    epsilon, gamma, rounds, c = 9.0, 0.01, 10, 481
    noise = svt_upload_noise(epsilon, gamma, rounds, c)
    per_round = epsilon / rounds
    sensitivity = 2 * gamma
    assert noise.epsilon_select == pytest.approx(8 / 9 * per_round)
    assert noise.epsilon_value == pytest.approx(1 / 9 * per_round)
    assert noise.threshold_scale == pytest.approx(sensitivity / (noise.epsilon_select / 2))
    assert noise.query_scale == pytest.approx(2 * c * sensitivity / (noise.epsilon_select / 2))
    assert noise.value_scale == pytest.approx(c * sensitivity / noise.epsilon_value)
    # the release of the c values: c Laplace mechanisms, each of pure epsilon sensitivity / scale
    assert pure_epsilon(value_release_event(noise)) == pytest.approx(c * sensitivity / noise.value_scale)
    assert pure_epsilon(value_release_event(noise)) == pytest.approx(noise.epsilon_value)


def test_laplace_event_convention_agrees_with_the_closed_form():
    """dp_accounting's LaplaceDpEvent(b) is pure (1/b)-DP: its PLD δ(ε) is 1 - exp((ε - 1/b)/2)
    (the Laplace mechanism's privacy profile), so our noise multiplier scale/sensitivity is right."""
    noise_multiplier = 2.0  # pure epsilon 0.5
    accountant = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(dp_accounting.LaplaceDpEvent(noise_multiplier))
    for epsilon in (0.1, 0.3):
        assert accountant.get_delta(epsilon) == pytest.approx(1 - math.exp((epsilon - 0.5) / 2), abs=1e-3)
    assert pure_epsilon(dp_accounting.LaplaceDpEvent(noise_multiplier)) == 0.5


def test_laplace_svt_charges_exactly_the_budget_and_pld_is_consistent():
    config = CollaborativeConfig(participants=3, rounds=10, theta_upload=0.1, selection="random_above_threshold",
                                 privacy=CollaborativePrivacy("laplace_svt", epsilon=5.0, gamma=0.01))
    charges = participant_privacy(config, SIZES, PARAMETERS)
    # basic composition by hand: 10 rounds x (8/9 + 1/9) x 5/10
    assert [charge.epsilon for charge in charges] == pytest.approx([5.0] * 3)
    assert worst_epsilon(charges) == pytest.approx(5.0)
    assert all(charge.delta == 0 for charge in charges)
    # dp_accounting's PLD of the value releases alone, at a small δ, never exceeds their pure ε
    noise = svt_upload_noise(5.0, 0.01, 10, upload_count(0.1, PARAMETERS))
    accountant = pld_privacy_accountant.PLDAccountant(value_discretization_interval=1e-4)
    accountant.compose(dp_accounting.SelfComposedDpEvent(value_release_event(noise), 10))
    assert accountant.get_epsilon(1e-6) <= 10 * noise.epsilon_value + 1e-3


def test_dp_sgd_participant_is_charged_its_own_run_with_q_b_over_n_i():
    config = CollaborativeConfig(participants=3, rounds=8, local_epochs=1.0,
                                 privacy=CollaborativePrivacy("dp_sgd", noise_multiplier=1.1, l2_norm_clip=1.0,
                                                              batch_size=32))
    charges = participant_privacy(config, SIZES, PARAMETERS, delta=1e-5)
    for charge, n in zip(charges, SIZES):
        steps = 8 * math.ceil(n / 32)
        assert charge.steps == steps
        # independent: dp_accounting's own RDP accountant on the Poisson-subsampled Gaussian
        accountant = rdp_privacy_accountant.RdpAccountant(list(privacy.RDP_ORDERS))
        accountant.compose(dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(32 / n, dp_accounting.GaussianDpEvent(1.1)), steps))
        assert charge.epsilon == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
        assert charge.epsilon_pld <= charge.epsilon
        assert charge.epsilon == pytest.approx(
            privacy.compute_epsilon(n, 32, 1.1, steps=steps, delta=1e-5, pld=False).epsilon_rdp)
    # the smallest shard has the largest q, hence the worst epsilon
    assert worst_epsilon(charges) == charges[2].epsilon == max(c.epsilon for c in charges)


def test_no_privacy_is_infinite_epsilon():
    charges = participant_privacy(CollaborativeConfig(participants=3), SIZES, PARAMETERS)
    assert all(math.isinf(charge.epsilon) for charge in charges)


def test_bad_inputs_raise_privacy_errors():
    with pytest.raises(PrivacyError):
        svt_upload_noise(0.0, 0.01, 10, 5)
    with pytest.raises(PrivacyError, match="no pure epsilon"):
        pure_epsilon(dp_accounting.GaussianDpEvent(1.0))


def _dp_sgd_config(sigma: float, rounds: int = 8) -> CollaborativeConfig:
    return CollaborativeConfig(participants=3, rounds=rounds, local_epochs=1.0,
                               privacy=CollaborativePrivacy("dp_sgd", noise_multiplier=sigma, l2_norm_clip=1.0,
                                                            batch_size=32))


def test_calibrated_sigma_keeps_the_worst_participant_at_the_target():
    sigma = calibrate_participants(_dp_sgd_config(1.0), SIZES, 2.0, delta=1e-5)
    charges = participant_privacy(_dp_sgd_config(sigma), SIZES, PARAMETERS, delta=1e-5)
    assert worst_epsilon(charges) == pytest.approx(2.0, rel=1e-3) and worst_epsilon(charges) <= 2.0 + 1e-9
    # the worst is the smallest shard (largest q); a noticeably smaller sigma overshoots the target
    assert charges[2].epsilon == worst_epsilon(charges)
    assert worst_epsilon(participant_privacy(_dp_sgd_config(0.95 * sigma), SIZES, PARAMETERS, delta=1e-5)) > 2.0


def test_search_charges_compose_every_trial_against_dp_accountings_rdp():
    configs = [_dp_sgd_config(1.0), _dp_sgd_config(2.0, rounds=4), _dp_sgd_config(1.5)]
    charges = search_charges(configs, SIZES, PARAMETERS, delta=1e-5)
    for charge, n in zip(charges, SIZES):
        accountant = rdp_privacy_accountant.RdpAccountant(list(privacy.RDP_ORDERS))
        for config in configs:
            steps = config.rounds * math.ceil(n / 32)
            accountant.compose(dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
                32 / n, dp_accounting.GaussianDpEvent(config.privacy.noise_multiplier)), steps))
        assert charge.epsilon == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-9)
        single = participant_privacy(configs[0], (n,), PARAMETERS, delta=1e-5)[0].epsilon
        assert charge.epsilon > single  # three runs cost more than one


def test_search_charges_add_up_laplace_budgets():
    configs = [CollaborativeConfig(participants=3, rounds=5, theta_upload=theta,
                                   selection="random_above_threshold",
                                   privacy=CollaborativePrivacy("laplace_svt", epsilon=eps, gamma=0.01))
               for theta, eps in ((0.1, 2.0), (0.01, 3.0))]
    charges = search_charges(configs, SIZES, PARAMETERS)
    assert all(charge.epsilon == pytest.approx(5.0, rel=1e-9) and charge.delta == 0 for charge in charges)
    assert all(math.isinf(c.epsilon) for c in search_charges([CollaborativeConfig(participants=3)], SIZES, PARAMETERS))
    with pytest.raises(PrivacyError, match="share one privacy kind"):
        search_charges([configs[0], CollaborativeConfig(participants=3)], SIZES, PARAMETERS)
