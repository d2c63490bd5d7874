"""What each search mode asks of the search YAML: `ModeRules`, the one list of modes.

The spec layer validates a SearchSpec against its mode's rules and fills the mode's
defaults; the study layer's `dptune.study.modes.SearchMode` objects (how a trial is
suggested and scored) are built on these rules and take their name, pruning and search-cost
bound from them. The YAML key `mode` and the study attribute `mode` are `ModeRules.name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dptune.errors import ConfigError

#: pareto mode: the default cap on one trial's ε, as a multiple of target_epsilon
MAX_TRIAL_EPSILON_FACTOR = 3.0


@dataclass(frozen=True)
class ModeRules:
    """The spec fields a search mode needs, forbids or fills in.

    name: the string of the YAML key and the study attribute `mode`.
    summary: one sentence for the dashboard.
    noise_range: the default ranges.noise_multiplier; None when σ is calibrated, not
        searched (ranges.noise_multiplier is then forbidden, otherwise required).
    microbatches: the default ranges.num_microbatches (None: SearchRanges's default).
    prunes: Optuna can prune the trials (not multi-objective ones): a pruner is allowed.
    prune_by_default: the default pruner is median (else none); the dashboard offers a choice.
    bounds_search_cost: every trial spends one ε, so a random n_trials and
        epsilon_includes_search_cost are allowed (their bound needs it).
    runs_recipe: the `recipe` section drives the search (a fixed number of m = 1 trials,
        not private, so their cost cannot be inside the budget).
    trial_epsilon_factor: max_trial_epsilon is allowed, by default this multiple of
        target_epsilon; None: the mode sets σ from target_epsilon and takes no cap.
    """

    name: str
    summary: str
    noise_range: tuple[float, float] | None = None
    microbatches: tuple[int, ...] | None = None
    prunes: bool = True
    prune_by_default: bool = False
    bounds_search_cost: bool = False
    runs_recipe: bool = False
    trial_epsilon_factor: float | None = None

    @property
    def searches_noise(self) -> bool:
        """σ is a searched hyperparameter (ranges.noise_multiplier required), not calibrated."""
        return self.noise_range is not None

    def trial_epsilon_cap(self, target_epsilon: float, max_trial_epsilon: float | None = None) -> float | None:
        """The most ε one trial may spend: `max_trial_epsilon`, by default
        `trial_epsilon_factor` × target_epsilon; None where the mode takes no cap."""
        if self.trial_epsilon_factor is None:
            return None
        if max_trial_epsilon is not None:
            return float(max_trial_epsilon)
        return self.trial_epsilon_factor * float(target_epsilon)


BUDGETED = ModeRules(
    name="budgeted",
    summary="Budgeted: σ is calibrated so every trial spends exactly the target ε; "
    "search C, m, learning rate, batch size and epochs for accuracy.",
    prune_by_default=True,
    bounds_search_cost=True,
)
PARETO = ModeRules(
    name="pareto",
    summary="Pareto: search σ too, with three objectives (accuracy up, ε down, time down); "
    "pick a point of the trade-off afterwards.",
    noise_range=(0.5, 5.0),
    prunes=False,
    trial_epsilon_factor=MAX_TRIAL_EPSILON_FACTOR,
)
RECIPE = ModeRules(
    name="recipe",
    summary="Recipe (TF Privacy's guide, automated): C from the gradient-norm profile, the largest "
    "σ that keeps accuracy with m = 1, then σ and m scaled together to meet the target ε.",
    # m = 1: the effective noise is σ·C, so small σs (TF Privacy's guide: 0.01 or less)
    noise_range=(0.001, 1.0),
    microbatches=(1,),
    runs_recipe=True,
)
#: every mode, by name, in the dashboard's order (the default first)
MODES: dict[str, ModeRules] = {rules.name: rules for rules in (BUDGETED, PARETO, RECIPE)}


def mode_rules(name: Any) -> ModeRules:
    """The rules of the mode called `name` (the YAML key `mode`, the study attribute `mode`)."""
    try:
        return MODES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {name!r}") from None
