"""Membership inference on real trained models: an overfitted non-private model is exposed, a DP
model at small ε is not; the attack statistics match scikit-learn's."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve

from dptune.data.dataset import Dataset
from dptune.engine.dpsgd import train
from dptune.engine.evaluate import evaluate_trial
from dptune.evaluation.membership import fit_logistic_regression, membership_report, roc_numbers
from dptune.spec.config import DPSGDConfig, ModelSpec


def test_roc_numbers_match_scikit_learn_with_ties():
    rng = np.random.default_rng(1)
    members = rng.random(500) < 0.5
    scores = np.round(rng.normal(size=500) + members, 1)
    auc, advantage, _, _ = roc_numbers(members, scores)
    fpr, tpr, _ = roc_curve(members, scores)
    assert auc == pytest.approx(roc_auc_score(members, scores))
    assert advantage == pytest.approx(np.max(np.abs(tpr - fpr)))


def test_newton_logistic_regression_matches_scikit_learn():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(400, 4))
    targets = (features @ [1.5, -0.5, 0.0, 2.0] + rng.logistic(size=400) > 0.3).astype(float)
    weights = fit_logistic_regression(features, targets)
    reference = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(features, targets)
    assert weights[:-1] == pytest.approx(reference.coef_[0], abs=1e-5)
    assert weights[-1] == pytest.approx(reference.intercept_[0], abs=1e-5)


def test_report_balances_sides_and_marks_what_it_cannot_estimate():
    rng = np.random.default_rng(0)

    def side(n, boost):
        labels = rng.integers(0, 3, n)
        logits = rng.normal(size=(n, 3))
        logits[np.arange(n), labels] += boost
        losses = np.log(np.exp(logits).sum(1)) - logits[np.arange(n), labels]
        return losses, logits, labels

    report = membership_report(side(900, 3.0), side(150, 1.0), ("a", "b", "c"), delta=1e-5, rng=rng)
    assert report.per_side == 150
    for attack in report.attacks:
        assert attack.members == attack.non_members == 150
        assert attack.auc > 0.7 and attack.tpr_at_fpr_1pct is not None and attack.tpr_at_fpr_0_1pct is None
    assert {(s.by, s.value) for s in report.slices} == {("class", "a"), ("class", "b"), ("class", "c"),
                                                         ("correct", "true"), ("correct", "false")}
    assert "not protected" in report.non_members_source


def _noise_dataset(rng, n=300):
    """Random features and labels: nothing to learn, so a model can only memorise."""
    return Dataset(name="noise", x_train=rng.normal(size=(n, 20)), y_train=rng.integers(0, 2, n),
                   x_val=rng.normal(size=(n, 20)), y_val=rng.integers(0, 2, n), class_names=("a", "b"))


def test_overfitted_non_private_model_is_exposed_and_a_dp_model_is_not():
    dataset = _noise_dataset(np.random.default_rng(0))
    model = ModelSpec(kind="mlp", hidden_units=(256,))
    non_private = DPSGDConfig(l2_norm_clip=100.0, noise_multiplier=0.0, num_microbatches=50, batch_size=50,
                              epochs=80, learning_rate=0.01, optimizer="adam")
    private = DPSGDConfig(l2_norm_clip=1.0, noise_multiplier=10.0, num_microbatches=50, batch_size=50,
                          epochs=5, learning_rate=0.5)
    exposed = evaluate_trial(train(dataset, model, non_private, delta=1e-5).model, dataset, delta=1e-5,
                             rng=np.random.default_rng(1)).membership
    dp_run = train(dataset, model, private, delta=1e-5)
    assert dp_run.epsilon_rdp < 1.0
    protected = evaluate_trial(dp_run.model, dataset, delta=1e-5, rng=np.random.default_rng(1)).membership
    for name in ("loss_threshold", "logistic_regression"):
        assert exposed.attack(name).auc > 0.75 and exposed.attack(name).advantage > 0.4
        assert exposed.attack(name).epsilon_lower_bound > 1.0
        assert abs(protected.attack(name).auc - 0.5) < 0.1
        assert protected.attack(name).epsilon_lower_bound < dp_run.epsilon_rdp
