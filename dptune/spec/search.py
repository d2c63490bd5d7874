"""The search YAML (`dptune tune --config search.yaml`): what to tune, how, and where.

Example (every key but mode, dataset, model and target_epsilon has a default)::

    mode: budgeted                 # recipe | budgeted | pareto
    dataset: {builtin: digits}     # or {fingerprint: <sha256>, workspace: dptune-data}
                                   # or {file: patients.csv, options: {label: outcome, sensitive: sex, drop: [id]}}
    model: {kind: mlp, hidden_units: [64]}
    target_epsilon: 3.0
    delta: null                    # default 1/N^1.1
    n_trials: 20                   # or {distribution: poisson, mean: 20}
                                   # or {distribution: truncated_negative_binomial, mean: 20, shape: 1}
    epsilon_includes_search_cost: false
    clip_selection_epsilon: 0      # ε of clip-norm histograms already released on this dataset (composed into every trial)
    max_trial_epsilon: null        # pareto only: no trial spends more (default 3 x target_epsilon; σ's range is raised)
    fairness_limit: null           # e.g. {metric: equalized_odds_difference, limit: 0.1} (dptune.spec.fairness)
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

All values are validated here and in the modules of the sections (`trial_count`, `ranges`,
`pruner`, `recipe`; `modes`: what each mode requires); every error names its key.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dptune.errors import ConfigError
from dptune.spec.config import OPTIMIZERS, SAMPLINGS, DPSGDConfig, ModelSpec
from dptune.spec.dataset_ref import DatasetRef
from dptune.spec.fairness import FairnessLimit
from dptune.spec.limits import MAX_WORKERS, short_repr
from dptune.spec.modes import MODES, ModeRules, mode_rules
from dptune.spec.pruner import PrunerSpec
from dptune.spec.ranges import SearchRanges, default_ranges
from dptune.spec.recipe import RecipeSpec
from dptune.spec.trial_count import TrialCount
from dptune.spec.yaml_fields import (
    boolean,
    check_keys,
    load_yaml_mapping,
    number,
    optional_string,
    prefixed,
    string,
)
from dptune.workspace import DEFAULT_WORKSPACE, Workspace

SAMPLERS = ("tpe", "random", "nsga2", "gp")
FIXED_KEYS = ("optimizer", "momentum", "sampling", "seed")
STUDY_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


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
    fairness_limit: FairnessLimit | None = None
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
        rules = self.rules
        number(self.target_epsilon, "target_epsilon", low=0, low_open=True)
        number(self.clip_selection_epsilon, "clip_selection_epsilon", low=0)
        if self.delta is not None:
            number(self.delta, "delta", low=0, high=1, low_open=True, high_open=True)
        if self.ranges is None:
            fixed = self.fixed if isinstance(self.fixed, dict) else {}
            object.__setattr__(self, "ranges", default_ranges(rules, fixed.get("optimizer", "sgd")))
        self._check_max_trial_epsilon()
        if self.fairness_limit is not None and rules.runs_recipe:
            raise ConfigError("fairness_limit: not used in recipe mode (its objective is σ, chosen against the "
                              "non-private baseline); use budgeted or pareto mode, or remove it")
        if self.pruner is None:
            # pareto: Optuna cannot prune multi-objective trials; recipe: the objective is
            # sigma, not accuracy, so a median pruner would stop exactly the trials it needs.
            object.__setattr__(self, "pruner", PrunerSpec(kind="median" if rules.prune_by_default else "none"))
        check_keys(self.fixed, "fixed", optional=FIXED_KEYS)
        self.base_config()  # validates `fixed`
        string(self.sampler, "sampler", choices=SAMPLERS)
        if self.sampler_seed is not None:
            number(self.sampler_seed, "sampler_seed", low=0, integer=True)
        if self.study_name is not None and not STUDY_NAME.match(self.study_name):
            raise ConfigError(f"study_name may hold letters, digits, '.', '_' and '-' (1-100), got {short_repr(self.study_name)}")
        optional_string(self.storage, "storage")
        string(self.workspace, "workspace")
        if self.timeout_seconds is not None:
            number(self.timeout_seconds, "timeout_seconds", low=0, low_open=True)
        number(self.heartbeat_seconds, "heartbeat_seconds", low=1, integer=True)
        number(self.workers, "workers", low=1, high=MAX_WORKERS, integer=True)
        self._check_mode()

    def _check_max_trial_epsilon(self) -> None:
        """max_trial_epsilon: only in a mode that caps a trial's ε (pareto; budgeted trials
        spend the target, the recipe scales σ to it), at least the target; None means the
        default (`trial_epsilon_cap`)."""
        if self.max_trial_epsilon is None:
            return
        if self.rules.trial_epsilon_factor is None:
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
        """The fields the mode's rules (dptune.spec.modes) require or forbid."""
        rules, ranges = self.rules, self.ranges
        if not rules.searches_noise and ranges.noise_multiplier is not None:
            raise ConfigError(
                f"ranges.noise_multiplier: not searched in {self.mode} mode (sigma is calibrated to "
                "target_epsilon); remove it, or use mode pareto"
            )
        if rules.searches_noise and ranges.noise_multiplier is None:
            raise ConfigError(f"ranges.noise_multiplier is required in {self.mode} mode")
        if not rules.prunes and self.pruner.kind != "none":
            raise ConfigError(f"pruner: Optuna cannot prune multi-objective ({self.mode}) trials; use pruner: none")
        if rules.runs_recipe:
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
            if not rules.bounds_search_cost:
                key = "n_trials" if self.n_trials.random else "epsilon_includes_search_cost"
                bounded = ", ".join(name for name, other in MODES.items() if other.bounds_search_cost)
                raise ConfigError(f"{key}: the search cost is only bounded for mode {bounded} (every trial at one ε)")
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
    def rules(self) -> ModeRules:
        """What the mode asks of this spec (dptune.spec.modes)."""
        return mode_rules(self.mode)

    @property
    def trial_epsilon_cap(self) -> float | None:
        """pareto: the most ε one trial may spend (training composed with the clip-norm
        releases): `max_trial_epsilon`, by default dptune.spec.modes.MAX_TRIAL_EPSILON_FACTOR ×
        target_epsilon (a spec written before the key existed gets the default). None in the
        other modes."""
        return self.rules.trial_epsilon_cap(self.target_epsilon, self.max_trial_epsilon)

    @property
    def resolved_study_name(self) -> str:
        if self.study_name:
            return self.study_name
        ref = self.dataset
        data = ref.name or ref.builtin or (Path(ref.file).stem if ref.file else None) or ref.fingerprint[:12]
        return f"{data}-{self.mode}-eps{self.target_epsilon:g}"

    @property
    def resolved_storage(self) -> str:
        """The Optuna storage URL (default: a SQLite file in the workspace)."""
        if self.storage:
            return self.storage
        return Workspace.at(self.workspace).storage_url

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
            **({"fairness_limit": self.fairness_limit.to_dict()} if self.fairness_limit is not None else {}),
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
        rules = mode_rules(mode)
        model_values = values["model"]
        if isinstance(model_values, dict) and "hidden_units" in model_values:
            units = model_values["hidden_units"]
            if not isinstance(units, (list, tuple)):
                raise ConfigError(f"model.hidden_units must be a list of positive integers, got {short_repr(units)}")
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
        if values.get("fairness_limit") is not None:
            kwargs["fairness_limit"] = FairnessLimit.from_dict(values["fairness_limit"])
        if values.get("ranges") is not None:
            fixed = values.get("fixed") if isinstance(values.get("fixed"), dict) else {}
            kwargs["ranges"] = SearchRanges.from_dict(values["ranges"],
                                                      defaults=default_ranges(rules, fixed.get("optimizer", "sgd")))
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
