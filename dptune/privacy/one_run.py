"""Auditing DP-SGD in one training run: the statistics of Steinke, Nasr & Jagielski (NeurIPS 2023).

m canaries are each included in the training data independently with probability ½; the
model is trained once; an auditor scores every canary (larger score = more evidence that it
was included), guesses "in" for the k₊ highest scores and "out" for the k₋ lowest and
abstains on the rest: r = k₊ + k₋ guesses, v of them correct. For an (ε, δ)-DP mechanism
the number of correct guesses is dominated by Binomial(r, q) with q = e^ε/(1 + e^ε) up to a
δ term (their Theorem 5.2 / Algorithm 2 in the appendix), so

    p(ε) = P[Binomial(r, q) ≥ v] + 2·m·δ·max_{1≤i≤v} P[v − i ≤ Binomial(r, q) < v] / i

is a valid p-value for "the mechanism is (ε, δ)-DP", and the largest ε with p(ε) < 1 −
confidence is a lower bound on ε at that confidence (../shared/REFERENCES.md, "Empirical
auditing in one run"). Natural logs (nats) throughout.

Choosing the guess counts after looking at the scores would break that confidence statement,
so `audit_scores` tries a fixed grid of guess counts and splits the confidence over them
(Bonferroni): the reported bound is the best of the grid and still holds at `confidence`.

Pure numpy/scipy; the engine trains the canaries (dptune.engine.one_run_audit).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

__all__ = ["GUESS_FRACTIONS", "OneRunAudit", "audit_scores", "one_run_epsilon_lower_bound", "one_run_p_value"]

GUESS_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Fractions of the m canaries guessed on (half "in" from the top, half "out" from the bottom),
fixed before any score is seen; `audit_scores` reports the best with a Bonferroni correction."""

_MAX_EPSILON = 50.0
_BISECTION_STEPS = 50


def _check(m: int, r: int, v: int, delta: float) -> None:
    if not (0 <= v <= r <= m and m >= 1):
        raise ValueError(f"need 0 <= correct <= guesses <= canaries and canaries >= 1, got m={m}, r={r}, v={v}")
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"delta must be in [0, 1], got {delta}")


def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """p-value of "the mechanism is (ε, δ)-DP" after v correct of r guesses on m canaries.

    Algorithm 2 of Steinke, Nasr & Jagielski (2023): P[Binomial(r, q) ≥ v] with
    q = e^ε/(1 + e^ε), plus 2·m·δ times the largest P[v − i ≤ Binomial(r, q) < v]/i. Capped at 1.
    """
    _check(m, r, v, delta)
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    q = 1.0 / (1.0 + np.exp(-epsilon))
    tail = float(stats.binom.sf(v - 1, r, q))
    if v == 0 or delta == 0.0:
        return min(tail, 1.0)
    below = np.cumsum(stats.binom.pmf(v - np.arange(1, v + 1), r, q))  # P[v − i ≤ B < v], i = 1..v
    alpha = float(np.max(below / np.arange(1, v + 1)))
    return min(tail + 2.0 * m * delta * alpha, 1.0)


def one_run_epsilon_lower_bound(m: int, r: int, v: int, *, delta: float, confidence: float = 0.95) -> float:
    """The largest ε whose p-value (`one_run_p_value`) stays below 1 − confidence: a lower bound
    on the ε of every (ε, δ) guarantee the audited run satisfies, at `confidence`. 0 when the
    guesses imply nothing (for instance no better than chance); bisection to ~1e-12 nats."""
    _check(m, r, v, delta)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 1.0 - confidence
    if r == 0 or one_run_p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    low, high = 0.0, 1.0
    while high < _MAX_EPSILON and one_run_p_value(m, r, v, high, delta) < alpha:
        low, high = high, 2.0 * high
    for _ in range(_BISECTION_STEPS):
        middle = (low + high) / 2.0
        if one_run_p_value(m, r, v, middle, delta) < alpha:
            low = middle
        else:
            high = middle
    return low


@dataclass(frozen=True)
class OneRunAudit:
    """The result of a one-run audit.

    epsilon_lower_bound: ε (nats) that the run provably exceeds at `confidence`, or 0;
    canaries: m; included: canaries that were in the training data; guesses: r of the best
    grid entry (k₊ "in" from the top scores, k₋ "out" from the bottom); correct: v of them;
    delta: the δ of the bound; confidence: after the Bonferroni split over `grid_size`
    guess counts, the bound of the best entry holds at this level.
    """

    epsilon_lower_bound: float
    canaries: int
    included: int
    guesses_in: int
    guesses_out: int
    correct: int
    delta: float
    confidence: float
    grid_size: int

    @property
    def guesses(self) -> int:
        return self.guesses_in + self.guesses_out

    def to_dict(self) -> dict:
        return asdict(self)


def _guess_counts(m: int, fractions: tuple[float, ...]) -> list[tuple[int, int]]:
    counts = []
    for fraction in fractions:
        total = max(2, int(round(fraction * m)))
        pair = (total // 2, total - total // 2)
        if pair not in counts and sum(pair) <= m:
            counts.append(pair)
    return counts


def audit_scores(scores, included, *, delta: float, confidence: float = 0.95,
                 fractions: tuple[float, ...] = GUESS_FRACTIONS) -> OneRunAudit:
    """The one-run ε lower bound of canary `scores` (larger = more likely included) given which
    canaries were really `included` (booleans, drawn with probability ½ each, independently
    of everything the scores depend on except through training).

    For each fraction f of the grid: guess "in" for the ⌈f·m/2⌉ highest scores and "out" for
    the ⌊f·m/2⌋ lowest, count correct guesses, bound ε at level 1 − (1 − confidence)/grid size;
    report the grid entry with the largest bound. Ties in scores are broken by position."""
    scores, included = np.asarray(scores, float), np.asarray(included, bool)
    if scores.ndim != 1 or scores.shape != included.shape or len(scores) < 2:
        raise ValueError("need one score and one inclusion flag per canary, at least 2 canaries")
    if not np.all(np.isfinite(scores)):
        raise ValueError("canary scores must be finite")
    m = len(scores)
    order = np.argsort(-scores, kind="stable")
    grid = _guess_counts(m, fractions)
    level = 1.0 - (1.0 - confidence) / len(grid)
    best = None
    for guesses_out, guesses_in in grid:
        correct = int(included[order[:guesses_in]].sum()) + int((~included[order[m - guesses_out:]]).sum())
        bound = one_run_epsilon_lower_bound(m, guesses_in + guesses_out, correct, delta=delta, confidence=level)
        if best is None or bound > best[0]:
            best = (bound, guesses_in, guesses_out, correct)
    bound, guesses_in, guesses_out, correct = best
    return OneRunAudit(
        epsilon_lower_bound=bound, canaries=m, included=int(included.sum()), guesses_in=guesses_in,
        guesses_out=guesses_out, correct=correct, delta=delta, confidence=confidence, grid_size=len(grid),
    )
