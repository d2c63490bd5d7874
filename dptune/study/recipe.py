"""TF Privacy's tuning recipe, automated (DESIGN.md "The tuning recipe").

1. Clip norm: profile the per-example gradient norms of the initial model on every row of
   the training data and set C to a chosen quantile. On the training data the quantile is
   released privately: a histogram over fixed log-spaced bins plus Laplace noise of scale
   1/ε_C (one example changes one count by 1, so the histogram is pure ε_C-DP); the quantile
   is read off the noisy cumulative counts (post-processing, free). ε_C is composed with
   every run trained with that C (`dptune.privacy.search_cost.epsilon_with_clip_selection`). A
   public or proxy dataset can be profiled instead, exactly and at no privacy cost.
2. With m = 1 (fastest), search sigma and the learning rate for the largest noise whose
   validation accuracy stays within `tolerance` of the non-private baseline (sigma = 0).
3. Scale sigma and m by the same integer factor k (effective noise sigma*C/m unchanged;
   dptune.privacy.noise_scaling)
   until the accountant meets the target ε at the chosen batch size and epochs (m <= B;
   m < B is charged sigma/2, m = B sigma). If even m = B cannot, say what would.
4. Verify the scaled configuration with full runs; record predicted (the m = 1 trial's
   accuracy) against actual.

Everything is recorded in the study attribute `recipe` (and each run as a trial with
`phase` baseline / noise_search / verify), so the UI and a resumed `tune` see it all.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from dptune.data import resolve_dataset
from dptune.data.dataset import Dataset
from dptune.engine.profile import gradient_norm_profile
from dptune.privacy.clip_quantile import ClipSelection, private_clip_norm, public_clip_norm
from dptune.privacy.noise_scaling import scale_noise, total_epsilon
from dptune.spec.config import DPSGDConfig
from dptune.spec.search import SearchSpec
from dptune.study.format import StudyRecord, TrialRecord, write_study, write_trial
from dptune.study.objective import (
    RECIPE_BASELINE_PHASE,
    RECIPE_CONSTRAINT,
    RECIPE_NOISE_PHASE,
    RECIPE_VERIFY_PHASE,
    TrainFn,
    config_or_fail,
    is_planned,
    refuse_surplus,
    run_trial,
    suggest_config,
)
from dptune.study.queue import drain_queue, enqueue_planned


# ---------------------------------------------------------------------------- 1. clip norm
def select_clip_norm(spec: SearchSpec, dataset: Dataset, *, rng: np.random.Generator | None = None) -> ClipSelection:
    """Step 1 for a recipe spec: fixed C, exact quantile on public data, or private quantile."""
    recipe = spec.recipe
    if recipe.clip_norm is not None:
        return ClipSelection(source="fixed", l2_norm_clip=float(recipe.clip_norm), quantile=None, epsilon=0.0)
    seed = spec.base_config().seed
    if recipe.clip_dataset is not None:
        public = resolve_dataset(recipe.clip_dataset, spec.workspace)
        return public_clip_norm(gradient_norm_profile(public, spec.model, seed=seed), recipe.clip_quantile)
    norms = gradient_norm_profile(dataset, spec.model, seed=seed)
    return private_clip_norm(norms, recipe.clip_quantile, recipe.clip_epsilon, rng=rng)


# ---------------------------------------------------------------------------- objective
def make_recipe_objective(spec: SearchSpec, dataset: Dataset, *, delta: float, train_fn: TrainFn | None = None):
    """Objective of a recipe study: every phase's trials, told apart by the `phase` attr.

    Value: sigma (maximise). Constraint `recipe_shortfall` = threshold - accuracy for the
    m = 1 noise search (feasible when <= 0), +1 for baseline and verify runs (not candidates).
    """

    def objective(trial: optuna.Trial) -> float:
        if not is_planned(trial):
            refuse_surplus(trial)
        record = TrialRecord.of(trial)
        phase = record.phase or RECIPE_NOISE_PHASE
        study_record = StudyRecord.of(trial.study)
        state = study_record.recipe or {}
        clip_epsilon = study_record.clip_epsilon
        if phase == RECIPE_NOISE_PHASE:
            write_trial(trial, sampler=spec.sampler)
            config = config_or_fail(trial, lambda: suggest_config(trial, spec, dataset.n_train, delta))
        else:
            write_trial(trial, sampler="fixed")  # the recipe chose this config, not the sampler
            config = DPSGDConfig.from_dict(record.planned_config)

        def extra(config_: DPSGDConfig, steps: int) -> float | None:
            if config_.noise_multiplier == 0 or steps <= 0:
                return None
            return total_epsilon(dataset.n_train, config_, delta, clip_epsilon, steps)[1]

        try:
            result = run_trial(trial, dataset, spec.model, config, delta=delta, phase=phase, prune=True,
                               train_fn=train_fn, extra_epsilon=extra)
        except optuna.TrialPruned:
            trial.set_constraint(RECIPE_CONSTRAINT, 1.0)
            raise
        if phase == RECIPE_NOISE_PHASE:
            threshold = float(state["baseline"]["threshold"])
            trial.set_constraint(RECIPE_CONSTRAINT, threshold - float(result.val_accuracy))
        else:
            trial.set_constraint(RECIPE_CONSTRAINT, 1.0)
        return float(config.noise_multiplier)

    return objective


# ---------------------------------------------------------------------------- orchestration
def _phase_trials(study: optuna.Study, phase: str, states=(TrialState.COMPLETE,)) -> list:
    """The study's trials of `phase` in `states`, with their records."""
    trials = study.get_trials(deepcopy=False, states=states)
    return [(t, record) for t in trials if (record := TrialRecord.of(t)).phase == phase]


def _log_spaced(low: float, high: float, count: int) -> list[float]:
    if count == 1 or low == high:
        return [math.sqrt(low * high)] * count
    return [math.exp(math.log(low) + (math.log(high) - math.log(low)) * (i + 0.5) / count) for i in range(count)]


def _set_state(study: optuna.Study, state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    state = {**state, **changes}
    write_study(study, recipe=state)
    return state


def run_recipe(
    study: optuna.Study,
    spec: SearchSpec,
    dataset: Dataset,
    *,
    train_fn: TrainFn | None = None,
    on_trial_end: Callable[[optuna.Study], None] | None = None,
    deadline: float | None = None,
    log: Callable[[str], None] | None = None,
    rng: np.random.Generator | None = None,
) -> int:
    """Run (or resume) the four steps; returns the number of trials run here. A step already
    recorded in the study's `recipe` state is not run again; a step that cannot go on (every
    baseline run failed, no σ within tolerance, no m meets the target, the deadline) ends the
    run with its reason recorded."""
    steps = _RecipeSteps(study, spec, dataset, train_fn=train_fn, on_trial_end=on_trial_end, deadline=deadline,
                         say=log or (lambda message: None))
    steps.clip_norm(rng)
    if steps.baseline() and steps.noise_search() and steps.scale():
        steps.verify()
    return steps.ran


class _RecipeSteps:
    """The recipe's steps over one study; `state` mirrors the study attribute `recipe`."""

    def __init__(self, study: optuna.Study, spec: SearchSpec, dataset: Dataset, *, train_fn: TrainFn | None,
                 on_trial_end: Callable[[optuna.Study], None] | None, deadline: float | None,
                 say: Callable[[str], None]):
        record = StudyRecord.of(study)
        self.study, self.spec, self.dataset, self.say, self.deadline = study, spec, dataset, say, deadline
        self.delta = float(record.delta)
        self.recipe = spec.recipe
        self.base = spec.base_config()
        self.state: dict[str, Any] = dict(record.recipe or {})
        self.on_trial_end = on_trial_end
        self.objective = make_recipe_objective(spec, dataset, delta=self.delta, train_fn=train_fn)
        self.ran = 0
        write_study(study, n_trials_planned=self.recipe.baseline_trials + spec.n_trials.n + self.recipe.verify_trials)

    def _record(self, **changes: Any) -> None:
        self.state = _set_state(self.study, self.state, **changes)

    def _run_phase(self, phase: str, count: int, configs: list[DPSGDConfig] | None = None) -> list:
        """Queue the phase's trials (once) and run what waits; returns its COMPLETE trials."""
        if not _phase_trials(self.study, phase, states=tuple(TrialState)):
            enqueue_planned(self.study, count, phase=phase,
                            planned_configs=None if configs is None else [c.to_dict() for c in configs])
        self.ran += drain_queue(self.study, self.objective, poll_seconds=max(1.0, self.spec.heartbeat_seconds / 2),
                                on_trial_end=self.on_trial_end, deadline=self.deadline)
        return _phase_trials(self.study, phase)

    @property
    def _clip(self) -> float:
        return float(self.state["clip"]["l2_norm_clip"])

    def clip_norm(self, rng: np.random.Generator | None) -> None:
        """1. C from the gradient-norm profile (privately, on the training data)."""
        if "clip" in self.state:
            return
        clip = select_clip_norm(self.spec, self.dataset, rng=rng)
        self._record(clip=clip.to_dict(), status="clip")
        self.say(f"clip norm C = {clip.l2_norm_clip:.4g} ({clip.source}, ε spent {clip.epsilon:g})")

    def baseline(self) -> bool:
        """2a. The non-private baseline (σ = 0, m = 1, the same C) over log-spaced learning rates."""
        if "baseline" in self.state:
            return True
        recipe, n = self.recipe, self.dataset.n_train
        configs = [
            self.base.replace(l2_norm_clip=self._clip, noise_multiplier=0.0, num_microbatches=1, learning_rate=lr,
                              batch_size=min(recipe.batch_size, n), epochs=recipe.epochs)
            for lr in _log_spaced(*self.spec.ranges.learning_rate, recipe.baseline_trials)
        ]
        done = self._run_phase(RECIPE_BASELINE_PHASE, len(configs), configs)
        if not done:
            return False  # interrupted or every baseline run failed: nothing to compare with
        best, best_record = max(done, key=lambda pair: pair[1].val_accuracy)
        accuracy = float(best_record.val_accuracy)
        self._record(status="baseline", baseline={
            "trial": best.number, "val_accuracy": accuracy, "learning_rate": best_record.config["learning_rate"],
            "tolerance": recipe.tolerance, "threshold": accuracy - recipe.tolerance,
        })
        self.say(f"non-private baseline: val accuracy {accuracy:.4f}; threshold {accuracy - recipe.tolerance:.4f}")
        return True

    def noise_search(self) -> bool:
        """2b. The largest σ at m = 1 whose accuracy stays within tolerance of the baseline."""
        if "noise_search" in self.state:
            return True
        done = self._run_phase(RECIPE_NOISE_PHASE, self.spec.n_trials.n)
        if self.deadline is not None and time.time() >= self.deadline and _waiting(self.study):
            return False
        threshold = self.state["baseline"]["threshold"]
        feasible = [(t, r) for t, r in done if r.val_accuracy is not None and r.val_accuracy >= threshold]
        if not feasible:
            self._record(status="no_feasible_noise", noise_search={
                "feasible_trials": 0,
                "message": (
                    f"no m = 1 trial kept validation accuracy >= {threshold:.4f}; lower "
                    "ranges.noise_multiplier, widen ranges.learning_rate or raise recipe.tolerance"
                ),
            })
            self.say(self.state["noise_search"]["message"])
            return False
        chosen, record = max(feasible, key=lambda pair: (pair[1].config["noise_multiplier"], pair[1].val_accuracy))
        sigma = record.config["noise_multiplier"]
        self._record(status="noise_search", noise_search={
            "trial": chosen.number, "feasible_trials": len(feasible), "noise_multiplier": sigma,
            "learning_rate": record.config["learning_rate"], "val_accuracy": record.val_accuracy,
            "effective_noise": sigma * self._clip,
        })
        self.say(f"largest sigma at m = 1 within tolerance: {sigma:.4g} "
                 f"(trial {chosen.number}, val accuracy {record.val_accuracy:.4f})")
        return True

    def scale(self) -> bool:
        """3. σ and m scaled by one factor until the accountant meets the target ε."""
        if "scaled" not in self.state:
            n = self.dataset.n_train
            scaled = scale_noise(
                float(self.state["noise_search"]["noise_multiplier"]), self.spec.target_epsilon, n,
                min(self.recipe.batch_size, n), float(self.recipe.epochs), self.delta,
                clip_epsilon=StudyRecord.of(self.study).clip_epsilon,  # this release and those before the search
            )
            self._record(scaled=scaled.to_dict(), status="scaled" if scaled.feasible else "infeasible")
            self.say(scaled.message + ("" if scaled.feasible else "; would work: " + "; ".join(scaled.suggestions)))
        return bool(self.state["scaled"]["feasible"])

    def verify(self) -> None:
        """4. Full runs of the scaled configuration: predicted (m = 1) against actual accuracy."""
        scaled, searched = self.state["scaled"], self.state["noise_search"]
        configs = [
            self.base.replace(
                l2_norm_clip=self._clip, noise_multiplier=float(scaled["noise_multiplier"]),
                num_microbatches=int(scaled["num_microbatches"]), learning_rate=float(searched["learning_rate"]),
                batch_size=int(scaled["batch_size"]), epochs=self.recipe.epochs, seed=self.base.seed + i,
            )
            for i in range(self.recipe.verify_trials)
        ]
        verified = self._run_phase(RECIPE_VERIFY_PHASE, len(configs), configs)
        accuracies = [float(record.val_accuracy) for _, record in verified]
        if not accuracies:
            return
        predicted = float(searched["val_accuracy"])
        mean = statistics.fmean(accuracies)
        self._record(status="verified", verify={
            "trials": [t.number for t, _ in verified],
            "val_accuracies": accuracies,
            "val_accuracy_mean": mean,
            "val_accuracy_std": statistics.pstdev(accuracies) if len(accuracies) > 1 else 0.0,
            "predicted_val_accuracy": predicted,
            "difference": mean - predicted,
            "epsilon_rdp": scaled["epsilon_rdp"],
            "epsilon_total": scaled["epsilon_total"],
        })
        self.say(f"verified: val accuracy {mean:.4f} (predicted at m = 1: {predicted:.4f}); "
                 f"ε = {scaled['epsilon_total']:.4g}")


def _waiting(study: optuna.Study) -> bool:
    return any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))
