"""The privacy statement: what it charges, how it rounds, and what it says (issue 8, item 6)."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest

from dptune import privacy
from dptune.privacy.search_cost import clip_selection_event, epsilon_with_clip_selection
from dptune.privacy.statement import (
    NO_PRIVACY,
    SHUFFLE_NOTE,
    VOID,
    Release,
    delta_warnings,
    format_epsilon,
    format_sigma,
    preprocessing_release,
    statement_for_run,
)
from dptune.spec.config import DPSGDConfig

N, B = 60000, 250
MNIST = DPSGDConfig(l2_norm_clip=1.5, noise_multiplier=1.3, num_microbatches=B, batch_size=B, epochs=3)


def test_training_epsilon_is_the_published_accountant_value():
    # ../shared/REFERENCES.md: N 60000, B 250, σ 1.3, 3 epochs, 720 steps -> RDP 0.5632 (order 18), PLD 0.3703
    statement = statement_for_run(n_train=N, config=MNIST, steps=720, delta=1e-5)
    assert statement.epsilon_training_rdp == pytest.approx(0.5632, abs=5e-4)
    assert statement.epsilon_training_pld == pytest.approx(0.3703, rel=5e-3)
    assert statement.rdp_order == 18
    assert statement.epsilon_total == statement.epsilon_training_rdp  # nothing released before training


def test_microbatching_is_charged_half_sigma_and_said():
    statement = statement_for_run(n_train=N, config=MNIST.replace(num_microbatches=25), steps=720, delta=1e-5)
    assert statement.epsilon_training_rdp == pytest.approx(3.4259, abs=5e-4)  # REFERENCES.md, σ/2 row
    assert statement.run.charged_noise_multiplier == 0.65 and statement.run.microbatched
    assert "charged as σ/2 = 0.6500" in statement.text()


def test_clip_norm_releases_and_preprocessing_are_in_the_total():
    statement = statement_for_run(n_train=N, config=MNIST, steps=720, delta=1e-5, clip_epsilon=0.3,
                                  preprocessing=Release("preprocessing", 0.2, 1e-7, "declared"))
    with_clip = epsilon_with_clip_selection(privacy.DPSGDRun(N, B, 1.3, 720), 0.3, 1e-5)[0]
    assert statement.epsilon_total == pytest.approx(with_clip + 0.2)
    assert statement.epsilon_total > statement.epsilon_training_rdp + 0.2
    assert statement.delta_total == pytest.approx(1e-5 + 1e-7)
    assert "clip-norm releases before training: ε = 0.3000" in statement.text()


def test_unknown_preprocessing_makes_the_total_infinite_and_says_so():
    statement = statement_for_run(n_train=N, config=MNIST, steps=720, delta=1e-5,
                                  preprocessing=preprocessing_release(None))
    assert math.isinf(statement.epsilon_total)
    assert f"total for this run: ε = {NO_PRIVACY}" in statement.text()
    assert statement.to_dict()["epsilon_total"] is None


def test_public_noise_voids_every_epsilon():
    debug = MNIST.replace(seed=3, debug_fixed_noise=True)
    statement = statement_for_run(n_train=N, config=debug, steps=720, delta=1e-5)
    assert statement.void and VOID in statement.text() and "PUBLIC" in statement.text()
    assert statement.to_dict()["epsilon_total"] is None and statement.to_dict()["epsilon_training"] is None
    assert VOID not in statement_for_run(n_train=N, config=MNIST, steps=720, delta=1e-5).text()


def test_the_shuffle_sampler_is_labelled():
    shuffle = MNIST.replace(sampling="shuffle", num_microbatches=50)
    assert SHUFFLE_NOTE in statement_for_run(n_train=N, config=shuffle, steps=720, delta=1e-5).text()
    assert SHUFFLE_NOTE not in statement_for_run(n_train=N, config=MNIST, steps=720, delta=1e-5).text()


def test_the_statement_names_the_unit_and_what_epsilon_does_not_cover():
    text = statement_for_run(n_train=N, config=MNIST, steps=720, delta=1e-5).text()
    assert "unit of privacy: one row of the uploaded file" in text
    assert "validation rows" in text and "training loss" in text and "secret" in text


@pytest.mark.parametrize("n, delta, expected", [
    (10, privacy.default_delta(10), 1),  # 0.079: below 1/N but large in absolute terms
    (1437, 0.5, 2),  # above 1/N and large
    (1437, privacy.default_delta(1437), 0),
])
def test_delta_warnings(n, delta, expected):
    assert len(delta_warnings(delta, n)) == expected


def test_epsilon_and_sigma_are_rounded_conservatively():
    assert format_epsilon(2.99991) == "3.000" and format_epsilon(2.9990) == "2.999"
    assert format_epsilon(math.inf) == NO_PRIVACY and format_epsilon(None) == NO_PRIVACY
    assert format_sigma(1.23441) == "1.235" and format_sigma(0.0123441) == "0.01235"
    # nine calibrations, as the review checked: the displayed σ never overshoots the target
    for target in (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0):
        sigma = privacy.calibrate_noise_multiplier(target, 1437, 64, epochs=3, delta=1e-4)
        shown = float(format_sigma(sigma))
        assert shown >= sigma
        assert privacy.compute_epsilon(1437, 64, shown, epochs=3, delta=1e-4, pld=False).epsilon_rdp <= target


def test_several_clip_releases_are_bounded_by_one_release_of_their_total():
    """The statement charges k Laplace releases as one of Σε (objective.study_clip_epsilon): an
    upper bound at every RDP order because the Laplace RDP is convex in ε with value 0 at 0."""
    orders = list(privacy.RDP_ORDERS)
    composed = dp_accounting.rdp.RdpAccountant(orders)
    for epsilon in (0.1, 0.05, 0.3):
        composed.compose(clip_selection_event(epsilon))
    single = dp_accounting.rdp.RdpAccountant(orders)
    single.compose(clip_selection_event(0.45))
    assert np.all(np.asarray(composed._rdp) <= np.asarray(single._rdp) + 1e-12)
    assert np.any(np.asarray(composed._rdp) < np.asarray(single._rdp))
