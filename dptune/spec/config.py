"""Specifications of a model and of a DP-SGD run: frozen, validated on construction.

The field names of `DPSGDConfig` are the YAML keys a TF Privacy user knows
(`l2_norm_clip`, `noise_multiplier`, `num_microbatches`, ...); see ../shared/DESIGN.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from dptune.errors import ConfigError
from dptune.spec.limits import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_HIDDEN_LAYERS,
    MAX_HIDDEN_UNITS,
    MAX_HIDDEN_WEIGHTS,
    short_repr,
)

MODEL_KINDS = ("logreg", "mlp", "seed_cnn", "tanh_cnn", "keras_file")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "selu", "softplus")
OPTIMIZERS = ("sgd", "momentum", "adam")
SAMPLINGS = ("poisson", "shuffle")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class ModelSpec:
    """Which network to build; input shape and class count come from the dataset.

    kind: "logreg" (multinomial logistic regression), "mlp" (dense layers of
    `hidden_units` with `activation`; the only kind with hidden_units, default (128,)), "seed_cnn" (TF Privacy's MNIST tutorial CNN),
    "tanh_cnn" (the tanh CNN of Papernot et al. 2021, the usual strong DP baseline on
    28x28 images) or "keras_file" (a user's architecture saved as `.keras` at `path`).
    """

    kind: str = "seed_cnn"
    hidden_units: tuple[int, ...] = ()
    activation: str = "relu"
    path: str | None = None

    def __post_init__(self) -> None:
        _require(self.kind in MODEL_KINDS, f"model.kind must be one of {MODEL_KINDS}, got {short_repr(self.kind)}")
        # only the MLP has configurable hidden layers: other kinds have a fixed architecture (or
        # the user's file), so their hidden_units are empty, whatever an older YAML wrote there
        _require(
            isinstance(self.hidden_units, (list, tuple)),
            f"model.hidden_units must be a list of positive integers, got {short_repr(self.hidden_units)}",
        )
        _require(
            len(self.hidden_units) <= MAX_HIDDEN_LAYERS,
            f"model.hidden_units has {len(self.hidden_units):,} layers, over dptune's limit of {MAX_HIDDEN_LAYERS}",
        )
        units = tuple(self.hidden_units) if self.kind == "mlp" else ()
        if self.kind == "mlp" and not units:
            units = (128,)
        object.__setattr__(self, "hidden_units", units)
        _require(
            all(_is_int(u) and u > 0 for u in units),
            f"model.hidden_units must be positive integers, got {short_repr(list(units))}",
        )
        _require(
            all(u <= MAX_HIDDEN_UNITS for u in units),
            f"model.hidden_units: a layer has {max(units, default=0):,} units, over dptune's limit of "
            f"{MAX_HIDDEN_UNITS:,} per layer",
        )
        _require(
            sum(a * b for a, b in zip(units, units[1:])) <= MAX_HIDDEN_WEIGHTS,
            f"model.hidden_units {short_repr(list(units))} need more than {MAX_HIDDEN_WEIGHTS:,} weights between "
            "the hidden layers (dptune's limit); use fewer or smaller layers",
        )
        _require(
            self.activation in ACTIVATIONS,
            f"model.activation must be one of {ACTIVATIONS}, got {short_repr(self.activation)}",
        )
        _require(
            (self.kind == "keras_file") == (self.path is not None),
            "model.path is required for kind 'keras_file' and only for it",
        )

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["hidden_units"] = list(self.hidden_units)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelSpec:
        return _from_dict(cls, values, "model")


@dataclass(frozen=True)
class DPSGDConfig:
    """One DP-SGD run (the semantics of ../shared/DESIGN.md).

    l2_norm_clip: C, the L2 bound on each microbatch gradient (all parameters jointly).
    noise_multiplier: sigma; the Gaussian noise added to the clipped sum has std sigma*C.
    num_microbatches: m; m == batch_size means per-example clipping. With m < batch_size
        one example can change a microbatch term by 2C, so the accountant charges sigma/2.
    learning_rate, batch_size (expected examples per step, B), epochs (passes over N;
        steps = ceil(epochs * N / B)), optimizer ("sgd", "momentum", "adam"), momentum.
    sampling: "poisson" (each example joins a step with probability B/N; what the
        accountant assumes) or "shuffle" (fixed batches of a per-epoch permutation, as
        TF Privacy does; accounted as Poisson, as TF Privacy does).
    seed: fixes the initial weights only (they are public: data-independent), so trials can
        start from the same model; None draws them fresh. The Poisson sampling, the
        microbatch assignment and the Gaussian noise never come from this seed: every run
        draws them from the operating system's secret generator, so no two runs share them
        and no file lets anyone recompute them.
    debug_fixed_noise: debugging only. True derives sampling, microbatches and noise from
        `seed` too, so a run repeats bit for bit; its noise is then public and its ε void
        (shown everywhere as "void: noise is public").
    """

    l2_norm_clip: float = 1.0
    noise_multiplier: float = 1.1
    num_microbatches: int = 256
    learning_rate: float = 0.1
    batch_size: int = 256
    epochs: float = 1.0
    optimizer: str = "sgd"
    momentum: float = 0.9
    sampling: str = "poisson"
    seed: int | None = 0
    debug_fixed_noise: bool = False

    def __post_init__(self) -> None:
        _require(
            _is_number(self.l2_norm_clip) and self.l2_norm_clip > 0,
            f"l2_norm_clip (C) must be a number > 0, got {short_repr(self.l2_norm_clip)}",
        )
        _require(
            _is_number(self.noise_multiplier) and self.noise_multiplier >= 0,
            f"noise_multiplier (sigma) must be a number >= 0, got {short_repr(self.noise_multiplier)}",
        )
        _require(
            _is_int(self.batch_size) and 1 <= self.batch_size <= MAX_BATCH_SIZE,
            f"batch_size must be an integer between 1 and {MAX_BATCH_SIZE:,} (dptune's limit), "
            f"got {short_repr(self.batch_size)}",
        )
        _require(
            _is_int(self.num_microbatches) and 1 <= self.num_microbatches <= self.batch_size,
            f"num_microbatches must be an integer between 1 and batch_size ({self.batch_size}), "
            f"got {short_repr(self.num_microbatches)}",
        )
        _require(
            _is_number(self.learning_rate) and self.learning_rate > 0,
            f"learning_rate must be a number > 0, got {short_repr(self.learning_rate)}",
        )
        _require(
            _is_number(self.epochs) and 0 < self.epochs <= MAX_EPOCHS,
            f"epochs must be a number > 0 and at most {MAX_EPOCHS:,} (dptune's limit), got {short_repr(self.epochs)}",
        )
        _require(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {short_repr(self.optimizer)}")
        _require(
            _is_number(self.momentum) and 0 <= self.momentum < 1,
            f"momentum must be in [0, 1), got {short_repr(self.momentum)}",
        )
        _require(self.sampling in SAMPLINGS, f"sampling must be one of {SAMPLINGS}, got {short_repr(self.sampling)}")
        if self.sampling == "shuffle":
            _require(
                self.batch_size % self.num_microbatches == 0,
                f"with sampling 'shuffle', num_microbatches ({self.num_microbatches}) must divide "
                f"batch_size ({self.batch_size}), as in TF Privacy",
            )
        _require(
            self.seed is None or (_is_int(self.seed) and self.seed >= 0),
            f"seed must be an integer >= 0 or null (fresh initial weights), got {short_repr(self.seed)}",
        )
        _require(
            isinstance(self.debug_fixed_noise, bool),
            f"debug_fixed_noise must be true or false, got {short_repr(self.debug_fixed_noise)}",
        )
        _require(
            not self.debug_fixed_noise or self.seed is not None,
            "debug_fixed_noise needs an integer seed to derive the noise from",
        )

    @property
    def per_example(self) -> bool:
        """True when every example is its own microbatch (sensitivity C, sigma charged)."""
        return self.num_microbatches == self.batch_size

    @property
    def noise_is_secret(self) -> bool:
        """False only in the debug mode whose noise anyone with the seed can recompute (ε void)."""
        return not self.debug_fixed_noise

    @property
    def effective_noise(self) -> float:
        """Std of the noise on the averaged gradient, sigma*C/m (what utility follows)."""
        return self.noise_multiplier * self.l2_norm_clip / self.num_microbatches

    def replace(self, **changes: Any) -> DPSGDConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DPSGDConfig:
        return _from_dict(cls, values, "training")


def _from_dict(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build a spec from a plain mapping, naming unknown keys instead of ignoring them."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key)[:60] for key in set(values) - known)
    if unknown:
        more = f" and {len(unknown) - 10:,} more" if len(unknown) > 10 else ""
        raise ConfigError(f"unknown key(s) in {where}: {', '.join(unknown[:10])}{more}; allowed: {', '.join(sorted(known))}")
    return cls(**values)
