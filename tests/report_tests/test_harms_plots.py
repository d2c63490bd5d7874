"""Attacks and fairness against ε: the frame of recorded trials and its figures (a trial without
noise is a labelled reference line, never a point on the ε axis)."""

from dptune.report.harms_plots import fairness_vs_epsilon_figure, harms_frame, membership_vs_epsilon_figure
from dptune.study.format import TrialRecord


def _record(epsilon, auc, worst):
    attacks = [{"attack": "loss_threshold", "auc": auc, "advantage": auc - 0.5, "tpr_at_fpr_1pct": 0.02},
               {"attack": "logistic_regression", "auc": auc - 0.01, "advantage": auc - 0.45, "tpr_at_fpr_1pct": None}]
    fairness = {"worst_group_accuracy": worst, "accuracy_difference": 0.9 - worst,
                "demographic_parity_difference": 0.1, "equalized_odds_difference": 0.2}
    return TrialRecord(epsilon_rdp=epsilon, val_accuracy=0.9, membership={"attacks": attacks}, fairness=fairness)


def test_frame_keeps_the_stronger_attack_and_skips_trials_without_metrics():
    frame = harms_frame([(0, _record(1.0, 0.52, 0.7)), (1, _record(None, 0.8, 0.85)), (2, TrialRecord())])
    assert list(frame["number"]) == [0, 1]
    assert frame.loc[0, "mia_auc"] == 0.52 and frame.loc[0, "mia_advantage"] == 0.52 - 0.45
    assert frame.loc[0, "mia_tpr_at_fpr_1pct"] == 0.02 and frame.loc[1, "worst_group_accuracy"] == 0.85


def test_a_trial_without_noise_is_a_reference_line_not_a_point():
    frame = harms_frame([(0, _record(1.0, 0.52, 0.7)), (1, _record(3.0, 0.55, 0.72)), (2, _record(None, 0.8, 0.85))])
    figure = membership_vs_epsilon_figure(frame)
    assert all(list(trace.x) == [1.0, 3.0] for trace in figure.data)
    notes = [a.text for a in figure.layout.annotations]
    assert any(note.startswith("no privacy (σ = 0): attack AUC 0.800") for note in notes)
    fairness = fairness_vs_epsilon_figure(frame)
    assert any("worst-group accuracy 0.850" in a.text for a in fairness.layout.annotations)
