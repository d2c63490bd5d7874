"""What DP does to people across a study's trials, as figures: membership-inference success and
group fairness against ε (pure functions: trial records in, frame or figure out).

Each finished trial records `membership` and `fairness` (dptune.study.format.TrialRecord); both
read the validation rows, which ε does not protect. A trial without noise (σ = 0) has no ε: it
is drawn as a dashed reference line labelled "no privacy", never placed on the ε axis.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import plotly.graph_objects as go

from dptune.study.format import TrialRecord

HARMS_COLUMNS = ("number", "epsilon", "val_accuracy", "mia_auc", "mia_advantage", "mia_tpr_at_fpr_1pct",
                 "worst_group_accuracy", "accuracy_difference", "demographic_parity_difference",
                 "equalized_odds_difference")
VALIDATION_NOTE = "Measured on the validation rows, which ε does not protect."


def harms_frame(trials: Iterable[tuple[int, TrialRecord]]) -> pd.DataFrame:
    """One row per trial that recorded its membership or fairness report: its number, ε (None:
    no privacy), validation accuracy, the stronger attack's AUC / advantage / TPR at FPR 1 %
    (the largest over the two attacks) and the fairness gaps (None without a sensitive attribute)."""
    rows = []
    for number, record in trials:
        if record.membership is None and record.fairness is None:
            continue
        attacks = (record.membership or {}).get("attacks") or []
        tprs = [a["tpr_at_fpr_1pct"] for a in attacks if a.get("tpr_at_fpr_1pct") is not None]
        fairness = record.fairness or {}
        rows.append({
            "number": number, "epsilon": record.epsilon, "val_accuracy": record.accuracy,
            "mia_auc": max((a["auc"] for a in attacks), default=None),
            "mia_advantage": max((a["advantage"] for a in attacks), default=None),
            "mia_tpr_at_fpr_1pct": max(tprs, default=None),
            **{key: fairness.get(key) for key in HARMS_COLUMNS[6:]},
        })
    return pd.DataFrame(rows, columns=list(HARMS_COLUMNS))


def _by_epsilon(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    private = frame[frame["epsilon"].notna()].sort_values("epsilon")
    return private, frame[frame["epsilon"].isna()]


def _reference_lines(figure: go.Figure, reference: pd.DataFrame, columns: dict[str, str]) -> None:
    for column, label in columns.items():
        values = reference[column].dropna()
        if len(values):
            figure.add_hline(y=float(values.mean()), line_dash="dash", line_color="grey",
                             annotation_text=f"no privacy (σ = 0): {label} {values.mean():.3f}",
                             annotation_position="top left")


def _figure(frame: pd.DataFrame, columns: dict[str, str], title: str, y_title: str) -> go.Figure:
    private, reference = _by_epsilon(frame)
    figure = go.Figure()
    for column, label in columns.items():
        shown = private[private[column].notna()]
        figure.add_trace(go.Scatter(
            x=shown["epsilon"], y=shown[column], mode="markers", name=label, customdata=shown["number"],
            hovertemplate=f"trial %{{customdata}}<br>ε %{{x:.3g}}<br>{label} %{{y:.3f}}<extra></extra>",
        ))
    _reference_lines(figure, reference, columns)
    figure.update_layout(title=title, xaxis_title="ε of the trial (training run)", yaxis_title=y_title,
                         yaxis_range=[0, 1.02], height=360, margin={"t": 50, "b": 40})
    return figure


def membership_vs_epsilon_figure(frame: pd.DataFrame) -> go.Figure:
    """Membership-inference AUC and attacker advantage (the stronger attack) against ε; AUC 0.5
    and advantage 0 are chance."""
    figure = _figure(frame, {"mia_auc": "attack AUC", "mia_advantage": "attacker advantage"},
                     "Membership inference against ε", "AUC / advantage")
    figure.add_hline(y=0.5, line_dash="dot", line_color="lightgrey", annotation_text="AUC of a coin flip",
                     annotation_position="bottom right")
    return figure


def fairness_vs_epsilon_figure(frame: pd.DataFrame) -> go.Figure:
    """Validation accuracy, worst-group accuracy and the group gaps against ε (the disparate-impact
    picture: DP-SGD's accuracy loss falls hardest on small groups)."""
    return _figure(frame, {"val_accuracy": "accuracy (all rows)", "worst_group_accuracy": "worst-group accuracy",
                           "accuracy_difference": "accuracy gap", "demographic_parity_difference": "parity gap",
                           "equalized_odds_difference": "equalized-odds gap"},
                   "Group fairness against ε", "accuracy / gap")
