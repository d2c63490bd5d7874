"""One DP-SGD run as the accountant sees it (`DPSGDRun`: N, B, σ, steps, microbatched; the
one place σ/2 is charged), its steps and δ, and the argument checks every accountant function shares."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import dp_accounting

from dptune.errors import PrivacyError
from dptune.spec.config import DPSGDConfig
from dptune.spec.limits import MAX_STEPS

# --------------------------------------------------------------------------------------------
# Small helpers: steps, delta, validation
# --------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_n_batch(n: Any, batch_size: Any) -> None:
    if not _is_int(n) or n < 1:
        raise PrivacyError(f"n (number of training examples) must be an integer >= 1, got {n!r}")
    if not _is_int(batch_size) or not 1 <= batch_size <= n:
        raise PrivacyError(
            f"batch_size must be an integer between 1 and n ({n}), got {batch_size!r}"
        )


def _check_delta(delta: Any, n: int) -> float:
    if delta is None:
        return default_delta(n)
    if not _is_real(delta) or not 0 < delta < 1:
        raise PrivacyError(f"delta must be a number in (0, 1), got {delta!r}")
    return float(delta)


def _check_epochs(epochs: Any) -> float:
    if not _is_real(epochs) or not math.isfinite(epochs) or epochs <= 0:
        raise PrivacyError(f"epochs must be a finite number > 0, got {epochs!r}")
    return float(epochs)


def num_steps(n: int, batch_size: int, epochs: float) -> int:
    """Number of DP-SGD steps of `epochs` epochs: ceil(epochs · n / batch_size).

    n: training examples; batch_size: expected batch size B; epochs may be fractional.
    A product that is an integer up to floating-point noise (e.g. 0.1 · 60000 / 250) is not
    rounded up. REFERENCES.md: n=60000, B=256, 60 epochs -> 14063.
    """
    _check_n_batch(n, batch_size)
    epochs = _check_epochs(epochs)
    exact = epochs * n / batch_size
    nearest = round(exact)
    if abs(exact - nearest) <= 1e-9 * max(1.0, exact):
        return max(1, int(nearest))
    return max(1, math.ceil(exact))


def default_delta(n: int) -> float:
    """dptune's default δ for n training examples: 1 / n^1.1 (below 1/n, as δ must be)."""
    if not _is_int(n) or n < 1:
        raise PrivacyError(f"n (number of training examples) must be an integer >= 1, got {n!r}")
    return 1.0 / float(n) ** 1.1


def delta_warning(delta: float, n: int) -> str | None:
    """A warning text when δ ≥ 1/n (a mechanism that publishes one random example is then
    (0, δ)-DP, so the guarantee is meaningless); None when δ < 1/n."""
    if delta >= 1.0 / n:
        return (
            f"Warning: delta = {delta:.3g} is not below 1/N = {1.0 / n:.3g} (N = {n}); a mechanism "
            f"that publishes a random training example meets such a guarantee. Use "
            f"delta < 1/N, e.g. the default 1/N^1.1 = {default_delta(n):.3g}."
        )
    return None


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def _step_event(sampling_rate: float, charged_noise: float) -> dp_accounting.DpEvent:
    """One DP-SGD step: Poisson sampling at rate q, Gaussian noise multiplier σ (charged)."""
    return dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(charged_noise))


@dataclass(frozen=True)
class DPSGDRun:
    """One DP-SGD training run as the accountant sees it: the only record of a run in dptune.privacy.

    n_train: N, training examples (the unit of privacy is one of them); batch_size: the
    expected batch size B (1 <= B <= N); noise_multiplier: σ as configured (noise std σC on
    the clipped sum); steps: T (0: a run that never took a step, which costs nothing);
    microbatched: fewer microbatches than B (the accountant then charges σ/2, see
    `charged_noise_multiplier`). Raises PrivacyError for out-of-range values, naming them.
    """

    n_train: int
    batch_size: int
    noise_multiplier: float
    steps: int
    microbatched: bool = False

    def __post_init__(self) -> None:
        _check_n_batch(self.n_train, self.batch_size)
        sigma = self.noise_multiplier
        if not _is_real(sigma) or not math.isfinite(sigma) or sigma < 0:
            raise PrivacyError(f"noise_multiplier must be a finite number >= 0, got {sigma!r}")
        if not _is_int(self.steps) or self.steps < 0:
            raise PrivacyError(f"steps must be an integer >= 0, got {self.steps!r}")
        if self.steps > MAX_STEPS:  # the accountant's memory grows with the steps
            raise PrivacyError(f"{self.steps:,} steps is over dptune's limit of {MAX_STEPS:,} steps per run; use "
                               "fewer epochs or a larger batch size")
        for name, value in (("n_train", int(self.n_train)), ("batch_size", int(self.batch_size)),
                            ("noise_multiplier", float(sigma)), ("steps", int(self.steps)),
                            ("microbatched", bool(self.microbatched))):
            object.__setattr__(self, name, value)

    @classmethod
    def planned(
        cls,
        n_train: int,
        batch_size: int,
        noise_multiplier: float,
        *,
        epochs: float | None = None,
        steps: int | None = None,
        microbatched: bool = False,
    ) -> DPSGDRun:
        """The run of `epochs` epochs (steps = num_steps(n_train, batch_size, epochs)) or of
        exactly `steps` >= 1 steps: give exactly one."""
        if (epochs is None) == (steps is None):
            raise PrivacyError(f"give exactly one of epochs and steps, got epochs={epochs!r} and steps={steps!r}")
        if steps is None:
            steps = num_steps(n_train, batch_size, epochs)
        elif not _is_int(steps) or steps < 1:
            raise PrivacyError(f"steps must be an integer >= 1, got {steps!r}")
        return cls(n_train, batch_size, noise_multiplier, steps, microbatched)

    @classmethod
    def of_config(cls, config: DPSGDConfig, n_train: int, steps: int | None = None) -> DPSGDRun:
        """The run of `config` on N = `n_train` rows: `steps` steps (default: the whole
        config.epochs); microbatched when config.num_microbatches < config.batch_size."""
        if steps is None:
            steps = num_steps(n_train, config.batch_size, config.epochs)
        return cls(n_train, config.batch_size, config.noise_multiplier, steps, not config.per_example)

    @property
    def sampling_rate(self) -> float:
        """q = B / N: the probability that an example joins a step (Poisson sampling)."""
        return self.batch_size / self.n_train

    @property
    def charged_noise_multiplier(self) -> float:
        """σ the accountant charges: σ/2 when microbatched (one example can change a
        microbatch's clipped gradient by 2C, so the sensitivity doubles), else σ.
        This is the only place in dptune that applies that rule."""
        return self.noise_multiplier / 2.0 if self.microbatched else self.noise_multiplier

    def with_noise(self, noise_multiplier: float) -> DPSGDRun:
        """The same run with noise multiplier σ = `noise_multiplier` (as configured)."""
        return dataclasses.replace(self, noise_multiplier=noise_multiplier)

    def event(self) -> dp_accounting.DpEvent:
        """The run as a dp_accounting event: one step self-composed `steps` times."""
        return dp_accounting.SelfComposedDpEvent(
            _step_event(self.sampling_rate, self.charged_noise_multiplier), self.steps
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
