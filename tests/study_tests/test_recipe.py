"""The recipe: private clip-norm quantile and the whole recipe on digits (its σ/m scaling:
tests/privacy_tests/test_noise_scaling.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dptune import privacy
from dptune.data import builtin_dataset
from dptune.data.dataset import Dataset
from dptune.engine.profile import gradient_norm_profile
from dptune.errors import PrivacyError
from dptune.privacy.clip_quantile import (
    BIN_EDGES,
    histogram,
    private_clip_norm,
    public_clip_norm,
    quantile_from_histogram,
)
from dptune.privacy.search_cost import epsilon_with_clip_selection
from dptune.spec.config import ModelSpec

N, B, EPOCHS = 1438, 64, 3
DELTA = privacy.default_delta(N)


# ---------------------------------------------------------------------------- clip norm
def _without_row(dataset: Dataset, row: int) -> Dataset:
    keep = np.arange(dataset.n_train) != row
    return Dataset(name=dataset.name, x_train=dataset.x_train[keep], y_train=dataset.y_train[keep],
                   x_val=dataset.x_val, y_val=dataset.y_val, class_names=dataset.class_names)


def _seeded_subsample_profile(dataset: Dataset, spec: ModelSpec, examples: int) -> np.ndarray:
    """The profile as it was before issue 8 (a seed-0 subsample): kept here as the broken variant."""
    rows = np.sort(np.random.default_rng(0).choice(dataset.n_train, size=min(examples, dataset.n_train),
                                                   replace=False))
    subset = Dataset(name=dataset.name, x_train=dataset.x_train[rows], y_train=dataset.y_train[rows],
                     x_val=dataset.x_val, y_val=dataset.y_val, class_names=dataset.class_names)
    return gradient_norm_profile(subset, spec)


def test_removing_one_row_changes_the_released_histogram_by_one_count():
    """The Laplace histogram is charged L1 sensitivity 1; the exact histograms of D and D − 1 row
    must differ by exactly that, while the old seeded-subsample profile differs by many."""
    digits, spec = builtin_dataset("digits"), ModelSpec("mlp", hidden_units=(16,))
    full = histogram(gradient_norm_profile(digits, spec))
    assert full.sum() == digits.n_train
    old = histogram(_seeded_subsample_profile(digits, spec, 1000))
    broken_changes = []
    for row in (0, 500, digits.n_train - 1):
        smaller = _without_row(digits, row)
        assert np.abs(full - histogram(gradient_norm_profile(smaller, spec))).sum() == 1
        broken_changes.append(np.abs(old - histogram(_seeded_subsample_profile(smaller, spec, 1000))).sum())
    assert max(broken_changes) > 1  # the check can fail: a seeded subsample moves other rows


def test_histogram_counts_every_norm_once():
    norms = np.array([1e-5, 0.5, 0.5, 2.0, 3.0, 5e3])
    counts = histogram(norms)
    assert counts.sum() == len(norms) and len(counts) == len(BIN_EDGES) + 1
    assert counts[0] == 1 and counts[-1] == 1  # under- and overflow bins


def test_histogram_quantile_is_close_to_the_exact_one():
    norms = np.exp(np.random.default_rng(0).normal(np.log(2.0), 0.6, 5000))
    for q in (0.5, 0.75, 0.9):
        estimate = quantile_from_histogram(histogram(norms), q)
        # 5 bins per decade, interpolated: within a few percent
        assert estimate == pytest.approx(np.quantile(norms, q), rel=0.05)


def test_private_quantile_is_noisy_but_useful_and_charged():
    norms = np.exp(np.random.default_rng(1).normal(np.log(2.0), 0.5, 1438))
    exact = np.quantile(norms, 0.75)
    estimates = [private_clip_norm(norms, 0.75, 0.1, rng=np.random.default_rng(s)).l2_norm_clip for s in range(20)]
    assert np.median(np.abs(np.log(np.array(estimates) / exact))) < math.log(1.3)
    selection = private_clip_norm(norms, 0.75, 0.1, rng=np.random.default_rng(0))
    assert selection.epsilon == 0.1 and selection.source == "private"
    assert set(selection.quantiles) == {"0.5", "0.75", "0.9"}
    with pytest.raises(PrivacyError):
        private_clip_norm(norms, 0.75, 0.0)
    public = public_clip_norm(norms, 0.75)
    assert public.epsilon == 0 and public.l2_norm_clip == pytest.approx(exact)


def test_clip_selection_cost_composes_with_training():
    run = privacy.DPSGDRun.planned(N, B, 1.2, epochs=EPOCHS)
    alone = privacy.compute_epsilon(N, B, 1.2, epochs=EPOCHS, delta=DELTA, pld=False).epsilon_rdp
    with_clip, with_clip_pld = epsilon_with_clip_selection(run, 0.1, DELTA, pld=True)
    # composition costs more than training alone, and less than adding the two epsilons
    assert alone < with_clip < alone + 0.1
    assert with_clip_pld < with_clip
    # the event dptune composes is exactly privacy's DP-SGD event
    assert epsilon_with_clip_selection(run, 1e-12, DELTA)[0] == pytest.approx(alone, rel=1e-6)
    assert epsilon_with_clip_selection(run, 0.0, DELTA)[0] == alone  # no clip release: the run alone


# ---------------------------------------------------------------------------- real dataset
def test_recipe_on_digits_reaches_the_target_and_reports_predicted_vs_actual(tmp_path):
    """The whole recipe on sklearn digits: private C, baseline, m = 1 noise search, scaling,
    verification. The scaled configuration meets ε (with the clip-norm cost) and its measured
    utility is reported next to the m = 1 prediction."""
    from dptune.spec.search import SearchSpec
    from dptune.study.results import best_trial_within, trials_frame
    from dptune.study.search import tune

    spec = SearchSpec.from_dict({
        "mode": "recipe", "dataset": {"builtin": "digits"}, "model": {"kind": "mlp", "hidden_units": [32]},
        "target_epsilon": 3.0, "n_trials": 3, "workspace": str(tmp_path), "study_name": "recipe", "sampler_seed": 0,
        "ranges": {"noise_multiplier": [0.005, 0.05], "learning_rate": [0.1, 0.5]},
        "recipe": {"batch_size": B, "epochs": 2, "clip_quantile": 0.75, "clip_epsilon": 0.1, "tolerance": 0.1,
                   "verify_trials": 1},
    })
    outcome = tune(spec, progress=False)
    study = outcome.study
    state = study.user_attrs["recipe"]
    assert state["clip"]["source"] == "private" and state["clip"]["epsilon"] == 0.1
    assert state["status"] == "verified", state
    scaled = state["scaled"]
    assert scaled["feasible"] and scaled["epsilon_total"] <= 3.0
    assert scaled["noise_multiplier"] / scaled["num_microbatches"] == pytest.approx(
        state["noise_search"]["noise_multiplier"])
    verify = state["verify"]
    assert verify["predicted_val_accuracy"] == state["noise_search"]["val_accuracy"]
    assert 0 < verify["val_accuracy_mean"] <= 1 and "difference" in verify
    frame = trials_frame(study)
    assert set(frame["phase"]) == {"baseline", "noise_search", "verify"}
    verified = frame[frame["phase"] == "verify"].iloc[0]
    assert verified["epsilon_total"] <= 3.0 and verified["epsilon_total"] > verified["epsilon"]
    assert frame[frame["phase"] == "baseline"]["epsilon"].isna().all()  # sigma = 0: no privacy
    best = best_trial_within(study)
    assert best is not None and best.user_attrs["epsilon_total"] <= 3.0
    cost = study.user_attrs["search_cost"]
    assert cost["naive_composition_finite"] is False  # the non-private baseline
    assert "baseline" in cost["note"]


def test_clip_norm_from_a_fixed_value_or_a_public_dataset_costs_nothing(tmp_path):
    from dptune.data import builtin_dataset
    from dptune.spec.search import SearchSpec
    from dptune.study.recipe import select_clip_norm

    base = {"mode": "recipe", "dataset": {"builtin": "digits"}, "model": {"kind": "mlp", "hidden_units": [16]},
            "target_epsilon": 3.0, "workspace": str(tmp_path)}
    digits = builtin_dataset("digits")
    fixed = select_clip_norm(SearchSpec.from_dict({**base, "recipe": {"clip_norm": 1.5}}), digits)
    assert (fixed.source, fixed.l2_norm_clip, fixed.epsilon) == ("fixed", 1.5, 0.0)
    proxy = {"builtin": "digits", "options": {"seed": 1}}  # another split stands in for public data
    public = select_clip_norm(SearchSpec.from_dict({**base, "recipe": {"clip_dataset": proxy, "clip_epsilon": 0}}), digits)
    assert public.source == "public" and public.epsilon == 0.0
    assert public.examples == builtin_dataset("digits", seed=1).n_train  # every row profiled
    assert public.quantiles["0.5"] <= public.l2_norm_clip <= public.quantiles["0.9"]
