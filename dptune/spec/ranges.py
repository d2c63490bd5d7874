"""The search YAML's `ranges`: the hyperparameter ranges a search samples from, and their defaults."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dptune.errors import ConfigError
from dptune.spec.limits import MAX_BATCH_SIZE, MAX_EPOCHS, short_repr
from dptune.spec.modes import ModeRules
from dptune.spec.yaml_fields import check_keys, is_int, is_number, number

PER_EXAMPLE = "per_example"
#: the upper ends of the ranges bounded by dptune.spec.limits (checked before any trial runs)
RANGE_LIMITS: dict[str, float] = {"batch_size": MAX_BATCH_SIZE, "epochs": MAX_EPOCHS}
#: the default learning-rate range of each optimizer (fixed.optimizer): plain SGD up to 1,
#: SGD with momentum 0.9 a tenth of that (its steps are about 10x larger), Adam 1e-4..1e-2
DEFAULT_LEARNING_RATES: dict[str, tuple[float, float]] = {
    "sgd": (0.01, 1.0),
    "momentum": (0.001, 0.1),
    "adam": (0.0001, 0.01),
}


@dataclass(frozen=True)
class SearchRanges:
    """Search ranges ([low, high], sampled on a log scale; low == high fixes a value).

    num_microbatches: the choices for m; "per_example" means m = B (TF Privacy's default),
    an integer above the batch size is capped at m = B. noise_multiplier: searched in the
    pareto mode and at m = 1 in the recipe mode; calibrated (not searched) in budgeted mode.
    """

    l2_norm_clip: tuple[float, float] = (0.1, 10.0)
    learning_rate: tuple[float, float] = (0.01, 1.0)
    batch_size: tuple[int, int] = (32, 256)
    epochs: tuple[int, int] = (1, 10)
    num_microbatches: tuple[int | str, ...] = (8, 32, PER_EXAMPLE)
    noise_multiplier: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for key in ("l2_norm_clip", "learning_rate", "batch_size", "epochs", "noise_multiplier"):
            value = getattr(self, key)
            if value is None:
                continue
            object.__setattr__(self, key, range_pair(value, f"ranges.{key}", integer=key in ("batch_size", "epochs"),
                                                high=RANGE_LIMITS.get(key)))
        choices = self.num_microbatches
        if is_int(choices) or isinstance(choices, str):
            choices = (choices,)
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"ranges.num_microbatches must be a list of choices, got {short_repr(choices)}")
        for choice in choices:
            if not (choice == PER_EXAMPLE or (is_int(choice) and 1 <= choice <= MAX_BATCH_SIZE)):
                raise ConfigError(
                    f"ranges.num_microbatches choices must be integers from 1 to {MAX_BATCH_SIZE:,} or "
                    f"{PER_EXAMPLE!r}, got {short_repr(choice)}"
                )
        if len(set(choices)) != len(choices):
            raise ConfigError(f"ranges.num_microbatches has repeated choices: {short_repr(list(choices))}")
        object.__setattr__(self, "num_microbatches", tuple(choices))

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = list(value)
        return out

    @classmethod
    def from_dict(cls, values: Any, *, defaults: SearchRanges) -> SearchRanges:
        names = [f.name for f in dataclasses.fields(cls)]
        check_keys(values, "ranges", optional=names)
        merged = {name: getattr(defaults, name) for name in names}
        merged.update(values)
        return cls(**merged)


def range_pair(value: Any, key: str, *, integer: bool, high: float | None = None) -> tuple:
    """[low, high] within (0, `high`] (dptune.spec.limits for the batch size and the epochs)."""
    limit = high
    if is_number(value):
        value = [value, value]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{key} must be [low, high] (or one value to fix it), got {short_repr(value)}")
    low = number(value[0], f"{key}[0] (low)", low=0, low_open=True, high=limit, integer=integer)
    high = number(value[1], f"{key}[1] (high)", low=0, low_open=True, high=limit, integer=integer)
    if low > high:
        raise ConfigError(f"{key} must be [low, high] with low <= high, got {list(value)}")
    return (low, high)


def default_ranges(mode: ModeRules, optimizer: Any = "sgd") -> SearchRanges:
    """The ranges of a spec that gives none (or fills the keys it leaves out): the mode's σ
    range and microbatch choices, the optimizer's learning rates (DEFAULT_LEARNING_RATES;
    unknown: SGD's)."""
    learning_rate = DEFAULT_LEARNING_RATES.get(optimizer if isinstance(optimizer, str) else "sgd",
                                               DEFAULT_LEARNING_RATES["sgd"])
    mode_defaults: dict[str, Any] = {"noise_multiplier": mode.noise_range}
    if mode.microbatches is not None:
        mode_defaults["num_microbatches"] = mode.microbatches
    return SearchRanges(learning_rate=learning_rate, **mode_defaults)
