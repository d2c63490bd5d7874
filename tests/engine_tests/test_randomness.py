"""Noise and sampling randomness are secret and fresh for every run (issue 8, item 1).

The attack these tests run is the one an independent review carried out: two released
runs that share their noise vector z (with std σ·C in each) let anyone cancel z and recover
the exact noise-free sum of clipped gradients, although one run's noise is many times its
signal. With full-batch steps (q = 1, so the sampled batch is every row and the clipped sum
S is the same in every run) and plain SGD at learning rate 1 from the same public initial
weights, one step moves the weights by u_σ = −(S + σ·C·z)/m, so 2·u_4 − u_8 = −S/m exactly
when z is shared. The deliberately broken variant (`debug_fixed_noise`, the old default
behaviour) must be caught by the same check.
"""

from __future__ import annotations

import numpy as np
import pytest

from dptune.data import builtin_dataset
from dptune.data.dataset import Dataset
from dptune.engine.dpsgd import _randomness, train
from dptune.engine.models import build_model
from dptune.spec.config import DPSGDConfig, ModelSpec

ROWS = 32
SPEC = ModelSpec("mlp", hidden_units=(8,))


@pytest.fixture(scope="module")
def tiny():
    digits = builtin_dataset("digits", seed=0)
    return Dataset(name="digits-32", x_train=digits.x_train[:ROWS], y_train=digits.y_train[:ROWS],
                   x_val=digits.x_val[:ROWS], y_val=digits.y_val[:ROWS], class_names=digits.class_names)


def _one_step_update(dataset: Dataset, noise_multiplier: float, debug_fixed_noise: bool) -> np.ndarray:
    """−(clipped sum + noise)/m of one full-batch step from the seed-0 initial weights."""
    config = DPSGDConfig(l2_norm_clip=0.1, noise_multiplier=noise_multiplier, num_microbatches=ROWS,
                         batch_size=ROWS, learning_rate=1.0, epochs=1, seed=0, debug_fixed_noise=debug_fixed_noise)
    initial = build_model(SPEC, dataset.input_shape, dataset.num_classes, seed=0).get_weights()
    result = train(dataset, SPEC, config)
    assert result.steps == 1
    return np.concatenate([np.ravel(a - b) for a, b in zip(result.model.get_weights(), initial)])


def _recovered_sum_error(dataset: Dataset, debug_fixed_noise: bool) -> tuple[float, float]:
    """(relative error of the attacker's estimate of S/m, noise-to-signal ratio of one run)."""
    signal = _one_step_update(dataset, 0.0, debug_fixed_noise)  # −S/m: the secret the attack wants
    first = _one_step_update(dataset, 4.0, debug_fixed_noise)
    second = _one_step_update(dataset, 8.0, debug_fixed_noise)
    estimate = 2 * first - second
    norm = np.linalg.norm(signal)
    return float(np.linalg.norm(estimate - signal) / norm), float(np.linalg.norm(first - signal) / norm)


def test_two_released_runs_do_not_reveal_the_noise_free_gradient_sum(tiny):
    error, noise_to_signal = _recovered_sum_error(tiny, debug_fixed_noise=False)
    assert noise_to_signal > 3  # one run's noise hides its signal
    assert error > 0.5 * noise_to_signal  # and combining two runs does not cancel it


def test_the_check_catches_noise_derived_from_the_seed(tiny):
    error, noise_to_signal = _recovered_sum_error(tiny, debug_fixed_noise=True)
    assert noise_to_signal > 3
    assert error < 1e-3  # the broken variant gives the exact sum away


def test_no_two_runs_share_a_noise_key_or_a_sampling_stream():
    config = DPSGDConfig(seed=0)
    draws = [_randomness(config) for _ in range(500)]
    assert len({key for _, key, _ in draws}) == 500
    assert len({rng.integers(2**62) for rng, _, _ in draws}) == 500
    assert {init for _, _, init in draws} == {0}  # the seed fixes the public initial weights only


def test_the_debug_option_derives_the_noise_from_the_seed():
    config = DPSGDConfig(seed=5, debug_fixed_noise=True)
    (rng_a, key_a, _), (rng_b, key_b, _) = _randomness(config), _randomness(config)
    assert key_a == key_b and rng_a.integers(2**62) == rng_b.integers(2**62)
    assert not config.noise_is_secret and DPSGDConfig(seed=5).noise_is_secret
