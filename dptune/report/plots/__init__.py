"""Plotly figures for the privacy-utility-speed trade-offs (pure functions, no Streamlit).

Every function takes plain data (the `dptune.study.results.trials_frame` DataFrame, a trial's
history records, arrays) and returns a `plotly.graph_objects.Figure`; nothing here reads
storage or keeps state. Column names are those of `trials_frame` (docs/INTERFACES.md):
`number, state, val_accuracy, epsilon, epsilon_pld, l2_norm_clip, noise_multiplier,
num_microbatches, learning_rate, batch_size, epochs, seconds_per_step,
examples_per_second, train_seconds, device, fail_reason, history, epochs_done, phase`.

Epsilon semantics shown in captions (`EPSILON_PER_TRIAL`, `epsilon_with_search_caption`):
a trial's ε is the privacy cost of training that one configuration once (RDP accountant
at the trial's δ); releasing the best of many trials costs more, which the search-cost
accountant (`dptune.privacy.search_cost_*`) adds on top.
"""

from dptune.report.plots._budgeted import accuracy_vs_time_figure
from dptune.report.plots._collaborative import COLLABORATIVE_AXES, collaborative_figure
from dptune.report.plots._common import (
    EPSILON_LOG_SPAN,
    EPSILON_PER_TRIAL,
    MAX_HIGHLIGHTED_CURVES,
    PARAMETER_LABELS,
    best_within_budget,
    comparable_trials,
    epsilon_axis_type,
    epsilon_with_search_caption,
    highlighted_trials,
    message_figure,
    normalize_state,
    pareto_mask,
    plots_colorway,
)
from dptune.report.plots._curves import accuracy_curves_figure, epsilon_curves_figure, trial_progress_figure
from dptune.report.plots._data import class_balance_figure, clip_histogram_figure, gradient_norm_histogram
from dptune.report.plots._parameters import (
    parallel_coordinates_figure,
    param_importances_figure,
    speed_vs_microbatches_figure,
)
from dptune.report.plots._pareto import pareto_front_figure

__all__ = ["COLLABORATIVE_AXES", "EPSILON_LOG_SPAN", "EPSILON_PER_TRIAL", "MAX_HIGHLIGHTED_CURVES", "PARAMETER_LABELS", "accuracy_curves_figure", "accuracy_vs_time_figure", "best_within_budget", "class_balance_figure", "clip_histogram_figure", "collaborative_figure", "epsilon_axis_type", "epsilon_curves_figure", "epsilon_with_search_caption", "comparable_trials", "gradient_norm_histogram", "highlighted_trials", "message_figure", "normalize_state", "parallel_coordinates_figure", "param_importances_figure", "pareto_front_figure", "pareto_mask", "plots_colorway", "speed_vs_microbatches_figure", "trial_progress_figure"]
