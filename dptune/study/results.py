"""Reading a dptune study: one row per trial, the best trial within a budget, the search cost.

Pure readers of the Optuna storage (the UI polls these); nothing here trains.

Privacy numbers, and what they mean (never mistake the first for the last):
- a trial's `epsilon` (column) is the RDP ε of that one training run at the study's δ;
  `epsilon_total` adds the private clip-norm selection when the recipe made one;
- `search_cost(study)` is what the search as a whole spent: the composition over every
  trial that touched the data, and, when the number of trials was random, the
  Papernot-Steinke ε of releasing only the selected trial.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from dptune.privacy.run import DPSGDRun, num_steps
from dptune.privacy.search_cost import search_cost_naive_composition, search_cost_repeat_and_select
from dptune.spec.ranges import PER_EXAMPLE
from dptune.spec.search import SearchSpec
from dptune.study.format import StudyRecord, TrialRecord, write_study
from dptune.study.modes import _trials_key, calibrated_noise_multiplier, mode_for

FRAME_COLUMNS = [
    "number", "state", "val_accuracy", "epsilon", "epsilon_pld", "l2_norm_clip", "noise_multiplier",
    "num_microbatches", "learning_rate", "batch_size", "epochs", "seconds_per_step", "examples_per_second",
    "train_seconds", "device", "fail_reason", "history", "epochs_done", "phase",
    # beyond the contract's list:
    "epsilon_total", "epsilon_planned", "val_loss", "rdp_order", "delta", "optimizer", "sampling", "seed",
    "gradient_path", "prune_reason", "retry_of", "values", "datetime_start", "datetime_complete", "sampler",
    "worker", "within_fairness_limit", "fairness_violation",
]
KILLED_REASON = "stopped without a result: its worker was killed or lost (no heartbeat for the grace period)"
EPSILON_SLACK = 1e-9


# ---------------------------------------------------------------------------- trials
def _retried_numbers(trials: list[FrozenTrial]) -> dict[int, int]:
    """{number of a failed trial: number of the trial that retried it}."""
    out: dict[int, int] = {}
    for trial in trials:
        for number in TrialRecord.of(trial).retry_history:
            out.setdefault(number, trial.number)
    return out


def is_surplus(trial: FrozenTrial) -> bool:
    return TrialRecord.of(trial).surplus


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that are done and count towards the plan: COMPLETE, PRUNED and FAIL, without
    surplus trials (never trained) and without killed trials that were retried."""
    trials = study.get_trials(deepcopy=False)
    retried = _retried_numbers(trials)
    return [
        t for t in trials
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        and not is_surplus(t) and t.number not in retried
    ]


def fail_reason(trial: FrozenTrial, retried_by: int | None = None, gave_up: str | None = None) -> str | None:
    """Why a FAIL trial failed; `gave_up`: why it was not queued again (StudyRecord.gave_up)."""
    if trial.state != TrialState.FAIL:
        return None
    reason = TrialRecord.of(trial).fail_reason or KILLED_REASON
    if retried_by is not None:
        reason += f"; retried as trial {retried_by}"
    if gave_up is not None:
        reason += f"; {gave_up}"
    return reason


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial (every state), columns FRAME_COLUMNS; values None where unknown.

    epsilon: RDP ε of the training run (for a running trial: after its last epoch);
    epsilon_total: with the clip-norm selection (recipe); history: list of per-epoch dicts.
    """
    trials = study.get_trials(deepcopy=False)
    retried = _retried_numbers(trials)
    gave_up = StudyRecord.of(study).gave_up
    rows = []
    for trial in trials:
        record = TrialRecord.of(trial)
        config = record.config or {}
        history = record.history
        epsilon = record.epsilon_rdp
        if epsilon is None and trial.state == TrialState.RUNNING and history:
            epsilon = history[-1].get("epsilon")
        rows.append({
            "number": trial.number,
            "state": trial.state.name,
            "val_accuracy": record.accuracy,
            "epsilon": epsilon,
            "epsilon_pld": record.epsilon_pld,
            "l2_norm_clip": config.get("l2_norm_clip"),
            "noise_multiplier": config.get("noise_multiplier"),
            "num_microbatches": config.get("num_microbatches"),
            "learning_rate": config.get("learning_rate"),
            "batch_size": config.get("batch_size"),
            "epochs": config.get("epochs"),
            "seconds_per_step": record.seconds_per_step,
            "examples_per_second": record.examples_per_second,
            "train_seconds": record.train_seconds,
            "device": record.device,
            "fail_reason": fail_reason(trial, retried.get(trial.number), gave_up.get(trial.number)),
            "history": history,
            "epochs_done": record.epochs_done if record.epochs_done is not None else len(history),
            "phase": record.phase,
            "epsilon_total": record.epsilon_total if record.epsilon_total is not None else epsilon,
            "epsilon_planned": record.epsilon_planned,
            "val_loss": record.val_loss,
            "rdp_order": record.rdp_order,
            "delta": record.delta,
            "optimizer": config.get("optimizer"),
            "sampling": config.get("sampling"),
            "seed": config.get("seed"),
            "gradient_path": record.gradient_path,
            "prune_reason": record.prune_reason,
            "retry_of": record.retry_of,
            "values": list(trial.values) if trial.values is not None else None,
            "datetime_start": trial.datetime_start,
            "datetime_complete": trial.datetime_complete,
            "sampler": record.sampler,
            "worker": record.worker,
            "within_fairness_limit": record.within_fairness_limit,
            "fairness_violation": record.fairness_violation,
        })
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def best_trial_within(study: optuna.Study, target_epsilon: float | None = None) -> FrozenTrial | None:
    """The COMPLETE trial with the highest validation accuracy whose ε (with the clip-norm
    selection, when there was one) is at most `target_epsilon` (default: the study's) and that
    is not over the search's fairness_limit. Ties go to the smaller ε. None when no trial
    qualifies."""
    target = StudyRecord.of(study).target_epsilon if target_epsilon is None else target_epsilon
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    records = {number: TrialRecord.of(t) for number, t in trials.items()}
    candidates = ((number, r.val_accuracy, r.epsilon) for number, r in records.items()
                  if r.within_fairness_limit is not False)
    number = best_within(candidates, target)
    return None if number is None else trials[number]


def best_within(candidates: Iterable[tuple[int, float | None, float | None]], target_epsilon: float | None) -> int | None:
    """The one rule "best trial within the budget" (the CLI, the export and every page use it):
    of (trial number, validation accuracy, total ε) triples of COMPLETE trials, the number of
    the most accurate one whose ε is at most `target_epsilon` (any ε when None); a trial
    without an accuracy or an ε never qualifies. Ties go to the smaller ε, then the lower
    number. None when none qualifies."""
    limit = math.inf if target_epsilon is None else float(target_epsilon) * (1 + EPSILON_SLACK)
    qualifying = [
        (-float(accuracy), float(epsilon), int(number)) for number, accuracy, epsilon in candidates
        if accuracy is not None and epsilon is not None and math.isfinite(float(accuracy)) and float(epsilon) <= limit
    ]
    return min(qualifying)[2] if qualifying else None


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """Optuna's Pareto front (pareto mode): no other trial is at least as accurate, as
    private and as fast and better in one of them."""
    if len(study.directions) == 1:
        return []
    return list(study.best_trials)


# ---------------------------------------------------------------------------- search cost
def _run_of(trial: FrozenTrial, n_train: int) -> DPSGDRun | None:
    """What a trial spent: completed/pruned -> the steps it ran; failed, killed or still
    running -> its whole planned run (what happened after its last epoch is unknown)."""
    record = TrialRecord.of(trial)
    config = record.config
    if not config or record.surplus:
        return None
    planned = int(record.steps_planned or num_steps(n_train, config["batch_size"], config["epochs"]))
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        steps = int(record.steps_done or 0)
        if not steps and record.history:
            steps = int(record.history[-1]["step"])
    else:
        steps = planned
    return DPSGDRun(
        n_train=n_train, batch_size=int(config["batch_size"]), noise_multiplier=float(config["noise_multiplier"]),
        steps=steps, microbatched=int(config["num_microbatches"]) < int(config["batch_size"]),
    )


def _candidate_runs(spec: SearchSpec, n_train: int, delta: float, clip_epsilon: float = 0.0) -> list[DPSGDRun]:
    """Every privacy curve a trial of a budgeted search with fixed B and epochs can have:
    one per microbatch choice (per-example or microbatched, each with its calibrated sigma)."""
    batch_size = int(min(spec.ranges.batch_size[0], n_train))
    epochs = float(spec.ranges.epochs[0])
    steps = num_steps(n_train, batch_size, epochs)
    runs = {}
    for choice in spec.ranges.num_microbatches:
        m = batch_size if choice == PER_EXAMPLE else min(int(choice), batch_size)
        microbatched = m < batch_size
        sigma = calibrated_noise_multiplier(
            spec.target_epsilon, n_train, batch_size, epochs, delta, microbatched, spec.epsilon_includes_search_cost,
            tuple(sorted(_trials_key(spec).items())) if spec.epsilon_includes_search_cost else None,
            float(clip_epsilon),
        )
        runs[microbatched] = DPSGDRun(n_train, batch_size, sigma, steps, microbatched)
    return list(runs.values())


def _json_epsilon(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def search_cost(study: optuna.Study) -> dict[str, Any]:
    """The privacy cost of the search so far, beside the per-trial ε.

    Keys: per_trial_epsilon_max (largest trial ε, with clip selection), per_trial_target,
    clip_selection_epsilon, naive_composition_epsilon (releasing every trial; None when
    infinite, e.g. a non-private baseline), naive_composition_finite, repeat_and_select_epsilon
    (releasing only the best trial, random number of trials; None when not applicable),
    selected_release_epsilon (the smaller bound on releasing the selected trial),
    n_trials_planned, n_trials_charged, n_trials_running, trials_distribution, delta, note.
    """
    study_record = StudyRecord.of(study)
    spec = SearchSpec.from_dict(study_record.search_spec)
    n_train = study_record.n_train
    delta = float(study_record.delta)
    trials = study.get_trials(deepcopy=False)
    retried = _retried_numbers(trials)
    runs, per_trial, running = [], [], 0
    for trial in trials:
        if trial.state == TrialState.WAITING:
            continue
        run = _run_of(trial, n_train)
        if run is None:
            continue
        running += trial.state == TrialState.RUNNING
        runs.append(run)
        if trial.state == TrialState.COMPLETE:
            total = TrialRecord.of(trial).epsilon
            per_trial.append(math.inf if total is None else total)
    clip_epsilon = study_record.clip_epsilon
    naive = search_cost_naive_composition(runs, delta=delta, clip_epsilon=clip_epsilon).epsilon
    notes = []
    repeat = None
    if spec.n_trials.random and mode_for(spec.mode).bounds_search_cost:
        repeat = search_cost_repeat_and_select(
            _candidate_runs(spec, n_train, delta, clip_epsilon), delta=delta, distribution=spec.n_trials.distribution,
            mean_trials=spec.n_trials.mean, eta=spec.n_trials.shape, clip_epsilon=clip_epsilon,
        ).epsilon
        notes.append(
            f"the number of trials was drawn from a {spec.n_trials.distribution.replace('_', ' ')} distribution "
            f"(mean {spec.n_trials.mean:g}); releasing only the selected trial costs ε = {repeat:.3g} "
            "(Papernot & Steinke 2022, dp_accounting RepeatAndSelectDpEvent)"
        )
    else:
        notes.append("the number of trials was fixed: releasing the selected trial is charged the composition "
                     "over every trial that ran")
    if not math.isfinite(naive):
        notes.append("the composition is infinite: some trials trained without noise (sigma = 0, e.g. the "
                     "recipe's non-private baseline) - tune on public or proxy data if the search must be private")
    if retried:
        notes.append(f"{len(retried)} killed trial(s) are charged their whole planned run")
    if running:
        notes.append(f"{running} running trial(s) are charged their whole planned run")
    selected = min(naive, repeat) if repeat is not None else naive
    return {
        "per_trial_epsilon_max": _json_epsilon(max(per_trial)) if per_trial else None,
        "per_trial_target": spec.target_epsilon,
        "clip_selection_epsilon": clip_epsilon,
        "naive_composition_epsilon": _json_epsilon(naive),
        "naive_composition_finite": math.isfinite(naive),
        "repeat_and_select_epsilon": _json_epsilon(repeat),
        "selected_release_epsilon": _json_epsilon(selected),
        "n_trials_planned": study_record.n_trials_planned,
        "n_trials_charged": len(runs),
        "n_trials_running": running,
        "trials_distribution": spec.n_trials.to_dict(),
        "epsilon_includes_search_cost": spec.epsilon_includes_search_cost,
        "delta": delta,
        "note": "; ".join(notes),
    }


def update_search_cost(study: optuna.Study) -> dict[str, Any]:
    """Recompute `search_cost` and store it as a study attribute (the UI reads it)."""
    cost = search_cost(study)
    write_study(study, search_cost=cost)
    return cost

