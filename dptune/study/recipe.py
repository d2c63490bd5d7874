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
3. Scale sigma and m by the same integer factor k (effective noise sigma*C/m unchanged)
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
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from dptune import privacy
from dptune.data import resolve_dataset
from dptune.data.dataset import Dataset
from dptune.engine.profile import gradient_norm_profile
from dptune.errors import PrivacyError
from dptune.privacy.clip_quantile import ClipSelection, private_clip_norm, public_clip_norm
from dptune.privacy.run import DPSGDRun
from dptune.privacy.search_cost import calibrate_with_clip_selection, epsilon_with_clip_selection
from dptune.spec.config import DPSGDConfig
from dptune.spec.search import SearchSpec
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
    study_clip_epsilon,
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


# ---------------------------------------------------------------------------- 3. scaling
@dataclass(frozen=True)
class ScaledConfig:
    """The m = 1 noise scaled by k: sigma = k*sigma1, m = k (sigma/m = sigma1 unchanged).

    feasible False: even m = B misses the target; `message` and `suggestions` say what would.
    epsilon_rdp: the training run's RDP ε; epsilon_total: with the clip-norm selection.
    """

    feasible: bool
    factor: int | None
    noise_multiplier: float | None
    num_microbatches: int | None
    batch_size: int
    epochs: float
    sigma_m1: float
    epsilon_rdp: float | None = None
    epsilon_total: float | None = None
    message: str = ""
    suggestions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _required_sigma(target: float, n: int, batch_size: int, epochs: float, delta: float, microbatched: bool,
                    clip_epsilon: float) -> float | None:
    """The least sigma whose run (microbatched or not) with the clip selection meets `target`:
    calibrated; MIN_NOISE_MULTIPLIER when even that little noise meets it; None when
    unreachable."""
    try:
        return calibrate_with_clip_selection(
            target, n, batch_size, epochs=epochs, delta=delta, microbatched=microbatched, clip_epsilon=clip_epsilon
        )
    except PrivacyError:  # unreachable, or so loose a target that even the least noise meets it
        least = DPSGDRun.planned(n, batch_size, privacy.MIN_NOISE_MULTIPLIER, epochs=epochs, microbatched=microbatched)
        meets = epsilon_with_clip_selection(least, clip_epsilon, delta)[0] <= target
        return least.noise_multiplier if meets else None


def total_epsilon(n: int, config: DPSGDConfig, delta: float, clip_epsilon: float,
                  steps: int | None = None) -> tuple[float, float]:
    """(training RDP ε, RDP ε with the clip selection) of a config (steps: default the full run)."""
    run = DPSGDRun.of_config(config, n, steps)
    training = privacy.privacy_report(run, delta, pld=False).epsilon_rdp
    return training, (epsilon_with_clip_selection(run, clip_epsilon, delta)[0] if clip_epsilon > 0 else training)


def scale_noise(
    sigma_m1: float, target_epsilon: float, n: int, batch_size: int, epochs: float, delta: float,
    *, clip_epsilon: float = 0.0,
) -> ScaledConfig:
    """The smallest integer k with sigma = k*sigma1, m = k meeting the target (m <= B).

    m < B is charged sigma/2, so the smallest k is ceil(sigma_req(microbatched)/sigma1) if
    that is below B; otherwise m = B (charged sigma = B*sigma1) if that is enough.
    """
    base = dict(batch_size=batch_size, epochs=epochs, sigma_m1=sigma_m1)
    needed_micro = _required_sigma(target_epsilon, n, batch_size, epochs, delta, True, clip_epsilon)
    factor = None
    if needed_micro is not None:
        k = max(1, math.ceil(needed_micro / sigma_m1 * (1 - 1e-12)))
        if k < batch_size:
            factor = k
    if factor is None:
        needed_per_example = _required_sigma(target_epsilon, n, batch_size, epochs, delta, False, clip_epsilon)
        if needed_per_example is not None and batch_size * sigma_m1 >= needed_per_example:
            factor = batch_size
    if factor is None:
        return ScaledConfig(
            feasible=False, factor=None, noise_multiplier=None, num_microbatches=None,
            message=(
                f"even per-example clipping (m = B = {batch_size}, sigma = B*sigma1 = {batch_size * sigma_m1:.4g}) "
                f"misses ε = {target_epsilon:g} at {epochs:g} epochs"
            ),
            suggestions=_suggestions(sigma_m1, target_epsilon, n, batch_size, epochs, delta, clip_epsilon),
            **base,
        )
    sigma = factor * sigma_m1
    config = DPSGDConfig(noise_multiplier=sigma, num_microbatches=factor, batch_size=batch_size, epochs=epochs)
    training, total = total_epsilon(n, config, delta, clip_epsilon)
    return ScaledConfig(
        feasible=True, factor=factor, noise_multiplier=sigma, num_microbatches=factor,
        epsilon_rdp=training, epsilon_total=total,
        message=(
            f"sigma and m scaled by k = {factor}: sigma = {sigma:.4g}, m = {factor}"
            f"{' (per-example)' if factor == batch_size else ''}; ε = {total:.4g} <= {target_epsilon:g}"
        ),
        **base,
    )


def _per_example_feasible(sigma_m1: float, target: float, n: int, batch_size: int, epochs: float, delta: float,
                          clip_epsilon: float) -> bool:
    """Does m = B (per-example) with sigma = B*sigma1 meet the target?"""
    run = DPSGDRun.planned(n, batch_size, batch_size * sigma_m1, epochs=epochs)
    return epsilon_with_clip_selection(run, clip_epsilon, delta)[0] <= target


def _suggestions(sigma_m1: float, target: float, n: int, batch_size: int, epochs: float, delta: float,
                 clip_epsilon: float) -> list[str]:
    """What would meet the target with per-example clipping: a larger batch, fewer epochs."""
    out = []
    b = batch_size * 2
    while b <= n:
        if _per_example_feasible(sigma_m1, target, n, b, epochs, delta, clip_epsilon):
            out.append(f"batch_size {b} (sigma = {b * sigma_m1:.4g}, m = {b}) at {epochs:g} epochs")
            break
        b *= 2
    e = epochs
    while e > 0.25:
        e = e - 1 if e > 1 else e / 2
        if _per_example_feasible(sigma_m1, target, n, batch_size, e, delta, clip_epsilon):
            out.append(f"epochs {e:g} at batch_size {batch_size} (sigma = {batch_size * sigma_m1:.4g}, m = {batch_size})")
            break
    if not out:
        out.append("a larger target ε, more training examples, or a larger tolerance (a smaller sigma1 forces more noise)")
    return out


# ---------------------------------------------------------------------------- objective
def make_recipe_objective(spec: SearchSpec, dataset: Dataset, *, delta: float, train_fn: TrainFn | None = None):
    """Objective of a recipe study: every phase's trials, told apart by the `phase` attr.

    Value: sigma (maximise). Constraint `recipe_shortfall` = threshold - accuracy for the
    m = 1 noise search (feasible when <= 0), +1 for baseline and verify runs (not candidates).
    """

    def objective(trial: optuna.Trial) -> float:
        if not is_planned(trial):
            refuse_surplus(trial)
        phase = trial.user_attrs.get("phase", RECIPE_NOISE_PHASE)
        state = trial.study.user_attrs.get("recipe") or {}
        clip_epsilon = study_clip_epsilon(trial.study.user_attrs)
        if phase == RECIPE_NOISE_PHASE:
            trial.set_user_attr("sampler", spec.sampler)
            config = config_or_fail(trial, lambda: suggest_config(trial, spec, dataset.n_train, delta))
        else:
            trial.set_user_attr("sampler", "fixed")  # the recipe chose this config, not the sampler
            config = DPSGDConfig.from_dict(trial.user_attrs["planned_config"])

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
    return [t for t in study.get_trials(deepcopy=False, states=states) if t.user_attrs.get("phase") == phase]


def _log_spaced(low: float, high: float, count: int) -> list[float]:
    if count == 1 or low == high:
        return [math.sqrt(low * high)] * count
    return [math.exp(math.log(low) + (math.log(high) - math.log(low)) * (i + 0.5) / count) for i in range(count)]


def _set_state(study: optuna.Study, state: dict[str, Any], **changes: Any) -> dict[str, Any]:
    state = {**state, **changes}
    study.set_user_attr("recipe", state)
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
    """Run (or resume) the four steps; returns the number of trials run here."""
    say = log or (lambda message: None)
    delta = float(study.user_attrs["delta"])
    recipe = spec.recipe
    base = spec.base_config()
    n = dataset.n_train
    state: dict[str, Any] = dict(study.user_attrs.get("recipe") or {})
    planned = recipe.baseline_trials + spec.n_trials.n + recipe.verify_trials
    study.set_user_attr("n_trials_planned", planned)
    objective = make_recipe_objective(spec, dataset, delta=delta, train_fn=train_fn)
    ran = 0

    def run_phase() -> None:
        nonlocal ran
        ran += drain_queue(study, objective, poll_seconds=max(1.0, spec.heartbeat_seconds / 2),
                           on_trial_end=on_trial_end, deadline=deadline)

    # 1. clip norm
    if "clip" not in state:
        clip = select_clip_norm(spec, dataset, rng=rng)
        state = _set_state(study, state, clip=clip.to_dict(), status="clip")
        say(f"clip norm C = {clip.l2_norm_clip:.4g} ({clip.source}, ε spent {clip.epsilon:g})")
    clip_norm = float(state["clip"]["l2_norm_clip"])
    clip_epsilon = study_clip_epsilon(study.user_attrs)  # this release and those before the search

    # 2a. non-private baseline (sigma = 0, m = 1, same C)
    if "baseline" not in state:
        if not _phase_trials(study, RECIPE_BASELINE_PHASE, states=tuple(TrialState)):
            configs = [
                base.replace(l2_norm_clip=clip_norm, noise_multiplier=0.0, num_microbatches=1, learning_rate=lr,
                             batch_size=min(recipe.batch_size, n), epochs=recipe.epochs)
                for lr in _log_spaced(*spec.ranges.learning_rate, recipe.baseline_trials)
            ]
            enqueue_planned(study, len(configs), phase=RECIPE_BASELINE_PHASE,
                            user_attrs=[{"planned_config": c.to_dict()} for c in configs])
        run_phase()
        done = _phase_trials(study, RECIPE_BASELINE_PHASE)
        if not done:
            return ran  # interrupted or every baseline run failed: nothing to compare with
        best = max(done, key=lambda t: t.user_attrs["val_accuracy"])
        accuracy = float(best.user_attrs["val_accuracy"])
        state = _set_state(study, state, status="baseline", baseline={
            "trial": best.number, "val_accuracy": accuracy, "learning_rate": best.user_attrs["config"]["learning_rate"],
            "tolerance": recipe.tolerance, "threshold": accuracy - recipe.tolerance,
        })
        say(f"non-private baseline: val accuracy {accuracy:.4f}; threshold {accuracy - recipe.tolerance:.4f}")

    # 2b. m = 1 noise search
    if "noise_search" not in state:
        if not _phase_trials(study, RECIPE_NOISE_PHASE, states=tuple(TrialState)):
            enqueue_planned(study, spec.n_trials.n, phase=RECIPE_NOISE_PHASE)
        run_phase()
        if deadline is not None and time.time() >= deadline and _waiting(study):
            return ran
        threshold = state["baseline"]["threshold"]
        feasible = [
            t for t in _phase_trials(study, RECIPE_NOISE_PHASE)
            if t.user_attrs.get("val_accuracy") is not None and t.user_attrs["val_accuracy"] >= threshold
        ]
        if not feasible:
            state = _set_state(study, state, status="no_feasible_noise", noise_search={
                "feasible_trials": 0,
                "message": (
                    f"no m = 1 trial kept validation accuracy >= {threshold:.4f}; lower "
                    "ranges.noise_multiplier, widen ranges.learning_rate or raise recipe.tolerance"
                ),
            })
            say(state["noise_search"]["message"])
            return ran
        chosen = max(feasible, key=lambda t: (t.user_attrs["config"]["noise_multiplier"], t.user_attrs["val_accuracy"]))
        state = _set_state(study, state, status="noise_search", noise_search={
            "trial": chosen.number, "feasible_trials": len(feasible),
            "noise_multiplier": chosen.user_attrs["config"]["noise_multiplier"],
            "learning_rate": chosen.user_attrs["config"]["learning_rate"],
            "val_accuracy": chosen.user_attrs["val_accuracy"],
            "effective_noise": chosen.user_attrs["config"]["noise_multiplier"] * clip_norm,
        })
        say(f"largest sigma at m = 1 within tolerance: {state['noise_search']['noise_multiplier']:.4g} "
            f"(trial {chosen.number}, val accuracy {chosen.user_attrs['val_accuracy']:.4f})")

    # 3. scale sigma and m to the target
    if "scaled" not in state:
        scaled = scale_noise(
            float(state["noise_search"]["noise_multiplier"]), spec.target_epsilon, n, min(recipe.batch_size, n),
            float(recipe.epochs), delta, clip_epsilon=clip_epsilon,
        )
        state = _set_state(study, state, scaled=scaled.to_dict(),
                           status="scaled" if scaled.feasible else "infeasible")
        say(scaled.message + ("" if scaled.feasible else "; would work: " + "; ".join(scaled.suggestions)))
    if not state["scaled"]["feasible"]:
        return ran

    # 4. verify
    scaled = state["scaled"]
    if not _phase_trials(study, RECIPE_VERIFY_PHASE, states=tuple(TrialState)):
        configs = [
            base.replace(
                l2_norm_clip=clip_norm, noise_multiplier=float(scaled["noise_multiplier"]),
                num_microbatches=int(scaled["num_microbatches"]),
                learning_rate=float(state["noise_search"]["learning_rate"]),
                batch_size=int(scaled["batch_size"]), epochs=recipe.epochs, seed=base.seed + i,
            )
            for i in range(recipe.verify_trials)
        ]
        enqueue_planned(study, len(configs), phase=RECIPE_VERIFY_PHASE,
                        user_attrs=[{"planned_config": c.to_dict()} for c in configs])
    run_phase()
    verified = _phase_trials(study, RECIPE_VERIFY_PHASE)
    accuracies = [float(t.user_attrs["val_accuracy"]) for t in verified]
    predicted = float(state["noise_search"]["val_accuracy"])
    if accuracies:
        mean = statistics.fmean(accuracies)
        state = _set_state(study, state, status="verified", verify={
            "trials": [t.number for t in verified],
            "val_accuracies": accuracies,
            "val_accuracy_mean": mean,
            "val_accuracy_std": statistics.pstdev(accuracies) if len(accuracies) > 1 else 0.0,
            "predicted_val_accuracy": predicted,
            "difference": mean - predicted,
            "epsilon_rdp": scaled["epsilon_rdp"],
            "epsilon_total": scaled["epsilon_total"],
        })
        say(f"verified: val accuracy {mean:.4f} (predicted at m = 1: {predicted:.4f}); "
            f"ε = {scaled['epsilon_total']:.4g}")
    return ran


def _waiting(study: optuna.Study) -> bool:
    return any(t.state == TrialState.WAITING for t in study.get_trials(deepcopy=False))
