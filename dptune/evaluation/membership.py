"""Membership inference against a trained model: what an attacker learns about who was trained on.

Members are training rows, non-members are validation rows; the larger side is subsampled at
random so both have the same number of rows (at most `max_per_side`). Two attacks, as TF
Privacy's `privacy_tests` report them (../shared/REFERENCES.md, "Membership inference"):

- `loss_threshold`: "member when the loss is low" (score = −per-example loss, nats);
- `logistic_regression`: logistic regression on loss and logit features (loss, the
  true-class logit margin z_y − max_{j≠y} z_j, the largest softmax probability and the
  softmax entropy), trained and scored by stratified k-fold cross-validation, so each row's
  score comes from an attack that never saw it (scikit-learn's model with C = 1, fitted by
  Newton's method here: its solvers took most of a short trial's time).

For each: ROC AUC, attacker advantage max over thresholds of |TPR − FPR|, TPR at FPR = 1 %
and 0.1 % (the largest TPR over thresholds whose FPR is at most that; None when there are
fewer than 1/FPR non-members, too few to estimate it), and the ε lower bound at 95 %
confidence that the rates of a threshold test imply (dptune.privacy.audit.best_threshold_epsilon:
threshold chosen on one half of the rows, Clopper–Pearson bounds on the other). That bound
treats rows as independent trials of membership in one training run, which a DP audit proper
does not assume (the one-run audit of dptune.privacy.one_run does it properly); read it as how
far the attack's rates are from chance, in ε units. Slices: by true class and by whether the
model's prediction is correct, with the rows on each side beside every number.

Validation rows are not protected by ε, and this reads both splits: for the data owner only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import expit
from sklearn.model_selection import StratifiedKFold

from dptune.privacy.audit import best_threshold_epsilon

__all__ = ["MAX_PER_SIDE", "MIN_SLICE_SIZE", "AttackMetrics", "MembershipReport", "SliceMetrics",
           "attack_features", "cross_validated_scores", "fit_logistic_regression", "membership_report",
           "roc_numbers"]

MAX_PER_SIDE = 5000
"""At most this many members and as many non-members are attacked (a random subsample)."""
MIN_SLICE_SIZE = 10
"""A slice needs this many rows on each side for its numbers (else they are None)."""
CV_FOLDS = 5
LOW_FPRS = (0.01, 0.001)


@dataclass(frozen=True)
class AttackMetrics:
    """One attack on the balanced rows: auc (ROC AUC, 0.5 = chance), advantage (max |TPR − FPR|),
    tpr_at_fpr_1pct / tpr_at_fpr_0_1pct (None when non-members < 1/FPR), epsilon_lower_bound
    (nats, 95 %; see the module docstring for what it assumes), members / non_members: rows."""

    attack: str
    auc: float
    advantage: float
    tpr_at_fpr_1pct: float | None
    tpr_at_fpr_0_1pct: float | None
    epsilon_lower_bound: float
    members: int
    non_members: int


@dataclass(frozen=True)
class SliceMetrics:
    """Both attacks' AUC and advantage on one slice of the balanced rows (`by` = "class" or
    "correct", `value` = the class name or "true"/"false"); None below MIN_SLICE_SIZE a side."""

    by: str
    value: str
    members: int
    non_members: int
    loss_threshold_auc: float | None
    loss_threshold_advantage: float | None
    logistic_regression_auc: float | None
    logistic_regression_advantage: float | None


@dataclass(frozen=True)
class MembershipReport:
    """Membership inference on one trained model (members: training rows; non-members:
    validation rows, not protected by ε), `per_side` rows of each after balancing."""

    members_source: str
    non_members_source: str
    per_side: int
    attacks: tuple[AttackMetrics, ...]
    slices: tuple[SliceMetrics, ...]

    def attack(self, name: str) -> AttackMetrics:
        return next(a for a in self.attacks if a.attack == name)

    def to_dict(self) -> dict:
        return asdict(self)


def attack_features(losses, logits, labels) -> np.ndarray:
    """Rows of (loss, true-class logit margin, largest softmax probability, softmax entropy)."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, int)
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    others = logits.copy()
    others[rows, labels] = -np.inf
    margin = logits[rows, labels] - others.max(axis=1)
    entropy = -np.sum(probabilities * np.log(np.maximum(probabilities, 1e-30)), axis=1)
    return np.column_stack([np.asarray(losses, np.float64), margin, probabilities.max(axis=1), entropy])


def fit_logistic_regression(features: np.ndarray, targets: np.ndarray, *, penalty: float = 1.0,
                            iterations: int = 50) -> np.ndarray:
    """Weights (intercept last) of logistic regression with the L2 penalty ½·penalty·‖w‖² on the
    weights but not the intercept (scikit-learn's LogisticRegression(C=1/penalty)), by Newton's
    method: exact to ~1e-10 in a few steps for the attack's 4 features, ~100x faster than
    scikit-learn's solvers on the few hundred rows of a trial."""
    design = np.column_stack([features, np.ones(len(features))])
    weights = np.zeros(design.shape[1])
    ridge = np.full(design.shape[1], penalty)
    ridge[-1] = 0.0
    for _ in range(iterations):
        probabilities = expit(design @ weights)
        gradient = design.T @ (probabilities - targets) + ridge * weights
        hessian = (design.T * (probabilities * (1.0 - probabilities))) @ design + np.diag(ridge + 1e-12)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return weights


def cross_validated_scores(features: np.ndarray, is_member: np.ndarray, *, seed: int) -> np.ndarray:
    """P(member) of every row from a logistic regression fitted on the other folds (stratified
    CV_FOLDS-fold; features standardized with the training folds' mean and deviation)."""
    scores = np.zeros(len(features))
    folds = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
    for fit_rows, score_rows in folds.split(features, is_member):
        mean, scale = features[fit_rows].mean(axis=0), features[fit_rows].std(axis=0) + 1e-12
        weights = fit_logistic_regression((features[fit_rows] - mean) / scale, is_member[fit_rows].astype(float))
        scores[score_rows] = expit(((features[score_rows] - mean) / scale) @ weights[:-1] + weights[-1])
    return scores


def roc_numbers(is_member: np.ndarray, scores: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """(ROC AUC, advantage max |TPR − FPR|, FPR, TPR) of "member when score ≥ t" over every
    threshold t (the ROC curve's corners, tied scores moving together; AUC by the trapezoid rule,
    as scikit-learn's roc_auc_score, without its input validation that cost more than the attack)."""
    order = np.argsort(-scores, kind="stable")
    ordered, members = scores[order], is_member[order]
    corners = np.r_[np.flatnonzero(np.diff(ordered)), len(ordered) - 1]
    tpr = np.r_[0.0, np.cumsum(members)[corners] / max(int(members.sum()), 1)]
    fpr = np.r_[0.0, np.cumsum(~members)[corners] / max(int((~members).sum()), 1)]
    return float(np.trapezoid(tpr, fpr)), float(np.max(np.abs(tpr - fpr))), fpr, tpr


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float, non_members: int) -> float | None:
    if non_members < 1.0 / target:
        return None
    return float(np.max(tpr[fpr <= target]))


def _attack_metrics(name: str, is_member: np.ndarray, scores: np.ndarray, rng: np.random.Generator,
                    delta: float) -> AttackMetrics:
    auc, advantage, fpr, tpr = roc_numbers(is_member, scores)
    non_members = int(np.sum(~is_member))
    members_scores, non_members_scores = rng.permutation(scores[is_member]), rng.permutation(scores[~is_member])
    return AttackMetrics(
        attack=name, auc=auc, advantage=advantage,
        tpr_at_fpr_1pct=_tpr_at(fpr, tpr, LOW_FPRS[0], non_members),
        tpr_at_fpr_0_1pct=_tpr_at(fpr, tpr, LOW_FPRS[1], non_members),
        epsilon_lower_bound=best_threshold_epsilon(members_scores, non_members_scores, delta=delta).epsilon,
        members=int(np.sum(is_member)), non_members=non_members,
    )


def _slice(by: str, value: str, chosen: np.ndarray, is_member: np.ndarray, loss_scores: np.ndarray,
           trained_scores: np.ndarray) -> SliceMetrics:
    members, non_members = int(np.sum(chosen & is_member)), int(np.sum(chosen & ~is_member))
    numbers: list[float | None] = [None] * 4
    if min(members, non_members) >= MIN_SLICE_SIZE:
        loss_auc, loss_advantage, _, _ = roc_numbers(is_member[chosen], loss_scores[chosen])
        trained_auc, trained_advantage, _, _ = roc_numbers(is_member[chosen], trained_scores[chosen])
        numbers = [loss_auc, loss_advantage, trained_auc, trained_advantage]
    return SliceMetrics(by, value, members, non_members, *numbers)


def membership_report(train: tuple, val: tuple, class_names, *, delta: float, rng: np.random.Generator,
                      max_per_side: int = MAX_PER_SIDE) -> MembershipReport:
    """Both attacks and their slices. train, val: (per-example losses (nats), logits [n, classes],
    labels) of the training rows (members) and validation rows (non-members); delta: the δ of
    the ε lower bounds (the run's); rng: draws the balancing subsample and the halves of the
    threshold split (not secret: this is an evaluation, not part of the mechanism)."""
    per_side = min(len(train[2]), len(val[2]), max_per_side)
    if per_side < CV_FOLDS:
        raise ValueError(f"need at least {CV_FOLDS} training and validation rows, got {len(train[2])} and {len(val[2])}")
    chosen_train = rng.choice(len(train[2]), per_side, replace=False)
    chosen_val = rng.choice(len(val[2]), per_side, replace=False)
    losses = np.concatenate([np.asarray(train[0])[chosen_train], np.asarray(val[0])[chosen_val]]).astype(np.float64)
    logits = np.concatenate([np.asarray(train[1])[chosen_train], np.asarray(val[1])[chosen_val]])
    labels = np.concatenate([np.asarray(train[2])[chosen_train], np.asarray(val[2])[chosen_val]]).astype(int)
    is_member = np.repeat([True, False], per_side)

    loss_scores = -losses
    trained_scores = cross_validated_scores(attack_features(losses, logits, labels), is_member,
                                            seed=int(rng.integers(2**31)))

    attacks = (
        _attack_metrics("loss_threshold", is_member, loss_scores, rng, delta),
        _attack_metrics("logistic_regression", is_member, trained_scores, rng, delta),
    )
    correct = np.argmax(logits, axis=1) == labels
    names = tuple(str(c) for c in class_names)
    slices = [_slice("class", names[c], labels == c, is_member, loss_scores, trained_scores)
              for c in range(len(names))]
    slices += [_slice("correct", str(flag).lower(), correct == flag, is_member, loss_scores, trained_scores)
               for flag in (True, False)]
    return MembershipReport(
        members_source="training rows", non_members_source="validation rows (not protected by ε)",
        per_side=per_side, attacks=attacks, slices=tuple(slices),
    )
