"""The search YAML's `recipe`: the settings of the recipe mode (TF Privacy's tuning guide)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dptune.errors import ConfigError
from dptune.spec.dataset_ref import DatasetRef
from dptune.spec.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_TRIALS
from dptune.spec.yaml_fields import check_keys, number


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
        number(self.batch_size, "recipe.batch_size", low=1, high=MAX_BATCH_SIZE, integer=True)
        number(self.epochs, "recipe.epochs", low=1, high=MAX_EPOCHS, integer=True)
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
        number(self.baseline_trials, "recipe.baseline_trials", low=1, high=MAX_TRIALS, integer=True)
        number(self.verify_trials, "recipe.verify_trials", low=1, high=MAX_TRIALS, integer=True)

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
