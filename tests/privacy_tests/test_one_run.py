"""The one-run audit's statistics (Steinke, Nasr & Jagielski 2023) against direct binomial computations."""

import math

import numpy as np
import pytest
from scipy import stats

from dptune.privacy.one_run import audit_scores, one_run_epsilon_lower_bound, one_run_p_value


def test_p_value_without_delta_is_the_binomial_tail():
    epsilon = 1.3
    q = math.exp(epsilon) / (1 + math.exp(epsilon))
    assert one_run_p_value(1000, 100, 80, epsilon, 0.0) == pytest.approx(stats.binom.sf(79, 100, q))


def test_all_correct_guesses_give_the_closed_form_bound():
    # v = r: p = q^r < 0.05  <=>  q > 0.05^(1/r)  <=>  ε > log(q / (1 - q))
    q = 0.05 ** (1 / 100)
    assert one_run_epsilon_lower_bound(1000, 100, 100, delta=0.0) == pytest.approx(math.log(q / (1 - q)), abs=1e-6)


def test_delta_weakens_the_bound_and_chance_gives_zero():
    assert one_run_epsilon_lower_bound(1000, 100, 100, delta=1e-3) < one_run_epsilon_lower_bound(
        1000, 100, 100, delta=0.0)
    assert one_run_epsilon_lower_bound(1000, 1000, 500, delta=1e-5) == 0.0
    assert one_run_epsilon_lower_bound(1000, 0, 0, delta=1e-5) == 0.0


def test_the_bound_is_where_the_p_value_crosses_five_percent():
    bound = one_run_epsilon_lower_bound(500, 200, 170, delta=1e-5)
    assert one_run_p_value(500, 200, 170, bound - 1e-6, 1e-5) < 0.05 <= one_run_p_value(500, 200, 170, bound + 1e-6, 1e-5)


def test_audit_scores_separates_perfect_scores_and_ignores_noise():
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    perfect = audit_scores(included.astype(float) + rng.normal(0, 0.01, 1000), included, delta=1e-5)
    assert perfect.correct == perfect.guesses and perfect.epsilon_lower_bound > 4
    noise = audit_scores(rng.normal(size=1000), included, delta=1e-5)
    assert noise.epsilon_lower_bound < 0.5


def test_bad_counts_are_refused():
    with pytest.raises(ValueError):
        one_run_epsilon_lower_bound(10, 20, 5, delta=1e-5)
    with pytest.raises(ValueError):
        audit_scores([1.0, np.nan], [True, False], delta=1e-5)
