"""Step 3 of TF Privacy's tuning recipe (dptune.study.recipe): scale the m = 1 noise σ₁ and the
number of microbatches m by one integer factor k (σ = kσ₁, m = k, so the effective noise σC/m
is unchanged) until the accountant meets the target ε, m <= B; m < B is charged σ/2 (DESIGN.md
"Exact DP-SGD semantics"), m = B σ. When even m = B misses the target, say what would work.

Pure accounting on dp_accounting (dptune.privacy): no training, no study.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from dptune import privacy
from dptune.errors import PrivacyError
from dptune.privacy.run import DPSGDRun
from dptune.privacy.search_cost import calibrate_with_clip_selection, epsilon_with_clip_selection
from dptune.spec.config import DPSGDConfig


@dataclass(frozen=True)
class ScaledConfig:
    """The m = 1 noise scaled by k: sigma = k*sigma1, m = k (sigma/m = sigma1 unchanged).

    feasible False: even m = B misses the target; `message` and `suggestions` say what would.
    epsilon_rdp: the training run's RDP ε; epsilon_total: with the clip-norm selection.
    """

    feasible: bool
    factor: int | None
    noise_multiplier: float | None
    num_microbatches: int | None
    batch_size: int
    epochs: float
    sigma_m1: float
    epsilon_rdp: float | None = None
    epsilon_total: float | None = None
    message: str = ""
    suggestions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _required_sigma(target: float, n: int, batch_size: int, epochs: float, delta: float, microbatched: bool,
                    clip_epsilon: float) -> float | None:
    """The least sigma whose run (microbatched or not) with the clip selection meets `target`:
    calibrated; MIN_NOISE_MULTIPLIER when even that little noise meets it; None when
    unreachable."""
    try:
        return calibrate_with_clip_selection(
            target, n, batch_size, epochs=epochs, delta=delta, microbatched=microbatched, clip_epsilon=clip_epsilon
        )
    except PrivacyError:  # unreachable, or so loose a target that even the least noise meets it
        least = DPSGDRun.planned(n, batch_size, privacy.MIN_NOISE_MULTIPLIER, epochs=epochs, microbatched=microbatched)
        meets = epsilon_with_clip_selection(least, clip_epsilon, delta)[0] <= target
        return least.noise_multiplier if meets else None


def total_epsilon(n: int, config: DPSGDConfig, delta: float, clip_epsilon: float,
                  steps: int | None = None) -> tuple[float, float]:
    """(training RDP ε, RDP ε with the clip selection) of a config (steps: default the full run)."""
    run = DPSGDRun.of_config(config, n, steps)
    training = privacy.privacy_report(run, delta, pld=False).epsilon_rdp
    return training, (epsilon_with_clip_selection(run, clip_epsilon, delta)[0] if clip_epsilon > 0 else training)


def scale_noise(
    sigma_m1: float, target_epsilon: float, n: int, batch_size: int, epochs: float, delta: float,
    *, clip_epsilon: float = 0.0,
) -> ScaledConfig:
    """The smallest integer k with sigma = k*sigma1, m = k meeting the target (m <= B).

    m < B is charged sigma/2, so the smallest k is ceil(sigma_req(microbatched)/sigma1) if
    that is below B; otherwise m = B (charged sigma = B*sigma1) if that is enough.
    """
    base = dict(batch_size=batch_size, epochs=epochs, sigma_m1=sigma_m1)
    needed_micro = _required_sigma(target_epsilon, n, batch_size, epochs, delta, True, clip_epsilon)
    factor = None
    if needed_micro is not None:
        k = max(1, math.ceil(needed_micro / sigma_m1 * (1 - 1e-12)))
        if k < batch_size:
            factor = k
    if factor is None:
        needed_per_example = _required_sigma(target_epsilon, n, batch_size, epochs, delta, False, clip_epsilon)
        if needed_per_example is not None and batch_size * sigma_m1 >= needed_per_example:
            factor = batch_size
    if factor is None:
        return ScaledConfig(
            feasible=False, factor=None, noise_multiplier=None, num_microbatches=None,
            message=(
                f"even per-example clipping (m = B = {batch_size}, sigma = B*sigma1 = {batch_size * sigma_m1:.4g}) "
                f"misses ε = {target_epsilon:g} at {epochs:g} epochs"
            ),
            suggestions=_suggestions(sigma_m1, target_epsilon, n, batch_size, epochs, delta, clip_epsilon),
            **base,
        )
    sigma = factor * sigma_m1
    config = DPSGDConfig(noise_multiplier=sigma, num_microbatches=factor, batch_size=batch_size, epochs=epochs)
    training, total = total_epsilon(n, config, delta, clip_epsilon)
    return ScaledConfig(
        feasible=True, factor=factor, noise_multiplier=sigma, num_microbatches=factor,
        epsilon_rdp=training, epsilon_total=total,
        message=(
            f"sigma and m scaled by k = {factor}: sigma = {sigma:.4g}, m = {factor}"
            f"{' (per-example)' if factor == batch_size else ''}; ε = {total:.4g} <= {target_epsilon:g}"
        ),
        **base,
    )


def _per_example_feasible(sigma_m1: float, target: float, n: int, batch_size: int, epochs: float, delta: float,
                          clip_epsilon: float) -> bool:
    """Does m = B (per-example) with sigma = B*sigma1 meet the target?"""
    run = DPSGDRun.planned(n, batch_size, batch_size * sigma_m1, epochs=epochs)
    return epsilon_with_clip_selection(run, clip_epsilon, delta)[0] <= target


def _suggestions(sigma_m1: float, target: float, n: int, batch_size: int, epochs: float, delta: float,
                 clip_epsilon: float) -> list[str]:
    """What would meet the target with per-example clipping: a larger batch, fewer epochs."""
    out = []
    b = batch_size * 2
    while b <= n:
        if _per_example_feasible(sigma_m1, target, n, b, epochs, delta, clip_epsilon):
            out.append(f"batch_size {b} (sigma = {b * sigma_m1:.4g}, m = {b}) at {epochs:g} epochs")
            break
        b *= 2
    e = epochs
    while e > 0.25:
        e = e - 1 if e > 1 else e / 2
        if _per_example_feasible(sigma_m1, target, n, batch_size, e, delta, clip_epsilon):
            out.append(f"epochs {e:g} at batch_size {batch_size} (sigma = {batch_size * sigma_m1:.4g}, m = {batch_size})")
            break
    if not out:
        out.append("a larger target ε, more training examples, or a larger tolerance (a smaller sigma1 forces more noise)")
    return out
