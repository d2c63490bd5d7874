"""Privacy: every ε dptune shows, on `dp_accounting` only (no TensorFlow, Optuna or pandas).

`accountant` (one DP-SGD run: ε, curves, calibration; re-exported here, so `privacy.compute_epsilon`),
`search_cost` (composing runs, the clip-norm release and the search), `statement` (what a
run's ε covers, rendered the same everywhere) and `audit` (empirical lower bounds).
"""

from dptune.privacy.accountant import (
    MAX_NOISE_MULTIPLIER,
    MIN_NOISE_MULTIPLIER,
    RDP_ORDERS,
    PrivacyReport,
    SearchCost,
    TrialPrivacy,
    calibrate_noise_multiplier,
    compute_epsilon,
    default_delta,
    delta_warning,
    dpsgd_run_event,
    epsilon_curve,
    epsilon_of_rdp,
    num_steps,
    pld_epsilon_of_event,
    pld_value_discretization,
    rdp_epsilon_of_event,
    search_cost_naive_composition,
    search_cost_repeat_and_select,
    trial_privacy,
    trials_rdp,
)

__all__ = [
    "MAX_NOISE_MULTIPLIER", "MIN_NOISE_MULTIPLIER", "RDP_ORDERS", "PrivacyReport", "SearchCost", "TrialPrivacy",
    "calibrate_noise_multiplier", "compute_epsilon", "default_delta", "delta_warning", "dpsgd_run_event",
    "epsilon_curve", "epsilon_of_rdp", "num_steps", "pld_epsilon_of_event", "pld_value_discretization",
    "rdp_epsilon_of_event", "search_cost_naive_composition", "search_cost_repeat_and_select", "trial_privacy",
    "trials_rdp",
]
