"""The search YAML's `n_trials`: a fixed number of trials, or one drawn from a distribution."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dptune.errors import ConfigError
from dptune.spec.limits import MAX_TRIALS, short_repr
from dptune.spec.yaml_fields import check_keys, is_int, number, optional_number, string

TRIAL_DISTRIBUTIONS = ("fixed", "poisson", "truncated_negative_binomial")


@dataclass(frozen=True)
class TrialCount:
    """How many trials the search runs.

    fixed: exactly `n`. poisson / truncated_negative_binomial: drawn once when the study is
    created, with the given `mean` (and `shape` η > 0 for the truncated negative binomial;
    η = 1 is the geometric distribution). A random count is what lets Papernot & Steinke
    (2022) bound the privacy cost of releasing only the best trial.
    """

    distribution: str = "fixed"
    n: int | None = 20
    mean: float | None = None
    shape: float | None = None

    def __post_init__(self) -> None:
        string(self.distribution, "n_trials.distribution", choices=TRIAL_DISTRIBUTIONS)
        if self.distribution == "fixed":
            number(self.n, "n_trials", low=1, high=MAX_TRIALS, integer=True)
            if self.mean is not None or self.shape is not None:
                raise ConfigError("n_trials.mean and n_trials.shape are only used with a random number of trials")
        else:
            number(self.mean, "n_trials.mean", low=1, high=MAX_TRIALS)
            if self.distribution == "truncated_negative_binomial":
                number(self.shape, "n_trials.shape", low=0, low_open=True)
            elif self.shape is not None:
                raise ConfigError("n_trials.shape is only used with distribution truncated_negative_binomial")
            if self.n is not None:
                raise ConfigError("n_trials.n is only used with distribution fixed")

    @property
    def random(self) -> bool:
        return self.distribution != "fixed"

    @property
    def accountant_shape(self) -> float:
        """The `shape` of dp_accounting's RepeatAndSelectDpEvent (Poisson: infinity)."""
        return math.inf if self.distribution == "poisson" else float(self.shape)

    def draw(self, rng: np.random.Generator | None = None) -> int:
        """The number of trials to run (fixed: n; else one draw from the distribution)."""
        if not self.random:
            return int(self.n)
        rng = rng or np.random.default_rng()
        if self.distribution == "poisson":
            return int(rng.poisson(self.mean))
        gamma = tnb_gamma(self.mean, self.shape)
        while True:  # truncated: K >= 1
            k = int(rng.negative_binomial(self.shape, gamma))
            if k >= 1:
                return k

    def to_dict(self) -> int | dict[str, Any]:
        if not self.random:
            return int(self.n)
        out: dict[str, Any] = {"distribution": self.distribution, "mean": self.mean}
        if self.shape is not None:
            out["shape"] = self.shape
        return out

    @classmethod
    def from_value(cls, value: Any) -> TrialCount:
        if is_int(value):
            return cls(n=number(value, "n_trials", low=1, high=MAX_TRIALS, integer=True))
        if not isinstance(value, dict):
            raise ConfigError(f"n_trials must be a positive integer or a mapping with `distribution`, got {short_repr(value)}")
        check_keys(value, "n_trials", required=("distribution",), optional=("n", "mean", "shape"))
        distribution = string(value["distribution"], "n_trials.distribution", choices=TRIAL_DISTRIBUTIONS)
        if distribution == "fixed":
            return cls(n=number(value.get("n"), "n_trials.n", low=1, high=MAX_TRIALS, integer=True))
        return cls(
            distribution=distribution,
            n=None if value.get("n") is None else number(value["n"], "n_trials.n"),
            mean=number(value.get("mean"), "n_trials.mean", low=1, high=MAX_TRIALS),
            shape=optional_number(value.get("shape"), "n_trials.shape", low=0, low_open=True),
        )


def tnb_mean(gamma: float, shape: float) -> float:
    """E[K] of the truncated negative binomial with halting probability γ in (0, 1) and shape
    η > 0 (Papernot & Steinke 2022, Definition 1): η(1−γ)/(γ(1−γ^η)); η = 1 is the geometric
    distribution, E[K] = 1/γ, and η → 0 the logarithmic one. dptune's one definition: the
    accountant (`dptune.privacy.search_cost`) takes E[K] and η, as dp_accounting's
    RepeatAndSelectDpEvent does, and never needs γ."""
    return shape * (1 - gamma) / (gamma * (1 - gamma**shape))


def tnb_gamma(mean: float, shape: float) -> float:
    """The γ in (0, 1) whose truncated negative binomial with shape η has the given mean."""
    from scipy.optimize import brentq

    if mean <= 1:
        return 1.0 - 1e-12
    return float(brentq(lambda g: tnb_mean(g, shape) - mean, 1e-12, 1 - 1e-12, xtol=1e-14))
