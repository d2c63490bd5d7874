"""The search YAML's `pruner`: which Optuna pruner stops unpromising trials early."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dptune.spec.yaml_fields import check_keys, number, string

PRUNERS = ("none", "median", "percentile", "successive_halving", "hyperband")


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
