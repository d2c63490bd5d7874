"""The search modes as objects behind one small interface: `SearchMode`.

A mode says what a trial optimises, how its noise multiplier σ is chosen, whether it can be
pruned and which bound on the privacy cost of the whole search it supports:

    mode      objective (directions)                   σ (noise_policy)               prunes  search cost
    budgeted  val accuracy (max)                       calibrated: each trial spends  yes     bounded in advance
                                                       exactly the target ε
    pareto    val accuracy (max), ε (min), time (min)  searched in ranges.noise_...   no      composition
                                                       (low end raised so no trial
                                                       spends more than the ε cap)
    recipe    σ (max) s.t. accuracy within tolerance   searched at m = 1, then σ and  yes     composition
              of the non-private baseline              m scaled together (recipe)

Each mode is built on its spec-level rules (`dptune.spec.modes.ModeRules`: the one list of
modes, what each asks of the search YAML) and takes its name, `prunes` and
`bounds_search_cost` from them. `mode_for(name)` is the registry. The YAML key `mode` and the
study attribute `mode` stay the strings "budgeted", "pareto" and "recipe" (an existing
studies.db loads unchanged); `study_mode(StudyRecord.of(study))` reads the attribute back
as the mode object.

This module imports nothing else of dptune.study: the trial machinery (dptune.study.objective,
and through it dptune.study.recipe) asks a mode for a trial's config, so a mode cannot hold the
objectives built from that machinery. dptune.study.search picks them: a `phased` mode (the
recipe) runs dptune.study.recipe.make_recipe_objective, the others
dptune.study.objective.make_objective.
"""

from __future__ import annotations

import abc
import enum
import functools
from typing import Any, ClassVar

import optuna

from dptune import privacy
from dptune.privacy.search_cost import (
    calibrate_search_noise,
    calibrate_with_clip_selection,
    epsilon_with_clip_selection,
)
from dptune.spec import modes as spec_modes
from dptune.spec.config import DPSGDConfig
from dptune.spec.ranges import PER_EXAMPLE
from dptune.spec.search import SearchSpec
from dptune.study.format import StudyRecord, TrialRecord


class NoisePolicy(enum.Enum):
    """How a mode chooses σ. The value is how the dashboard and the docs say it."""

    CALIBRATED = "calibrated to the target"  # the accountant solves for σ: each trial spends exactly the target ε
    SEARCHED = "searched"  # the sampler draws σ from ranges.noise_multiplier, like any other hyperparameter
    RECIPE = "recipe"  # searched at m = 1, then σ and m scaled by one factor until ε meets the target


# ---------------------------------------------------------------------------- calibration
@functools.lru_cache(maxsize=256)
def calibrated_noise_multiplier(
    target_epsilon: float, n_train: int, batch_size: int, epochs: float, delta: float, microbatched: bool,
    epsilon_includes_search_cost: bool = False, trials: tuple | None = None, clip_epsilon: float = 0.0,
) -> float:
    """σ that makes one trial's RDP ε hit `target_epsilon` (the budgeted mode's noise policy).

    clip_epsilon: ε already spent choosing C privately; the target then bounds the run
    composed with that selection. With `epsilon_includes_search_cost`, the target bounds the
    whole search instead (dptune.privacy.search_cost.calibrate_search_noise), `trials` being
    TrialCount.to_dict() as a sorted tuple of items (see `_trials_key`). Raises PrivacyError
    when no σ in the accountant's range meets the target.
    """
    if epsilon_includes_search_cost:
        return calibrate_search_noise(
            target_epsilon, n_train, batch_size, epochs=epochs, delta=delta, microbatched=microbatched,
            trials=dict(trials), clip_epsilon=clip_epsilon,
        )
    if clip_epsilon > 0:
        return calibrate_with_clip_selection(
            target_epsilon, n_train, batch_size, epochs=epochs, delta=delta, microbatched=microbatched,
            clip_epsilon=clip_epsilon,
        )
    return privacy.calibrate_noise_multiplier(
        target_epsilon, n_train, batch_size, epochs=epochs, delta=delta, microbatched=microbatched
    )


@functools.lru_cache(maxsize=1024)
def sigma_floor_for_cap(
    epsilon_cap: float, n_train: int, batch_size: int, epochs: float, delta: float, microbatched: bool,
    clip_epsilon: float, sigma_low: float,
) -> float:
    """The least σ >= `sigma_low` whose trial spends at most `epsilon_cap` (pareto mode's cap,
    SearchSpec.trial_epsilon_cap): `sigma_low` itself when its RDP ε (composed with the clip
    selection's `clip_epsilon`) is within the cap, else the σ the accountant calibrates for the
    cap (calibrated_noise_multiplier: ε in [0.99 · cap, cap]). Raises PrivacyError when no σ
    meets the cap (e.g. the clip selection alone spends more)."""
    run = privacy.DPSGDRun.planned(n_train, batch_size, float(sigma_low), epochs=epochs, microbatched=microbatched)
    if epsilon_with_clip_selection(run, clip_epsilon, delta)[0] <= epsilon_cap:
        return float(sigma_low)
    sigma = calibrated_noise_multiplier(epsilon_cap, n_train, batch_size, epochs, delta, microbatched,
                                        clip_epsilon=clip_epsilon)
    return max(float(sigma_low), sigma)


def _trials_key(spec: SearchSpec) -> dict:
    """The spec's trial count as calibrate_search_noise takes it (a fixed count as {"n": k})."""
    value = spec.n_trials.to_dict()
    return {"distribution": "fixed", "n": value} if isinstance(value, int) else value


# ---------------------------------------------------------------------------- suggestions
def suggest_log(trial: optuna.Trial, name: str, bounds: tuple, *, integer: bool = False):
    """A value in [low, high] on a log scale; a fixed value when low == high (not a param)."""
    low, high = bounds
    if low == high:
        return low
    if integer:
        return trial.suggest_int(name, int(low), int(high), log=True)
    return trial.suggest_float(name, float(low), float(high), log=True)


def suggest_microbatches(trial: optuna.Trial, choices: tuple, batch_size: int) -> int:
    """m from the choices ("per_example" = B; a choice above B is capped at B)."""
    if len(choices) == 1:
        choice = choices[0]
    else:
        choice = trial.suggest_categorical("num_microbatches", list(choices))
    return batch_size if choice == PER_EXAMPLE else min(int(choice), batch_size)


# ---------------------------------------------------------------------------- the interface
class SearchMode(abc.ABC):
    """One search mode. Instances are the module's singletons BUDGETED, PARETO and RECIPE.

    rules: what the mode asks of the search YAML (dptune.spec.modes), the owner of `name`,
        `prunes` and `bounds_search_cost`.
    name: the string of the YAML key and the study attribute `mode`.
    directions: Optuna's study directions, one per objective value.
    objective_names: Optuna's metric names, in the same order.
    prunes: each epoch's validation accuracy is reported to the study's pruner (which may stop
        the trial); False where Optuna cannot prune (multi-objective studies).
    noise_policy: how σ is chosen (NoisePolicy).
    bounds_search_cost: the privacy cost of the whole search can be bounded before it runs
        (every trial at one ε): a random number of trials with only the best released
        (Papernot & Steinke 2022, repeat-and-select) and `epsilon_includes_search_cost` are
        allowed. Otherwise the search costs the composition over every trial that ran.
    phased: the trials run in dependent phases driven by one process (dptune.study.recipe.
        run_recipe), each phase queueing its own; otherwise every planned trial is queued when
        the study is created and any number of workers take them.
    chooses_clip_norm: the mode sets C itself (the recipe's gradient-norm quantile) instead
        of sampling it from ranges.l2_norm_clip.
    """

    rules: ClassVar[spec_modes.ModeRules]
    directions: ClassVar[tuple[str, ...]]
    objective_names: ClassVar[tuple[str, ...]]
    noise_policy: ClassVar[NoisePolicy]
    phased: ClassVar[bool] = False
    chooses_clip_norm: ClassVar[bool] = False

    @property
    def name(self) -> str:
        return self.rules.name

    @property
    def prunes(self) -> bool:
        return self.rules.prunes

    @property
    def bounds_search_cost(self) -> bool:
        return self.rules.bounds_search_cost

    @abc.abstractmethod
    def suggest_config(self, trial: optuna.Trial, spec: SearchSpec, n_train: int, delta: float,
                       clip_epsilon: float = 0.0) -> DPSGDConfig:
        """The DP-SGD config of a search trial: its hyperparameters drawn from the spec's ranges
        by `trial` (Optuna's sampler), σ by the noise policy. clip_epsilon: pure ε already spent
        releasing clip-norm histograms on the data (composed into the trial's ε)."""

    @abc.abstractmethod
    def objective_value(self, result: Any, trial: optuna.Trial) -> float | tuple[float, ...]:
        """What the trial reports to Optuna, in the order of `directions`. result: the run's
        TrainResult; trial: its user attributes hold what was recorded (e.g. epsilon_total)."""

    def __repr__(self) -> str:
        return f"<search mode {self.name}>"


class _RangesMode(SearchMode):
    """C, learning rate, B, epochs and m drawn from the spec's ranges; σ by `noise_multiplier`."""

    def suggest_config(self, trial: optuna.Trial, spec: SearchSpec, n_train: int, delta: float,
                       clip_epsilon: float = 0.0) -> DPSGDConfig:
        ranges = spec.ranges
        clip = float(suggest_log(trial, "l2_norm_clip", ranges.l2_norm_clip))
        learning_rate = float(suggest_log(trial, "learning_rate", ranges.learning_rate))
        batch_size = int(suggest_log(trial, "batch_size", (min(ranges.batch_size[0], n_train),
                                                            min(ranges.batch_size[1], n_train)), integer=True))
        epochs = int(suggest_log(trial, "epochs", ranges.epochs, integer=True))
        microbatches = suggest_microbatches(trial, ranges.num_microbatches, batch_size)
        base = spec.base_config()
        if base.sampling == "shuffle":
            while batch_size % microbatches:  # TF Privacy's shuffle batches need m | B
                microbatches -= 1
        sigma = self.noise_multiplier(trial, spec, n_train, batch_size, float(epochs), delta,
                                      microbatches < batch_size, clip_epsilon)
        return base.replace(
            l2_norm_clip=clip,
            noise_multiplier=sigma,
            num_microbatches=microbatches,
            learning_rate=learning_rate,
            batch_size=batch_size,
            epochs=epochs,
        )

    @abc.abstractmethod
    def noise_multiplier(self, trial: optuna.Trial, spec: SearchSpec, n_train: int, batch_size: int, epochs: float,
                         delta: float, microbatched: bool, clip_epsilon: float) -> float:
        """σ of a trial with these B, epochs and microbatching (m < B)."""


class BudgetedMode(_RangesMode):
    """σ calibrated so that every trial spends exactly the target ε; maximise accuracy."""

    rules = spec_modes.BUDGETED
    directions = ("maximize",)
    objective_names = ("val_accuracy",)
    noise_policy = NoisePolicy.CALIBRATED

    def noise_multiplier(self, trial: optuna.Trial, spec: SearchSpec, n_train: int, batch_size: int, epochs: float,
                         delta: float, microbatched: bool, clip_epsilon: float) -> float:
        """The calibrated σ (`trial` unused: σ is no hyperparameter here)."""
        return self.calibrated_sigma(spec, n_train, batch_size, epochs, delta, microbatched, clip_epsilon)

    def calibrated_sigma(self, spec: SearchSpec, n_train: int, batch_size: int, epochs: float, delta: float,
                         microbatched: bool, clip_epsilon: float = 0.0) -> float:
        """σ of every trial of the spec with these B, epochs and microbatching: its ε (composed
        with the clip selection's `clip_epsilon`) hits the target, or with
        `epsilon_includes_search_cost` the whole search's does (calibrated_noise_multiplier).
        Raises PrivacyError when no σ does."""
        whole_search = spec.epsilon_includes_search_cost
        return calibrated_noise_multiplier(
            spec.target_epsilon, n_train, batch_size, float(epochs), delta, microbatched, whole_search,
            tuple(sorted(_trials_key(spec).items())) if whole_search else None, float(clip_epsilon),
        )

    def objective_value(self, result: Any, trial: optuna.Trial) -> float:
        return float(result.val_accuracy)


class ParetoMode(_RangesMode):
    """σ searched like the other hyperparameters; accuracy up, ε down, training time down.

    No trial spends more than the spec's `trial_epsilon_cap` (default 3 × target): for each
    suggested (B, epochs, m) the lower end of the σ range is raised to the σ that meets the
    cap (sigma_floor_for_cap), so a tiny σ never buys a huge ε that dominates the search's cost.
    """

    rules = spec_modes.PARETO
    directions = ("maximize", "minimize", "minimize")
    objective_names = ("val_accuracy", "epsilon", "train_seconds")
    noise_policy = NoisePolicy.SEARCHED

    def noise_multiplier(self, trial: optuna.Trial, spec: SearchSpec, n_train: int, batch_size: int, epochs: float,
                         delta: float, microbatched: bool, clip_epsilon: float) -> float:
        """σ from ranges.noise_multiplier, its lower end raised to meet the ε cap. When even the
        upper end spends more than the cap, σ is the cap's σ (above the range): the cap wins."""
        low, high = spec.ranges.noise_multiplier
        cap = spec.trial_epsilon_cap
        floor = low if cap is None else sigma_floor_for_cap(
            float(cap), int(n_train), int(batch_size), float(epochs), float(delta), bool(microbatched),
            float(clip_epsilon), float(low))
        if floor <= low:
            return float(suggest_log(trial, "noise_multiplier", (low, high)))
        return float(trial.suggest_float("noise_multiplier", floor, max(high, floor), log=True))

    def objective_value(self, result: Any, trial: optuna.Trial) -> tuple[float, float, float]:
        """(val accuracy, ε, training seconds); ε is the total with the clip selection, if any."""
        epsilon = TrialRecord.of(trial).epsilon_total
        return (float(result.val_accuracy), float(epsilon if epsilon is not None else result.epsilon_rdp),
                float(result.train_seconds))


class RecipeMode(SearchMode):
    """TF Privacy's tuning recipe (dptune.study.recipe): the largest σ at m = 1 whose accuracy
    stays within tolerance of the non-private baseline, then σ and m scaled to the target."""

    rules = spec_modes.RECIPE
    directions = ("maximize",)
    objective_names = ("noise_multiplier",)
    noise_policy = NoisePolicy.RECIPE
    phased = True
    chooses_clip_norm = True

    def suggest_config(self, trial: optuna.Trial, spec: SearchSpec, n_train: int, delta: float,
                       clip_epsilon: float = 0.0) -> DPSGDConfig:
        """A noise-search trial: C from the study's `recipe` attribute (step 1), σ and the learning
        rate sampled, m = 1, the recipe's B and epochs (n_train, delta, clip_epsilon unused:
        nothing is calibrated at m = 1)."""
        ranges = spec.ranges
        return spec.base_config().replace(
            l2_norm_clip=float(StudyRecord.of(trial.study).recipe["clip"]["l2_norm_clip"]),
            noise_multiplier=float(suggest_log(trial, "noise_multiplier", ranges.noise_multiplier)),
            learning_rate=float(suggest_log(trial, "learning_rate", ranges.learning_rate)),
            num_microbatches=1,
            batch_size=spec.recipe.batch_size,
            epochs=spec.recipe.epochs,
        )

    def objective_value(self, result: Any, trial: optuna.Trial) -> float:
        """σ of the run (maximised under the constraint `recipe_shortfall` <= 0)."""
        return float(result.config.noise_multiplier)


BUDGETED = BudgetedMode()
PARETO = ParetoMode()
RECIPE = RecipeMode()
_BY_RULES = {mode.rules: mode for mode in (BUDGETED, PARETO, RECIPE)}
#: every mode of dptune.spec.modes.MODES, in its order (a spec mode without an implementation
#: here fails at import)
MODES: dict[str, SearchMode] = {name: _BY_RULES[rules] for name, rules in spec_modes.MODES.items()}


def mode_for(name: Any) -> SearchMode:
    """The mode called `name` (the YAML key `mode`, the study attribute `mode`); ConfigError
    naming the modes when there is none."""
    return MODES[spec_modes.mode_rules(name).name]


def study_mode(record: StudyRecord) -> SearchMode:
    """The mode of a dptune study, from its record."""
    return mode_for(record.mode)
