"""The Trade-offs page's "Attacks & fairness" tab: membership inference and group fairness against
ε across the study's trials, and the chosen trial's per-class, per-group and per-attack tables.

Every number here was measured on the validation rows (and, for the attacks, the training
rows' losses); ε does not protect the validation rows, and the page says so.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from dptune.privacy.statement import format_epsilon
from dptune.report import harms_plots
from dptune.spec.fairness import FairnessLimit
from dptune.study.format import TrialRecord
from dptune.ui import core


def _records(snapshot: core.StudySnapshot) -> list[tuple[int, TrialRecord]]:
    return [(t.number, TrialRecord.of(t)) for t in snapshot.trials if t.state.name == "COMPLETE"]


def harms_tab(snapshot: core.StudySnapshot, number: int | None) -> None:
    """The two figures across trials and the tables of trial `number` (None: none chosen)."""
    records = _records(snapshot)
    frame = harms_plots.harms_frame(records)
    if frame.empty:
        st.info("No finished trial recorded membership-inference or fairness metrics yet (trials record them "
                "when they finish; trials from an older dptune have none).", icon=":material/info:")
        return
    left, right = st.columns(2)
    with left:
        st.plotly_chart(harms_plots.membership_vs_epsilon_figure(frame), key="harms-mia")
    with right:
        st.plotly_chart(harms_plots.fairness_vs_epsilon_figure(frame), key="harms-fairness")
    st.caption("Membership inference: members are training rows, non-members validation rows (balanced); the "
               "stronger of a loss-threshold and a cross-validated logistic-regression attack. Fairness: per "
               "sensitive group (gaps are max − min over groups). " + harms_plots.VALIDATION_NOTE)
    limit = FairnessLimit.from_dict(snapshot.record.search_spec.get("fairness_limit"))
    if limit is not None:
        over = [str(n) for n, r in records if r.within_fairness_limit is False]
        st.caption(f"Fairness limit {limit.describe()} (the search's fairness_limit): "
                   + (f"over it, so never chosen as the best trial: trial(s) {', '.join(over)}." if over
                      else "every finished trial meets it."))
    record = dict(records).get(number) if number is not None else None
    if record is None:
        return
    st.markdown(f"**Trial {number}: attacks and groups**")
    if limit is not None and record.within_fairness_limit is not None:
        distance = "not measurable" if record.fairness_violation is None else f"{record.fairness_violation:+.3f}"
        st.caption(f"Trial {number} {'meets' if record.within_fairness_limit else 'is over'} the fairness limit "
                   f"{limit.describe()} (distance to it: {distance}; > 0 is over).")
    if record.membership:
        st.dataframe(pd.DataFrame(record.membership["attacks"]), hide_index=True, key="harms-attacks")
        st.caption(f"{record.membership['per_side']:,} rows per side. ε lower bound: at 95 % confidence, what the "
                   "attack's rates imply (rows of one run treated as independent trials; the one-run audit, "
                   "`dptune audit`, is the rigorous check).")
    for line in audit_lines(snapshot.name, number):
        st.caption(line)
    if record.fairness:
        _fairness_tables(record.fairness)
    if record.evaluation_error:
        st.warning(f"The metrics could not be computed: {record.evaluation_error}", icon=":material/warning:")


def audit_lines(study: str, number: int) -> list[str]:
    """One line per saved one-run audit (`dptune audit` of this trial's run YAML), newest mode first."""
    lines = []
    for mode, kind in (("white_box", "white-box"), ("black_box", "black-box")):
        path = core.workspace().audit_path(study, number, mode)
        try:
            audit = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        bound, claimed = float(audit["epsilon_lower_bound"]), float(audit["accountant_epsilon_rdp"])
        verdict = ("REFUTED: above the accountant's ε, the guarantee does not hold" if bound > claimed
                   else "consistent with the accountant's ε (an audit can refute a guarantee, never prove one)")
        lines.append(f"One-run audit ({kind}, {int(audit['canaries']):,} canaries; Steinke, Nasr & Jagielski 2023): "
                     f"ε lower bound {bound:.3f} at {float(audit['confidence']):.0%} confidence against the "
                     f"accountant's ε {format_epsilon(claimed)}: {verdict}.")
    return lines


def _fairness_tables(fairness: dict[str, Any]) -> None:
    st.dataframe(pd.DataFrame(fairness["per_class"]), hide_index=True, key="harms-classes")
    if not fairness.get("groups"):
        st.caption("Accuracy per class on the validation rows. The dataset has no sensitive attribute, so there "
                   "are no group metrics. " + harms_plots.VALIDATION_NOTE)
        return
    st.dataframe(pd.DataFrame(fairness["groups"]), hide_index=True, key="harms-groups")
    small = [g["group"] for g in fairness["groups"] if g["small"]]
    gaps = ", ".join(f"{label} {fairness[key]:.3f}" for key, label in (
        ("demographic_parity_difference", "demographic parity difference"),
        ("equal_opportunity_difference", "equal opportunity difference"),
        ("equalized_odds_difference", "equalized odds difference"),
        ("worst_group_accuracy", "worst-group accuracy")) if fairness.get(key) is not None)
    st.caption(f"Sensitive attribute {fairness['sensitive_name']!r}, rates for {fairness['positive']}: {gaps}. "
               + (f"Groups under {fairness['min_group_size']} rows (too few to compare): {', '.join(small)}. "
                  if small else "") + harms_plots.VALIDATION_NOTE)
