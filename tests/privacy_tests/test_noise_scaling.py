"""The recipe's step 3 (dptune.privacy.noise_scaling): σ and m scaled by one factor to the target."""

from __future__ import annotations

import pytest

from dptune import privacy
from dptune.privacy.noise_scaling import scale_noise, total_epsilon
from dptune.spec.config import DPSGDConfig

N, B, EPOCHS = 1438, 64, 3
DELTA = privacy.default_delta(N)


def test_scaling_keeps_effective_noise_and_meets_the_target():
    sigma1 = 0.03
    scaled = scale_noise(sigma1, 3.0, N, B, EPOCHS, DELTA, clip_epsilon=0.1)
    assert scaled.feasible and 1 <= scaled.num_microbatches <= B
    assert scaled.noise_multiplier / scaled.num_microbatches == pytest.approx(sigma1)
    assert scaled.epsilon_total <= 3.0
    # the smallest such k: one microbatch fewer misses the target
    k = scaled.factor
    if 1 < k < B:
        smaller = DPSGDConfig(noise_multiplier=(k - 1) * sigma1, num_microbatches=k - 1, batch_size=B, epochs=EPOCHS)
        assert total_epsilon(N, smaller, DELTA, 0.1)[1] > 3.0


def test_scaling_uses_per_example_when_microbatches_cannot_reach():
    # sigma1 such that k < B microbatched is not enough, but m = B (charged sigma, not sigma/2) is
    needed_micro = privacy.calibrate_noise_multiplier(3.0, N, B, epochs=EPOCHS, delta=DELTA, microbatched=True)
    needed_per_example = privacy.calibrate_noise_multiplier(3.0, N, B, epochs=EPOCHS, delta=DELTA)
    sigma1 = (needed_micro / B + needed_per_example / B) / 2 * 1.01
    assert (B - 1) * sigma1 < needed_micro <= 2 * B * sigma1
    scaled = scale_noise(sigma1, 3.0, N, B, EPOCHS, DELTA)
    assert scaled.feasible and scaled.num_microbatches == B and scaled.epsilon_rdp <= 3.0


def test_scaling_says_what_would_work_when_impossible():
    scaled = scale_noise(0.02, 1.0, N, 16, 10, DELTA)
    assert not scaled.feasible and scaled.num_microbatches is None
    assert "per-example" in scaled.message and scaled.suggestions
    assert any(s.startswith("batch_size 256") for s in scaled.suggestions)  # 16 * 2^k, sigma = B * sigma1
