"""Privacy: every ε dptune shows, on `dp_accounting` only (no TensorFlow, Optuna or pandas).

`run` (`DPSGDRun`, the one record of a run; steps and δ), `accountant` (ε and curves of a
run), `calibration` (`calibrate_noise`, the one σ solver) — re-exported here, so
`privacy.compute_epsilon` —, `search_cost` (composing runs with the
clip-norm release and into a search, and calibrating those), `statement` (what a run's ε
covers, rendered the same everywhere), `clip_quantile` (the private clip norm) and `audit`
(empirical lower bounds).
"""

from dptune.privacy.accountant import (
    MAX_NOISE_MULTIPLIER,
    MIN_NOISE_MULTIPLIER,
    RDP_ORDERS,
    PrivacyReport,
    compute_epsilon,
    epsilon_curve,
    epsilon_of_rdp,
    event_epsilons,
    pld_epsilon_of_event,
    pld_value_discretization,
    privacy_report,
    rdp_epsilon_of_event,
    runs_rdp,
)
from dptune.privacy.calibration import calibrate_noise, calibrate_noise_multiplier
from dptune.privacy.run import DPSGDRun, default_delta, delta_warning, num_steps
from dptune.privacy.search_cost import SearchCost, search_cost_naive_composition, search_cost_repeat_and_select

__all__ = [
    "MAX_NOISE_MULTIPLIER", "MIN_NOISE_MULTIPLIER", "RDP_ORDERS", "DPSGDRun", "PrivacyReport", "SearchCost",
    "calibrate_noise", "calibrate_noise_multiplier", "compute_epsilon", "default_delta", "delta_warning",
    "epsilon_curve", "epsilon_of_rdp", "event_epsilons", "num_steps", "pld_epsilon_of_event",
    "pld_value_discretization", "privacy_report", "rdp_epsilon_of_event", "runs_rdp",
    "search_cost_naive_composition", "search_cost_repeat_and_select",
]
