"""Empirical lower bounds on ε from membership tests: the statistics of a privacy audit.

A mechanism M is (ε, δ)-DP when, for neighbouring datasets D (with a target example) and
D′ (without it) and every set S of outputs, P[M(D) ∈ S] ≤ e^ε·P[M(D′) ∈ S] + δ, and the
same with D and D′ swapped. A membership test that answers "in" on S has true-positive rate
TPR = P[M(D) ∈ S] and false-positive rate FPR = P[M(D′) ∈ S], so every test implies

    ε ≥ log((TPR − δ) / FPR)             (S itself)
    ε ≥ log((1 − FPR − δ) / (1 − TPR))   (its complement, "out", with D and D′ swapped).

Both right-hand sides grow with TPR and shrink with FPR, so a lower confidence bound on TPR
and an upper one on FPR, each measured on independent trials (one run of the mechanism per
trial), turn a test into a lower bound on ε that holds with the stated confidence for any
ε the mechanism really satisfies: an audit whose bound exceeds a claimed ε refutes the
claim (Jagielski, Ullman & Oprea, "Auditing differentially private machine learning: how
private is private SGD?", NeurIPS 2020; Nasr, Song, Thakurta, Papernot & Carlini,
"Adversary instantiation: lower bounds for differentially private machine learning",
S&P 2021; Carlini, Chien, Nasr, Song, Terzis & Tramèr, "Membership inference attacks
from first principles", S&P 2022, which also asks for TPR at low FPR; see
../shared/REFERENCES.md, "Membership inference").

Pure numpy/scipy: the same functions serve a one-step canary audit of the DP-SGD engine and
membership-inference audits of trained models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["ThresholdAudit", "clopper_pearson_lower", "clopper_pearson_upper", "epsilon_lower_bound",
           "best_threshold_epsilon"]


def clopper_pearson_lower(successes, trials, level: float):
    """One-sided Clopper–Pearson lower bound on a binomial proportion, exact at `level`:
    P[bound ≤ p] ≥ level for every p. The (1 − level)-quantile of Beta(k, n − k + 1), 0 when k = 0.
    Accepts arrays (broadcast)."""
    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    safe = np.maximum(successes, 1.0)
    return np.where(successes > 0, stats.beta.ppf(1.0 - level, safe, trials - safe + 1.0), 0.0)


def clopper_pearson_upper(successes, trials, level: float):
    """One-sided Clopper–Pearson upper bound on a binomial proportion, exact at `level`:
    P[bound ≥ p] ≥ level for every p. The level-quantile of Beta(k + 1, n − k), 1 when k = n.
    Accepts arrays (broadcast)."""
    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    safe = np.minimum(successes, trials - 1.0)
    return np.where(successes < trials, stats.beta.ppf(level, safe + 1.0, trials - safe), 1.0)


def _epsilon_bounds(true_positives, positives, false_positives, negatives, delta: float, confidence: float):
    """Vectorized core of `epsilon_lower_bound`: (ε bound, TPR lower, FPR upper) arrays."""
    level = 1.0 - (1.0 - confidence) / 2.0  # Bonferroni over the two one-sided bounds
    tpr_low = clopper_pearson_lower(true_positives, positives, level)
    fpr_high = clopper_pearson_upper(false_positives, negatives, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        direct = np.log(np.maximum(tpr_low - delta, 0.0) / fpr_high)
        complement = np.log(np.maximum(1.0 - fpr_high - delta, 0.0) / (1.0 - tpr_low))
    return np.maximum(np.maximum(direct, complement), 0.0), tpr_low, fpr_high


def _check_counts(successes: int, trials: int, name: str) -> None:
    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"{name}: need 0 <= count <= trials and trials >= 1, got {successes} of {trials}")


def epsilon_lower_bound(true_positives: int, positives: int, false_positives: int, negatives: int, *,
                        delta: float, confidence: float = 0.95) -> float:
    """A lower bound on the ε of any (ε, δ)-DP guarantee the audited mechanism satisfies.

    true_positives of `positives` independent runs with the target present were called
    "in"; false_positives of `negatives` independent runs without it were called "in".
    TPR gets a Clopper–Pearson lower bound and FPR an upper bound, each one-sided at level
    1 − (1 − confidence)/2, so that both hold together with probability ≥ `confidence`
    (Bonferroni); then ε ≥ max(log((TPR_lo − δ)/FPR_hi), log((1 − FPR_hi − δ)/(1 − TPR_lo))).
    Both terms need only TPR_lo and FPR_hi (each grows with TPR and falls with FPR). Returns
    0 when the counts imply nothing (for instance TPR_lo ≤ FPR_hi); natural log (nats).
    The test's threshold must not be chosen on these same runs (see best_threshold_epsilon).
    """
    _check_counts(true_positives, positives, "true positives")
    _check_counts(false_positives, negatives, "false positives")
    if not 0.0 <= delta < 1.0 or not 0.0 < confidence < 1.0:
        raise ValueError(f"need 0 <= delta < 1 and 0 < confidence < 1, got delta={delta}, confidence={confidence}")
    epsilon, _, _ = _epsilon_bounds(true_positives, positives, false_positives, negatives, delta, confidence)
    return float(epsilon)


@dataclass(frozen=True)
class ThresholdAudit:
    """Result of a threshold membership test, measured on the evaluation half of the runs.

    epsilon: the lower bound on ε (nats) at the requested confidence; threshold: the score at
    or above which the test says "in" (chosen on the other half); tpr, fpr: the measured
    rates (point estimates) and the counts behind them.
    """

    epsilon: float
    threshold: float
    tpr: float
    fpr: float
    true_positives: int
    positives: int
    false_positives: int
    negatives: int


def _counts_at_or_above(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return len(sorted_scores) - np.searchsorted(sorted_scores, thresholds, side="left")


def best_threshold_epsilon(scores_in, scores_out, *, delta: float, confidence: float = 0.95) -> ThresholdAudit:
    """The ε lower bound of the best threshold test "in when score ≥ t", free of selection bias.

    scores_in: one score per independent run with the target present (larger = more
    evidence of membership); scores_out: the same for runs without it. Each list is split
    in halves by position (runs must be independent and identically distributed, so any
    fixed split is a random one): t is the candidate (one of the first halves' scores)
    whose `epsilon_lower_bound` on the first halves is largest, and the reported bound,
    rates and counts come from the second halves alone, so the confidence statement is
    exactly that of `epsilon_lower_bound`. Needs at least 2 scores of each kind.
    """
    scores_in, scores_out = np.asarray(scores_in, float), np.asarray(scores_out, float)
    if scores_in.ndim != 1 or scores_out.ndim != 1 or min(len(scores_in), len(scores_out)) < 2:
        raise ValueError("need two 1-D arrays with at least 2 scores each")
    if not (np.all(np.isfinite(scores_in)) and np.all(np.isfinite(scores_out))):
        raise ValueError("scores must be finite")
    half_in, half_out = len(scores_in) // 2, len(scores_out) // 2
    select_in, select_out = np.sort(scores_in[:half_in]), np.sort(scores_out[:half_out])
    candidates = np.unique(np.concatenate([select_in, select_out]))
    selection, _, _ = _epsilon_bounds(
        _counts_at_or_above(select_in, candidates), half_in,
        _counts_at_or_above(select_out, candidates), half_out, delta, confidence,
    )
    threshold = float(candidates[int(np.argmax(selection))])
    eval_in, eval_out = scores_in[half_in:], scores_out[half_out:]
    true_positives, false_positives = int(np.sum(eval_in >= threshold)), int(np.sum(eval_out >= threshold))
    return ThresholdAudit(
        epsilon=epsilon_lower_bound(true_positives, len(eval_in), false_positives, len(eval_out),
                                    delta=delta, confidence=confidence),
        threshold=threshold,
        tpr=true_positives / len(eval_in),
        fpr=false_positives / len(eval_out),
        true_positives=true_positives,
        positives=len(eval_in),
        false_positives=false_positives,
        negatives=len(eval_out),
    )
