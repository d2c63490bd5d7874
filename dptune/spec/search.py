"""The search YAML (`dptune tune --config search.yaml`): what to tune, how, and where.

Example (every key but mode, dataset, model and target_epsilon has a default)::

    mode: budgeted                 # recipe | budgeted | pareto
    dataset: {builtin: digits}     # or {fingerprint: <sha256>, workspace: dptune-data}
    model: {kind: mlp, hidden_units: [64]}
    target_epsilon: 3.0
    delta: null                    # default 1/N^1.1
    n_trials: 20                   # or {distribution: poisson, mean: 20}
                                   # or {distribution: truncated_negative_binomial, mean: 20, shape: 1}
    epsilon_includes_search_cost: false
    clip_selection_epsilon: 0      # ε of clip-norm histograms already released on this dataset (composed into every trial)
    max_trial_epsilon: null        # pareto only: no trial spends more (default 3 x target_epsilon; σ's range is raised)
    ranges:                        # [low, high] (log scale), a single value fixes it
      l2_norm_clip: [0.1, 10]
      learning_rate: [0.01, 1.0]
      batch_size: [32, 256]
      epochs: [1, 10]
      num_microbatches: [8, 32, per_example]   # choices
      noise_multiplier: [0.5, 5]   # pareto and recipe only (budgeted calibrates sigma)
    fixed: {optimizer: sgd, momentum: 0.9, sampling: poisson, seed: 0}   # seed: initial weights only
    sampler: tpe                   # tpe | random | nsga2 | gp
    pruner: median                 # none | median | percentile | successive_halving | hyperband
    study_name: digits-budgeted
    storage: null                  # default sqlite:///<workspace>/studies.db; any Optuna URL
    workspace: dptune-data
    recipe: {batch_size: 64, epochs: 5, clip_quantile: 0.75, clip_epsilon: 0.1, tolerance: 0.05}

All values are validated here; every error names its key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dptune.errors import ConfigError
from dptune.spec.config import OPTIMIZERS, SAMPLINGS, DPSGDConfig, ModelSpec
from dptune.spec.dataset_ref import DatasetRef
from dptune.spec.yaml_fields import (
    boolean,
    check_keys,
    is_int,
    is_number,
    load_yaml_mapping,
    number,
    optional_number,
    optional_string,
    prefixed,
    string,
)
from dptune.workspace import DEFAULT_WORKSPACE

MODES = ("recipe", "budgeted", "pareto")
SAMPLERS = ("tpe", "random", "nsga2", "gp")
PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")
TRIAL_DISTRIBUTIONS = ("fixed", "poisson", "truncated_negative_binomial")
PER_EXAMPLE = "per_example"
FIXED_KEYS = ("optimizer", "momentum", "sampling", "seed")
STUDY_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
#: the default learning-rate range of each optimizer (fixed.optimizer): plain SGD up to 1,
#: SGD with momentum 0.9 a tenth of that (its steps are about 10x larger), Adam 1e-4..1e-2
DEFAULT_LEARNING_RATES: dict[str, tuple[float, float]] = {
    "sgd": (0.01, 1.0),
    "momentum": (0.001, 0.1),
    "adam": (0.0001, 0.01),
}
#: pareto mode: the default cap on one trial's ε, as a multiple of target_epsilon
MAX_TRIAL_EPSILON_FACTOR = 3.0


# ---------------------------------------------------------------------------- trial count
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
            number(self.n, "n_trials", low=1, integer=True)
            if self.mean is not None or self.shape is not None:
                raise ConfigError("n_trials.mean and n_trials.shape are only used with a random number of trials")
        else:
            number(self.mean, "n_trials.mean", low=1)
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
            return cls(n=number(value, "n_trials", low=1, integer=True))
        if not isinstance(value, dict):
            raise ConfigError(f"n_trials must be a positive integer or a mapping with `distribution`, got {value!r}")
        check_keys(value, "n_trials", required=("distribution",), optional=("n", "mean", "shape"))
        distribution = string(value["distribution"], "n_trials.distribution", choices=TRIAL_DISTRIBUTIONS)
        if distribution == "fixed":
            return cls(n=number(value.get("n"), "n_trials.n", low=1, integer=True))
        return cls(
            distribution=distribution,
            n=None if value.get("n") is None else number(value["n"], "n_trials.n"),
            mean=number(value.get("mean"), "n_trials.mean", low=1),
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


# ---------------------------------------------------------------------------- ranges
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
            object.__setattr__(self, key, _pair(value, f"ranges.{key}", integer=key in ("batch_size", "epochs")))
        choices = self.num_microbatches
        if is_int(choices) or isinstance(choices, str):
            choices = (choices,)
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ConfigError(f"ranges.num_microbatches must be a list of choices, got {choices!r}")
        for choice in choices:
            if not (choice == PER_EXAMPLE or (is_int(choice) and choice >= 1)):
                raise ConfigError(
                    f"ranges.num_microbatches choices must be integers >= 1 or {PER_EXAMPLE!r}, got {choice!r}"
                )
        if len(set(choices)) != len(choices):
            raise ConfigError(f"ranges.num_microbatches has repeated choices: {list(choices)}")
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


def _pair(value: Any, key: str, *, integer: bool) -> tuple:
    if is_number(value):
        value = [value, value]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{key} must be [low, high] (or one value to fix it), got {value!r}")
    low = number(value[0], f"{key}[0] (low)", low=0, low_open=True, integer=integer)
    high = number(value[1], f"{key}[1] (high)", low=0, low_open=True, integer=integer)
    if low > high:
        raise ConfigError(f"{key} must be [low, high] with low <= high, got {list(value)}")
    return (low, high)


def default_ranges(mode: str, optimizer: Any = "sgd") -> SearchRanges:
    """The ranges of a spec that gives none (or fills the keys it leaves out): the mode's σ
    range and the optimizer's learning rates (DEFAULT_LEARNING_RATES; unknown: SGD's)."""
    learning_rate = DEFAULT_LEARNING_RATES.get(optimizer if isinstance(optimizer, str) else "sgd",
                                               DEFAULT_LEARNING_RATES["sgd"])
    if mode == "pareto":
        return SearchRanges(noise_multiplier=(0.5, 5.0), learning_rate=learning_rate)
    if mode == "recipe":
        # m = 1: the effective noise is sigma*C, so small sigmas (TF Privacy's guide: 0.01 or less)
        return SearchRanges(noise_multiplier=(0.001, 1.0), num_microbatches=(1,), learning_rate=learning_rate)
    return SearchRanges(learning_rate=learning_rate)


# ---------------------------------------------------------------------------- pruner
@dataclass(frozen=True)
class PrunerSpec:
    """Optuna pruner on per-epoch validation accuracy.

    n_startup_trials: trials that finish before any pruning; n_warmup_steps: epochs a trial
    always runs; percentile: for kind "percentile" (prune below this percentile).
    """

    kind: str = "median"
    n_startup_trials: int = 2
    n_warmup_steps: int = 1
    percentile: float = 25.0

    def __post_init__(self) -> None:
        string(self.kind, "pruner.kind", choices=PRUNERS)
        number(self.n_startup_trials, "pruner.n_startup_trials", low=0, integer=True)
        number(self.n_warmup_steps, "pruner.n_warmup_steps", low=0, integer=True)
        number(self.percentile, "pruner.percentile", low=0, high=100, low_open=True, high_open=True)

    def build(self):
        import optuna

        if self.kind == "none":
            return optuna.pruners.NopPruner()
        if self.kind == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=self.n_startup_trials, n_warmup_steps=self.n_warmup_steps)
        if self.kind == "percentile":
            return optuna.pruners.PercentilePruner(
                self.percentile, n_startup_trials=self.n_startup_trials, n_warmup_steps=self.n_warmup_steps
            )
        if self.kind == "successive_halving":
            return optuna.pruners.SuccessiveHalvingPruner()
        return optuna.pruners.HyperbandPruner()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_value(cls, value: Any) -> PrunerSpec:
        if isinstance(value, str) or value is None:
            return cls(kind="none" if value is None else value)
        check_keys(value, "pruner", required=("kind",), optional=("n_startup_trials", "n_warmup_steps", "percentile"))
        return cls(**value)


# ---------------------------------------------------------------------------- recipe
@dataclass(frozen=True)
class RecipeSpec:
    """The recipe mode (TF Privacy's guide, automated; DESIGN.md "The tuning recipe").

    batch_size, epochs: the B and epochs at which sigma and m are scaled to the target ε.
    clip_norm: a fixed C (skips the gradient-norm profile) or None to set C to the
        `clip_quantile` of the per-example gradient norms of the initial model.
    clip_epsilon: the ε spent on that quantile (a Laplace-noised histogram over log-spaced
        bins; pure ε-DP), composed into every trial's total. 0 is allowed only with
        clip_dataset, a public or proxy dataset used instead of the training data (no cost).
    tolerance: how much validation accuracy (absolute, 0.05 = 5 points) the m = 1 noise
        search may lose against the non-private baseline.
    baseline_trials: non-private (sigma = 0, m = 1) runs; the baseline is their best.
    verify_trials: full runs of the scaled configuration (seeds seed, seed+1, ...).
    """

    batch_size: int = 64
    epochs: int = 5
    clip_norm: float | None = None
    clip_quantile: float = 0.75
    clip_epsilon: float = 0.1
    clip_dataset: DatasetRef | None = None
    tolerance: float = 0.05
    baseline_trials: int = 1
    verify_trials: int = 2

    def __post_init__(self) -> None:
        number(self.batch_size, "recipe.batch_size", low=1, integer=True)
        number(self.epochs, "recipe.epochs", low=1, integer=True)
        if self.clip_norm is not None:
            number(self.clip_norm, "recipe.clip_norm", low=0, low_open=True)
        number(self.clip_quantile, "recipe.clip_quantile", low=0, high=1, low_open=True, high_open=True)
        number(self.clip_epsilon, "recipe.clip_epsilon", low=0)
        if self.clip_epsilon == 0 and self.clip_dataset is None and self.clip_norm is None:
            raise ConfigError(
                "recipe.clip_epsilon must be > 0 when the clip norm is estimated on the training data; "
                "give recipe.clip_dataset (public/proxy data, no cost) or recipe.clip_norm to spend nothing"
            )
        number(self.tolerance, "recipe.tolerance", low=0, high=1)
        number(self.baseline_trials, "recipe.baseline_trials", low=1, integer=True)
        number(self.verify_trials, "recipe.verify_trials", low=1, integer=True)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["clip_dataset"] = None if self.clip_dataset is None else self.clip_dataset.to_dict()
        return out

    @classmethod
    def from_dict(cls, values: Any) -> RecipeSpec:
        names = [f.name for f in dataclasses.fields(cls)]
        check_keys(values, "recipe", optional=names)
        values = dict(values)
        if values.get("clip_dataset") is not None:
            values["clip_dataset"] = DatasetRef.from_dict(values["clip_dataset"], "recipe.clip_dataset")
        return cls(**values)


# ---------------------------------------------------------------------------- search spec
@dataclass(frozen=True)
class SearchSpec:
    """Everything `dptune tune` and its workers need; stored in the study as `search_spec`."""

    mode: str
    dataset: DatasetRef
    model: ModelSpec
    target_epsilon: float
    delta: float | None = None
    n_trials: TrialCount = field(default_factory=TrialCount)
    epsilon_includes_search_cost: bool = False
    clip_selection_epsilon: float = 0.0
    max_trial_epsilon: float | None = None
    ranges: SearchRanges | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    sampler: str = "tpe"
    sampler_seed: int | None = None
    pruner: PrunerSpec | None = None
    recipe: RecipeSpec = field(default_factory=RecipeSpec)
    study_name: str | None = None
    storage: str | None = None
    workspace: str = str(DEFAULT_WORKSPACE)
    timeout_seconds: float | None = None
    heartbeat_seconds: int = 10
    workers: int = 1

    def __post_init__(self) -> None:
        string(self.mode, "mode", choices=MODES)
        number(self.target_epsilon, "target_epsilon", low=0, low_open=True)
        number(self.clip_selection_epsilon, "clip_selection_epsilon", low=0)
        if self.delta is not None:
            number(self.delta, "delta", low=0, high=1, low_open=True, high_open=True)
        if self.ranges is None:
            fixed = self.fixed if isinstance(self.fixed, dict) else {}
            object.__setattr__(self, "ranges", default_ranges(self.mode, fixed.get("optimizer", "sgd")))
        self._check_max_trial_epsilon()
        if self.pruner is None:
            # pareto: Optuna cannot prune multi-objective trials; recipe: the objective is
            # sigma, not accuracy, so a median pruner would stop exactly the trials it needs.
            object.__setattr__(self, "pruner", PrunerSpec(kind="median" if self.mode == "budgeted" else "none"))
        check_keys(self.fixed, "fixed", optional=FIXED_KEYS)
        self.base_config()  # validates `fixed`
        string(self.sampler, "sampler", choices=SAMPLERS)
        if self.sampler_seed is not None:
            number(self.sampler_seed, "sampler_seed", low=0, integer=True)
        if self.study_name is not None and not STUDY_NAME.match(self.study_name):
            raise ConfigError(f"study_name may hold letters, digits, '.', '_' and '-' (1-100), got {self.study_name!r}")
        optional_string(self.storage, "storage")
        string(self.workspace, "workspace")
        if self.timeout_seconds is not None:
            number(self.timeout_seconds, "timeout_seconds", low=0, low_open=True)
        number(self.heartbeat_seconds, "heartbeat_seconds", low=1, integer=True)
        number(self.workers, "workers", low=1, integer=True)
        self._check_mode()

    def _check_max_trial_epsilon(self) -> None:
        """max_trial_epsilon: pareto only (budgeted trials spend the target, the recipe scales
        σ to it), at least the target; None means the default (`trial_epsilon_cap`)."""
        if self.max_trial_epsilon is None:
            return
        if self.mode != "pareto":
            raise ConfigError(
                f"max_trial_epsilon: only used in pareto mode (in {self.mode} mode σ is set from "
                "target_epsilon); remove it"
            )
        cap = number(self.max_trial_epsilon, "max_trial_epsilon", low=0, low_open=True)
        if cap < self.target_epsilon:
            raise ConfigError(
                f"max_trial_epsilon ({cap:g}) must be at least target_epsilon ({self.target_epsilon:g}): "
                "it caps what one trial may spend, above the target the search looks for"
            )

    def _check_mode(self) -> None:
        ranges = self.ranges
        if self.mode == "budgeted" and ranges.noise_multiplier is not None:
            raise ConfigError(
                "ranges.noise_multiplier: not searched in budgeted mode (sigma is calibrated to target_epsilon); "
                "remove it, or use mode pareto"
            )
        if self.mode in ("pareto", "recipe") and ranges.noise_multiplier is None:
            raise ConfigError(f"ranges.noise_multiplier is required in {self.mode} mode")
        if self.mode == "pareto" and self.pruner.kind != "none":
            raise ConfigError("pruner: Optuna cannot prune multi-objective (pareto) trials; use pruner: none")
        if self.mode == "recipe":
            if self.n_trials.random:
                raise ConfigError("n_trials: the recipe mode runs a fixed number of m = 1 noise-search trials")
            if self.epsilon_includes_search_cost:
                raise ConfigError(
                    "epsilon_includes_search_cost: the recipe's baseline and m = 1 trials are not private; "
                    "its search cost cannot be inside the budget"
                )
        if self.n_trials.random:
            if self.sampler != "random":
                raise ConfigError(
                    "sampler: with a random number of trials the Papernot-Steinke bound needs trials whose "
                    "hyperparameters do not depend on earlier results; use sampler: random"
                )
            if self.pruner.kind != "none":
                raise ConfigError(
                    "pruner: pruning makes a trial depend on the others' results, which the Papernot-Steinke "
                    "bound for a random number of trials does not allow; use pruner: none"
                )
        if self.n_trials.random or self.epsilon_includes_search_cost:
            if self.mode != "budgeted":
                key = "n_trials" if self.n_trials.random else "epsilon_includes_search_cost"
                raise ConfigError(f"{key}: the search cost is only bounded for mode budgeted (every trial at one ε)")
            self._require_fixed_privacy_ranges()

    def _require_fixed_privacy_ranges(self) -> None:
        """Search-cost bounds need one privacy curve for every trial: in budgeted mode the
        charged sigma then depends only on B and epochs, so those two must be fixed."""
        for key in ("batch_size", "epochs"):
            low, high = getattr(self.ranges, key)
            if low != high:
                raise ConfigError(
                    f"ranges.{key}: to bound the privacy cost of the whole search every trial must have the "
                    f"same privacy cost, so fix {key} (one value, e.g. {key}: {high}); "
                    "C, learning rate and microbatches can still be searched"
                )

    # -------------------------------------------------------------- derived values
    def base_config(self) -> DPSGDConfig:
        """The DPSGDConfig defaults of every trial (searched keys are replaced per trial)."""
        values = dict(self.fixed)
        if "optimizer" in values:
            string(values["optimizer"], "fixed.optimizer", choices=OPTIMIZERS)
        if "sampling" in values:
            string(values["sampling"], "fixed.sampling", choices=SAMPLINGS)
        if "momentum" in values:
            number(values["momentum"], "fixed.momentum", low=0, high=1, high_open=True)
        if "seed" in values:
            number(values["seed"], "fixed.seed", low=0, integer=True)
        return DPSGDConfig(**values)

    @property
    def trial_epsilon_cap(self) -> float | None:
        """pareto: the most ε one trial may spend (training composed with the clip-norm
        releases): `max_trial_epsilon`, by default MAX_TRIAL_EPSILON_FACTOR × target_epsilon
        (a spec written before the key existed gets the default). None in the other modes."""
        if self.mode != "pareto":
            return None
        if self.max_trial_epsilon is not None:
            return float(self.max_trial_epsilon)
        return MAX_TRIAL_EPSILON_FACTOR * float(self.target_epsilon)

    @property
    def resolved_study_name(self) -> str:
        if self.study_name:
            return self.study_name
        data = self.dataset.name or self.dataset.builtin or self.dataset.fingerprint[:12]
        return f"{data}-{self.mode}-eps{self.target_epsilon:g}"

    @property
    def resolved_storage(self) -> str:
        """The Optuna storage URL (default: a SQLite file in the workspace)."""
        if self.storage:
            return self.storage
        return f"sqlite:///{(Path(self.workspace) / 'studies.db').resolve()}"

    def replace(self, **changes: Any) -> SearchSpec:
        return dataclasses.replace(self, **changes)

    # -------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "dataset": self.dataset.to_dict(),
            "model": self.model.to_dict(),
            "target_epsilon": self.target_epsilon,
            "delta": self.delta,
            "n_trials": self.n_trials.to_dict(),
            "epsilon_includes_search_cost": self.epsilon_includes_search_cost,
            "clip_selection_epsilon": self.clip_selection_epsilon,
            **({"max_trial_epsilon": self.max_trial_epsilon} if self.max_trial_epsilon is not None else {}),
            "ranges": self.ranges.to_dict(),
            "fixed": dict(self.fixed),
            "sampler": self.sampler,
            "sampler_seed": self.sampler_seed,
            "pruner": self.pruner.to_dict(),
            "recipe": self.recipe.to_dict(),
            "study_name": self.study_name,
            "storage": self.storage,
            "workspace": self.workspace,
            "timeout_seconds": self.timeout_seconds,
            "heartbeat_seconds": self.heartbeat_seconds,
            "workers": self.workers,
        }

    @classmethod
    def from_dict(cls, values: Any) -> SearchSpec:
        names = [f.name for f in dataclasses.fields(cls)]
        required = ("mode", "dataset", "model", "target_epsilon")
        check_keys(values, "", required=required, optional=[n for n in names if n not in required])
        mode = string(values["mode"], "mode", choices=MODES)
        model_values = values["model"]
        if isinstance(model_values, dict) and "hidden_units" in model_values:
            units = model_values["hidden_units"]
            if not isinstance(units, (list, tuple)):
                raise ConfigError(f"model.hidden_units must be a list of positive integers, got {units!r}")
        kwargs: dict[str, Any] = {
            "mode": mode,
            "dataset": DatasetRef.from_dict(values["dataset"]),
            "model": ModelSpec.from_dict(model_values),
            "target_epsilon": number(values["target_epsilon"], "target_epsilon", low=0, low_open=True),
        }
        if values.get("delta") is not None:
            kwargs["delta"] = number(values["delta"], "delta", low=0, high=1, low_open=True, high_open=True)
        if "n_trials" in values:
            kwargs["n_trials"] = TrialCount.from_value(values["n_trials"])
        if "epsilon_includes_search_cost" in values:
            kwargs["epsilon_includes_search_cost"] = boolean(
                values["epsilon_includes_search_cost"], "epsilon_includes_search_cost"
            )
        if values.get("clip_selection_epsilon") is not None:
            kwargs["clip_selection_epsilon"] = number(values["clip_selection_epsilon"], "clip_selection_epsilon", low=0)
        if values.get("max_trial_epsilon") is not None:
            kwargs["max_trial_epsilon"] = number(values["max_trial_epsilon"], "max_trial_epsilon", low=0, low_open=True)
        if values.get("ranges") is not None:
            fixed = values.get("fixed") if isinstance(values.get("fixed"), dict) else {}
            kwargs["ranges"] = SearchRanges.from_dict(values["ranges"],
                                                      defaults=default_ranges(mode, fixed.get("optimizer", "sgd")))
        if values.get("fixed") is not None:
            kwargs["fixed"] = dict(check_keys(values["fixed"], "fixed", optional=FIXED_KEYS))
        if "pruner" in values:
            kwargs["pruner"] = PrunerSpec.from_value(values["pruner"])
        if values.get("recipe") is not None:
            kwargs["recipe"] = RecipeSpec.from_dict(values["recipe"])
        for key in ("sampler", "study_name", "storage", "workspace"):
            if values.get(key) is not None:
                kwargs[key] = string(values[key], key)
        for key, integer in (("sampler_seed", True), ("timeout_seconds", False), ("heartbeat_seconds", True),
                             ("workers", True)):
            if values.get(key) is not None:
                kwargs[key] = number(values[key], key, low=0, integer=integer)
        return cls(**kwargs)


def load_search_spec(path: str | os.PathLike) -> SearchSpec:
    """Read and validate a search YAML; errors name the file and the key."""
    values = load_yaml_mapping(path, "search config")
    try:
        return SearchSpec.from_dict(values)
    except ConfigError as error:
        raise prefixed(error, str(path)) from None
    except TypeError as error:  # a dataclass given a wrong structure
        raise ConfigError(f"{path}: {error}") from None
