"""Budget feasibility (dptune.study.budget): every problem at once, numbers from the accountant."""

from __future__ import annotations

import pytest
from search_helpers import TINY_MLP

from dptune import privacy
from dptune.spec.search import SearchSpec
from dptune.study.budget import check_budget, privacy_notes, resolve_delta

N = 1000


def spec(**values) -> SearchSpec:
    base = {"mode": "budgeted", "dataset": {"builtin": "digits"}, "model": TINY_MLP, "target_epsilon": 1.0}
    return SearchSpec.from_dict({**base, **values})


def test_an_impossible_budget_and_a_large_delta_are_reported_together():
    errors, warnings = check_budget(spec(target_epsilon=0.01, delta=0.01, ranges={"batch_size": N, "epochs": 1000}), N)
    assert len(errors) == 1 and errors[0].startswith("Impossible budget: ε = 0.01 at δ = 0.01")
    assert "even with σ = 1000 (N = 1,000)" in errors[0]
    # the accountant agrees: the largest σ the calibration may use still misses the target
    assert privacy.compute_epsilon(N, N, privacy.MAX_NOISE_MULTIPLIER, epochs=1000, delta=0.01).epsilon_rdp > 0.01
    assert any("not below 1/N = 0.001" in w for w in warnings)
    assert any("large in absolute terms" in w for w in warnings)


def test_corners_that_cannot_meet_the_target_are_named():
    errors, warnings = check_budget(spec(target_epsilon=0.05, ranges={"batch_size": [16, N], "epochs": [1, 200]}), N)
    assert errors == []
    assert warnings == ["Some trials cannot meet ε = 0.05 and will fail (B=1000, 200 epochs (m < B)); narrow the "
                        "batch-size or epochs range to avoid wasting them."]
    delta = privacy.default_delta(N)
    at = privacy.compute_epsilon(N, N, privacy.MAX_NOISE_MULTIPLIER, epochs=200, delta=delta, microbatched=True)
    assert at.epsilon_rdp > 0.05


def test_a_feasible_budget_has_no_message():
    assert check_budget(spec(target_epsilon=3.0), N) == ([], [])


def test_the_clip_selection_already_spent_counts():
    """ε_C = 2 leaves nothing of ε = 1 for training: every trial would fail calibration."""
    ranges = {"batch_size": 32, "epochs": 2}
    assert check_budget(spec(ranges=ranges), N).errors == []
    errors, _ = check_budget(spec(ranges=ranges, clip_selection_epsilon=2.0), N)
    assert len(errors) == 1 and errors[0].startswith("Impossible budget") and "ε_C = 2" in errors[0]


def test_pareto_warns_when_no_sigma_of_the_range_reaches_the_target():
    searched = spec(mode="pareto", target_epsilon=0.5, pruner="none",
                    ranges={"noise_multiplier": [0.5, 1.0], "batch_size": [256, 512], "epochs": [5, 10]})
    errors, warnings = check_budget(searched, N)
    best = privacy.compute_epsilon(N, 256, 1.0, epochs=5, delta=privacy.default_delta(N), pld=False).epsilon_rdp
    assert errors == [] and warnings == [
        f"Even σ = 1 with B = 256 and 5 epoch(s) gives ε = {best:.3g} > target 0.5: no trial will be within the "
        "target. Raise the σ range, lower B or epochs."
    ]


def test_the_recipe_and_a_whole_search_target_are_checked_when_trials_start():
    assert check_budget(spec(mode="recipe", target_epsilon=0.001), N) == ([], [])
    whole = spec(target_epsilon=0.001, epsilon_includes_search_cost=True, ranges={"batch_size": 32, "epochs": 2})
    assert check_budget(whole, N) == ([], [])


def test_delta_defaults_to_one_over_n_to_the_1_1():
    assert resolve_delta(spec(), N) == pytest.approx(N ** -1.1)
    assert resolve_delta(spec(delta=1e-6), N) == 1e-6


def test_what_will_not_be_private_is_said_before_anything_runs():
    """Issue 10 item 15: the recipe's σ = 0 baseline, σ/2 for m < B, B > N, chance-level targets."""
    assert any("non-private baseline" in note for note in privacy_notes(spec(mode="recipe"), N))
    micro = spec(target_epsilon=3.0, ranges={"batch_size": [32, 2 * N], "epochs": 2, "num_microbatches": [4]})
    notes = privacy_notes(micro, N)
    assert any("charged σ/2" in note for note in notes)
    assert any("Batch sizes above N = 1,000 (2000) are capped at N" in note for note in notes)
    per_example = {"batch_size": 64, "epochs": 2, "num_microbatches": ["per_example"]}
    assert privacy_notes(spec(target_epsilon=3.0, ranges=per_example), N) == []
    (chance,) = privacy_notes(spec(target_epsilon=0.01, ranges=per_example), N)
    sigma = privacy.calibrate_noise_multiplier(0.01, N, 64, epochs=2.0, delta=privacy.default_delta(N))
    assert sigma / 64 > 0.2 and f"σ ≥ {sigma:.3g}" in chance and "chance level" in chance
