"""Fairness metrics (Fairlearn's MetricFrame underneath) against a direct numpy computation."""

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equal_opportunity_difference, equalized_odds_difference

from dptune.evaluation.fairness import fairness_report

# 12 rows, two groups: "a" (8 rows), "b" (4 rows, flagged small at min_group_size=5)
Y_TRUE = np.array([1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 1])
Y_PRED = np.array([1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1])
GROUPS = np.array(["a"] * 8 + ["b"] * 4)


def _direct(group: str):
    rows = GROUPS == group
    truth, predicted = Y_TRUE[rows], Y_PRED[rows]
    return {
        "accuracy": np.mean(truth == predicted),
        "selection_rate": np.mean(predicted == 1),
        "tpr": np.mean(predicted[truth == 1] == 1),
        "fpr": np.mean(predicted[truth == 0] == 1),
    }


def test_binary_groups_and_gaps_match_numpy():
    report = fairness_report(Y_TRUE, Y_PRED, ("no", "yes"), GROUPS, sensitive_name="g", min_group_size=5)
    direct = {g: _direct(g) for g in ("a", "b")}
    by_name = {g.group: g for g in report.groups}
    for name, values in direct.items():
        group = by_name[name]
        assert group.accuracy == pytest.approx(values["accuracy"])
        assert group.selection_rate == pytest.approx(values["selection_rate"])
        assert group.true_positive_rate == pytest.approx(values["tpr"])
        assert group.false_positive_rate == pytest.approx(values["fpr"])
    assert (by_name["a"].size, by_name["b"].size) == (8, 4)
    assert (by_name["a"].positives, by_name["a"].negatives) == (4, 4)
    assert not by_name["a"].small and by_name["b"].small
    spread = {k: abs(direct["a"][k] - direct["b"][k]) for k in direct["a"]}
    assert report.demographic_parity_difference == pytest.approx(spread["selection_rate"])
    assert report.equal_opportunity_difference == pytest.approx(spread["tpr"])
    assert report.equalized_odds_difference == pytest.approx(max(spread["tpr"], spread["fpr"]))
    assert report.accuracy_difference == pytest.approx(spread["accuracy"])
    assert report.worst_group_accuracy == pytest.approx(min(direct["a"]["accuracy"], direct["b"]["accuracy"]))
    assert report.positive == "class yes" and report.rows == "validation"
    # every group has positives and negatives here, so Fairlearn's own gap functions agree
    assert report.demographic_parity_difference == pytest.approx(
        demographic_parity_difference(Y_TRUE, Y_PRED, sensitive_features=GROUPS))
    assert report.equal_opportunity_difference == pytest.approx(
        equal_opportunity_difference(Y_TRUE, Y_PRED, sensitive_features=GROUPS))
    assert report.equalized_odds_difference == pytest.approx(
        equalized_odds_difference(Y_TRUE, Y_PRED, sensitive_features=GROUPS))
    per_class = {c.name: c for c in report.per_class}
    assert per_class["yes"].accuracy == pytest.approx(np.mean(Y_PRED[Y_TRUE == 1] == 1))
    assert per_class["no"].size == int(np.sum(Y_TRUE == 0))


def test_multiclass_is_one_vs_rest_with_the_worst_class_gap():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 300)
    y_pred = np.where(rng.random(300) < 0.7, y_true, rng.integers(0, 3, 300))
    groups = np.where(rng.random(300) < 0.2, "minority", "majority")
    report = fairness_report(y_true, y_pred, ("x", "y", "z"), groups)
    parity = []
    for c in range(3):
        rates = [np.mean(y_pred[groups == g] == c) for g in ("majority", "minority")]
        parity.append(abs(rates[0] - rates[1]))
        assert report.per_class_gaps[("x", "y", "z")[c]]["demographic_parity_difference"] == pytest.approx(parity[-1])
    assert report.demographic_parity_difference == pytest.approx(max(parity))
    minority = next(g for g in report.groups if g.group == "minority")
    tprs = [np.mean(y_pred[(groups == "minority") & (y_true == c)] == c) for c in range(3)]
    assert minority.true_positive_rate == pytest.approx(np.mean(tprs))
    assert report.positive == "one-vs-rest"


def test_a_rate_with_no_positives_is_undefined_not_zero():
    report = fairness_report([0, 0, 1, 1, 0], [0, 1, 1, 0, 0], ("n", "p"), ["a", "a", "a", "a", "b"])
    b = next(g for g in report.groups if g.group == "b")
    assert b.true_positive_rate is None and b.positives == 0 and b.small
    assert report.equal_opportunity_difference is None  # only group a has positives


def test_without_a_sensitive_attribute_only_classes_are_reported():
    report = fairness_report([0, 1, 1], [0, 1, 0], ("n", "p"))
    assert report.groups == () and report.worst_group_accuracy is None
    assert [c.accuracy for c in report.per_class] == [1.0, 0.5]
