"""The search YAML's `fairness_limit`: a bound on one group-fairness measurement that every
trial must meet to be chosen (Bagdasaryan, Poursaeed & Shmatikov 2019: DP-SGD's accuracy loss
falls hardest on small groups, so a search that maximizes accuracy alone may pick the trial
that is worst for them).

    fairness_limit:
      metric: equalized_odds_difference   # one of FAIRNESS_METRICS
      limit: 0.1                          # a gap: at most this; worst_group_accuracy: at least

The measurement is the trial's on the validation rows and the dataset's sensitive attribute
(dptune.evaluation.fairness); a trial over the limit is kept and marked, never chosen as the
best, and told to Optuna's sampler as infeasible (a constraint > 0). Validation rows are not
protected by ε: the limit is a choice made on them, like the choice of the best trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dptune.spec.yaml_fields import check_keys, number, string

GAPS = ("demographic_parity_difference", "equal_opportunity_difference", "equalized_odds_difference",
        "accuracy_difference")
"""Measurements that must stay at most the limit (differences between groups, in [0, 1])."""
FLOORS = ("worst_group_accuracy",)
"""Measurements that must stay at least the limit (in [0, 1])."""
FAIRNESS_METRICS = GAPS + FLOORS


@dataclass(frozen=True)
class FairnessLimit:
    """metric: one of FAIRNESS_METRICS; limit: in [0, 1] (at most for a gap, at least for a floor)."""

    metric: str
    limit: float

    def __post_init__(self):
        string(self.metric, "fairness_limit.metric", choices=FAIRNESS_METRICS)
        object.__setattr__(self, "limit", number(self.limit, "fairness_limit.limit", low=0, high=1))

    @classmethod
    def from_dict(cls, values: Any) -> FairnessLimit | None:
        """The limit of a YAML mapping (None when absent)."""
        if values is None:
            return None
        check_keys(values, "fairness_limit", required=("metric", "limit"))
        return cls(metric=values["metric"], limit=values["limit"])

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "limit": self.limit}

    def violation(self, fairness: dict[str, Any] | None) -> float | None:
        """How far a trial's fairness report (FairnessReport.to_dict()) is over the limit: > 0
        over it, <= 0 within. None when the report has no value for the metric (no groups)."""
        value = (fairness or {}).get(self.metric)
        if value is None:
            return None
        return float(value) - self.limit if self.metric in GAPS else self.limit - float(value)

    def describe(self) -> str:
        return f"{self.metric} {'<=' if self.metric in GAPS else '>='} {self.limit:g}"
