"""Fairness of a classifier's predictions on the validation rows, per class and per sensitive group.

Definitions (Fairlearn's; ../shared/REFERENCES.md, "Group fairness"): for a positive class c,
the selection rate of group g is P(ŷ = c | g), its true-positive rate P(ŷ = c | y = c, g) and
its false-positive rate P(ŷ = c | y ≠ c, g). Demographic parity difference = max − min over
groups of the selection rate; equal opportunity difference = max − min of the TPR; equalized
odds difference = the larger of the TPR and FPR differences; accuracy difference = max − min
of the accuracy; worst-group accuracy = min of the accuracy. Two classes: c = class 1. More
classes: one-vs-rest for every class; a group's rate is the mean over classes (macro) and each
gap is the largest over classes (the worst class), with the per-class gaps kept beside it.

Every number comes from one Fairlearn `MetricFrame` (accuracy and the confusion matrix, overall
and per group; per-class accuracy and each class's one-vs-rest rates follow from the matrices:
one frame instead of three per class, which kept the metrics within a trial's time budget) and is shown with the group's size
(rows, and positives / negatives behind each rate). A rate whose denominator is empty in a group
is undefined there (None; Fairlearn's own rate functions report 0) and that group is left out of that gap;
groups with fewer than `min_group_size` validation rows are flagged `small` (their estimates are
too noisy to compare) but kept in every gap and table.

Validation rows are not protected by ε: these numbers are for the data owner.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
from fairlearn.metrics import MetricFrame

__all__ = ["MIN_GROUP_SIZE", "ClassMetrics", "FairnessReport", "GroupMetrics", "fairness_report"]

MIN_GROUP_SIZE = 30
"""Groups (and classes) with fewer validation rows than this are flagged `small`."""


@dataclass(frozen=True)
class ClassMetrics:
    """Accuracy on the validation rows of one true class (its recall); size: rows of that class."""

    name: str
    size: int
    accuracy: float | None
    small: bool


@dataclass(frozen=True)
class GroupMetrics:
    """One sensitive group on the validation rows: size (rows), accuracy, selection rate, TPR
    and FPR (positive class 1 for two classes, else one-vs-rest means over classes; None where
    the group has no positives, respectively negatives), positives / negatives behind TPR / FPR
    (summed over classes for one-vs-rest), small: size < MIN_GROUP_SIZE."""

    group: str
    size: int
    accuracy: float
    selection_rate: float
    true_positive_rate: float | None
    false_positive_rate: float | None
    positives: int
    negatives: int
    small: bool


@dataclass(frozen=True)
class FairnessReport:
    """Per-class accuracy, and with a sensitive attribute the per-group table and the gaps
    (each in [0, 1], None without at least two groups where it is defined).

    rows: what was measured ("validation"); sensitive_name: the attribute (None: no groups);
    positive: "class <name>" for two classes, "one-vs-rest" for more; per_class_gaps: with
    one-vs-rest, {class name: {gap name: value}}; worst_group: the group of the lowest accuracy."""

    rows: str
    per_class: tuple[ClassMetrics, ...]
    sensitive_name: str | None = None
    positive: str | None = None
    groups: tuple[GroupMetrics, ...] = ()
    demographic_parity_difference: float | None = None
    equal_opportunity_difference: float | None = None
    equalized_odds_difference: float | None = None
    accuracy_difference: float | None = None
    worst_group_accuracy: float | None = None
    worst_group: str | None = None
    per_class_gaps: dict | None = None
    min_group_size: int = MIN_GROUP_SIZE

    def to_dict(self) -> dict:
        return asdict(self)


def _accuracy(y_true, y_pred) -> float:
    """Share of rows predicted right (scikit-learn's accuracy_score without its input checks,
    which cost more than the rest of a trial's fairness metrics)."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def _confusion(y_true, y_pred, *, classes: int) -> np.ndarray:
    """Confusion matrix [true class, predicted class] of counts (scikit-learn's confusion_matrix
    with labels 0..classes−1, without its input checks)."""
    cells = np.asarray(y_true, int) * classes + np.asarray(y_pred, int)
    return np.bincount(cells, minlength=classes * classes).reshape(classes, classes)


def _spread(values) -> float | None:
    """max − min of the defined (finite) values; None with fewer than two."""
    defined = [float(v) for v in values if v is not None and np.isfinite(v)]
    return max(defined) - min(defined) if len(defined) >= 2 else None


def _one_vs_rest(confusion: np.ndarray, positive: int) -> dict:
    """Selection rate, TPR, FPR and their denominators of one group for one positive class, from
    the group's confusion matrix (rows: true class, columns: predicted class)."""
    size = int(confusion.sum())
    positives = int(confusion[positive].sum())
    negatives = size - positives
    hits, selected = int(confusion[positive, positive]), int(confusion[:, positive].sum())
    return {
        "selection_rate": selected / size,
        "tpr": hits / positives if positives else None,
        "fpr": (selected - hits) / negatives if negatives else None,
        "positives": positives, "negatives": negatives,
    }


def _gaps(rates: dict) -> dict:
    tpr = _spread(r["tpr"] for r in rates.values())
    fpr = _spread(r["fpr"] for r in rates.values())
    odds = None if tpr is None and fpr is None else max(v for v in (tpr, fpr) if v is not None)
    return {"demographic_parity_difference": _spread(r["selection_rate"] for r in rates.values()),
            "equal_opportunity_difference": tpr, "equalized_odds_difference": odds}


def _mean_defined(values) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def _worst(values) -> float | None:
    defined = [v for v in values if v is not None]
    return max(defined) if defined else None


def fairness_report(y_true, y_pred, class_names, sensitive=None, *, sensitive_name: str | None = None,
                    min_group_size: int = MIN_GROUP_SIZE) -> FairnessReport:
    """Fairness of predictions `y_pred` against labels `y_true` (class indices into
    `class_names`) on the validation rows; `sensitive`: one group label per row (None: only
    the per-class accuracy). See the module docstring for the definitions."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError("need one prediction per label, at least one row")
    names = tuple(str(c) for c in class_names)
    groups = None if sensitive is None else np.asarray(sensitive).astype(str)
    if groups is not None and groups.shape != y_true.shape:
        raise ValueError("need one sensitive value per row")
    metric_frame = MetricFrame(
        metrics={"accuracy": _accuracy, "confusion": partial(_confusion, classes=len(names))},
        # without a sensitive attribute, one group of all rows: only the overall matrix is read
        y_true=y_true, y_pred=y_pred, sensitive_features=np.zeros(len(y_true), int) if groups is None else groups,
    )
    overall = metric_frame.overall["confusion"]
    per_class = []
    for index, name in enumerate(names):
        size = int(overall[index].sum())
        accuracy = float(overall[index, index] / size) if size else None
        per_class.append(ClassMetrics(name=name, size=size, accuracy=accuracy, small=size < min_group_size))
    if groups is None:
        return FairnessReport(rows="validation", per_class=tuple(per_class), min_group_size=min_group_size)

    frame = metric_frame.by_group
    positives = [1] if len(names) == 2 else list(range(len(names)))
    rates = {str(group): [_one_vs_rest(frame.loc[group, "confusion"], c) for c in positives] for group in frame.index}
    gaps_per_class = {names[c]: _gaps({group: rows[i] for group, rows in rates.items()})
                      for i, c in enumerate(positives)}
    table = []
    for group in frame.index:
        rows = rates[str(group)]
        size = int(frame.loc[group, "confusion"].sum())
        table.append(GroupMetrics(
            group=str(group), size=size, accuracy=float(frame.loc[group, "accuracy"]),
            selection_rate=float(np.mean([r["selection_rate"] for r in rows])),
            true_positive_rate=_mean_defined(r["tpr"] for r in rows),
            false_positive_rate=_mean_defined(r["fpr"] for r in rows),
            positives=sum(r["positives"] for r in rows), negatives=sum(r["negatives"] for r in rows),
            small=size < min_group_size,
        ))
    worst = min(table, key=lambda g: g.accuracy)
    return FairnessReport(
        rows="validation", per_class=tuple(per_class), sensitive_name=sensitive_name,
        positive=f"class {names[1]}" if len(names) == 2 else "one-vs-rest", groups=tuple(table),
        demographic_parity_difference=_worst(g["demographic_parity_difference"] for g in gaps_per_class.values()),
        equal_opportunity_difference=_worst(g["equal_opportunity_difference"] for g in gaps_per_class.values()),
        equalized_odds_difference=_worst(g["equalized_odds_difference"] for g in gaps_per_class.values()),
        accuracy_difference=_spread(g.accuracy for g in table), worst_group_accuracy=worst.accuracy,
        worst_group=worst.group, per_class_gaps=gaps_per_class if len(names) > 2 else None,
        min_group_size=min_group_size,
    )
