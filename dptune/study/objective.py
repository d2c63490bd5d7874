"""One Optuna trial: pick its DP-SGD config, train, and record everything in the study.

Every trial writes its whole story as user attributes while it runs (docs/INTERFACES.md,
"Optuna study format"), so nothing lives only in a worker's memory: the config and planned
ε when it starts, each epoch's metrics as they come, the final ε (RDP and PLD), timings and
device when it ends, and `fail_reason` when it fails (NaN loss, out of memory, ...). A
failed trial is stored as FAIL and the study goes on.

What a trial optimises and how its σ is chosen belong to its search mode
(dptune.study.modes): `make_objective` asks the mode for the config and for the value to
report. The recipe's phased trials have their own objective (dptune.study.recipe), built
from the pieces here: `run_trial`, `config_or_fail`, `is_planned`, `refuse_surplus`.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from typing import Any

import optuna

from dptune import privacy
from dptune.data.dataset import Dataset
from dptune.engine.runtime import device_name, is_out_of_memory
from dptune.errors import DPTuneError
from dptune.privacy.search_cost import epsilon_with_clip_selection
from dptune.spec.config import DPSGDConfig, ModelSpec
from dptune.spec.fairness import FairnessLimit
from dptune.spec.search import SearchSpec
from dptune.study.format import StudyRecord, TrialRecord, json_safe, write_trial
from dptune.study.modes import mode_for

TrainFn = Callable[..., Any]

SEARCH_PHASE = "search"
RECIPE_NOISE_PHASE = "noise_search"
RECIPE_BASELINE_PHASE = "baseline"
RECIPE_VERIFY_PHASE = "verify"
RECIPE_CONSTRAINT = "recipe_shortfall"
SURPLUS_REASON = (
    "not run: every planned trial had already been taken by other workers "
    "(a surplus trial created by a race between workers; it trained nothing)"
)


class TrialFailed(Exception):
    """Raised by the objective after recording `fail_reason`; Optuna stores the trial as FAIL
    and, because the study catches it, goes on with the next trial."""


# ---------------------------------------------------------------------------- clip selection
def total_with_clip(n_train: int, delta: float, clip_epsilon: float):
    """extra_epsilon for run_trial: (config, steps) -> RDP ε of the run composed with the
    clip selection (None when sigma = 0)."""

    def extra(config: DPSGDConfig, steps: int) -> float | None:
        if config.noise_multiplier == 0 or steps <= 0:
            return None
        return epsilon_with_clip_selection(privacy.DPSGDRun.of_config(config, n_train, steps), clip_epsilon, delta)[0]

    return extra


# ---------------------------------------------------------------------------- suggestions
def suggest_config(trial: optuna.Trial, spec: SearchSpec, n_train: int, delta: float,
                   clip_epsilon: float = 0.0) -> DPSGDConfig:
    """The DP-SGD config of a search trial, as the spec's mode suggests it
    (dptune.study.modes.SearchMode.suggest_config)."""
    return mode_for(spec.mode).suggest_config(trial, spec, n_train, delta, clip_epsilon)


# ---------------------------------------------------------------------------- recording
def planned_epsilon(config: DPSGDConfig, n_train: int, delta: float) -> float | None:
    """RDP ε of the full run (None when sigma = 0: no privacy)."""
    if config.noise_multiplier == 0:
        return None
    return privacy.compute_epsilon(
        n_train, config.batch_size, config.noise_multiplier, epochs=config.epochs, delta=delta,
        microbatched=not config.per_example, pld=False,
    ).epsilon_rdp


def spent_epsilon(config: DPSGDConfig, n_train: int, delta: float, steps: int) -> tuple[float | None, float | None, float | None]:
    """(RDP ε, its order, PLD ε) after `steps` steps (None when sigma = 0 or no step)."""
    if config.noise_multiplier == 0 or steps <= 0:
        return None, None, None
    report = privacy.compute_epsilon(
        n_train, config.batch_size, config.noise_multiplier, steps=steps, delta=delta,
        microbatched=not config.per_example,
    )
    return report.epsilon_rdp, report.rdp_order, report.epsilon_pld


def _device() -> str:
    try:
        return device_name()
    except Exception:  # noqa: BLE001 - a device query must never hide the trial's own error
        return "unknown"


def fail_reason_of(error: BaseException) -> str:
    """A one-paragraph reason a user can act on."""
    if is_out_of_memory(error):
        return f"out of memory: {str(error).splitlines()[0][:300]}; lower batch_size or use a smaller model"
    if isinstance(error, DPTuneError):
        return str(error)
    last = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(error).__name__}: {str(error)[:500]}{where}"


class TrialRecorder:
    """Writes one trial's user attributes (the study format of docs/INTERFACES.md)."""

    def __init__(self, trial: optuna.Trial, config: DPSGDConfig, model_spec: ModelSpec, n_train: int, delta: float,
                 phase: str, extra_epsilon: Callable[[DPSGDConfig, int], float | None] | None = None):
        self.trial, self.config, self.n_train, self.delta = trial, config, n_train, delta
        self.history: list[dict[str, Any]] = []
        self.extra_epsilon = extra_epsilon
        write_trial(
            trial, phase=phase, worker=f"{socket.gethostname()}:{os.getpid()}", config=config.to_dict(),
            model_spec=model_spec.to_dict(), total_epochs=config.epochs,
            epsilon_planned=planned_epsilon(config, n_train, delta), delta=delta, sampling=config.sampling,
            history=[], epochs_done=0, steps_planned=privacy.num_steps(n_train, config.batch_size, config.epochs),
        )

    def epoch(self, metrics: Any) -> None:
        self.history.append({k: json_safe(v) for k, v in metrics.to_dict().items()})
        write_trial(self.trial, history=self.history, epochs_done=int(metrics.epoch), steps_done=int(metrics.step))

    def _spent(self, steps: int) -> None:
        rdp, order, pld = spent_epsilon(self.config, self.n_train, self.delta, steps)
        total = rdp if self.extra_epsilon is None else self.extra_epsilon(self.config, steps)
        write_trial(self.trial, epsilon_rdp=rdp, epsilon_pld=pld, rdp_order=order, epsilon_total=total)

    def finished(self, result: Any) -> None:
        private = self.config.noise_multiplier != 0
        write_trial(
            self.trial,
            epsilon_rdp=result.epsilon_rdp if private else None,
            epsilon_pld=result.epsilon_pld if private else None,
            rdp_order=result.rdp_order if private else None,
            val_accuracy=result.val_accuracy, val_loss=result.val_loss, seconds_per_step=result.seconds_per_step,
            examples_per_second=result.examples_per_second, train_seconds=result.train_seconds,
            device=result.device, gradient_path=result.gradient_path, steps_done=result.steps,
            stopped_early=result.stopped_early,
        )
        rdp = result.epsilon_rdp if private else None
        total = rdp if self.extra_epsilon is None else self.extra_epsilon(self.config, result.steps)
        write_trial(self.trial, epsilon_total=total)

    def evaluated(self, evaluate: Callable[[], Any]) -> None:
        """Record the trained model's fairness and membership-inference reports
        (dptune.engine.evaluate.TrialEvaluation, from `evaluate()`); they read the validation
        rows, which ε does not protect. An error there is recorded, not raised: the trial trained."""
        try:
            evaluation = evaluate()
        except Exception as error:  # noqa: BLE001 - a finished trial must not fail on its evaluation
            write_trial(self.trial, evaluation_error=fail_reason_of(error))
            return
        write_trial(self.trial, fairness=evaluation.fairness.to_dict(), membership=evaluation.membership.to_dict(),
                    evaluation_seconds=evaluation.seconds)

    def pruned(self, reason: str) -> None:
        write_trial(self.trial, prune_reason=reason)
        self._spent(self.history[-1]["step"] if self.history else 0)
        self._last_epoch_summary()

    def failed(self, reason: str) -> None:
        write_trial(self.trial, fail_reason=reason, device=_device())
        # the steps after the last recorded epoch are unknown: charge the whole planned run
        self._spent(privacy.num_steps(self.n_train, self.config.batch_size, self.config.epochs))

    def _last_epoch_summary(self) -> None:
        if not self.history:
            return
        last = self.history[-1]
        write_trial(
            self.trial, val_accuracy=last.get("val_accuracy"), val_loss=last.get("val_loss"),
            seconds_per_step=last.get("seconds_per_step"), examples_per_second=last.get("examples_per_second"),
            train_seconds=last.get("elapsed_seconds"), device=_device(),
        )


def run_trial(
    trial: optuna.Trial,
    dataset: Dataset,
    model_spec: ModelSpec,
    config: DPSGDConfig,
    *,
    delta: float,
    phase: str,
    prune: bool,
    train_fn: TrainFn | None = None,
    extra_epsilon: Callable[[DPSGDConfig, int], float | None] | None = None,
    evaluate_fn: Callable[..., Any] | None = None,
):
    """Train one config inside a trial, recording as it goes. Returns the TrainResult.

    prune: report each epoch's validation accuracy to Optuna and stop when its pruner says so
    (single-objective studies only). Raises optuna.TrialPruned or TrialFailed (recorded).
    evaluate_fn(model, dataset, delta=...): the finished model's fairness and membership
    inference (default with the engine's trainer: dptune.engine.evaluate.evaluate_trial; none
    with another train_fn, whose result need not hold a model).
    """
    if train_fn is None:
        from dptune.engine.dpsgd import train as train_fn
        from dptune.engine.evaluate import evaluate_trial as evaluate_fn
    try:
        recorder = TrialRecorder(trial, config, model_spec, dataset.n_train, delta, phase, extra_epsilon)
    except DPTuneError as error:  # e.g. a batch larger than the data
        write_trial(trial, fail_reason=str(error))
        raise TrialFailed(str(error)) from error

    def on_epoch_end(metrics: Any) -> None:
        recorder.epoch(metrics)
        if prune:
            trial.report(float(metrics.val_accuracy), int(metrics.epoch))
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned after epoch {metrics.epoch}: validation accuracy {metrics.val_accuracy:.4f} "
                    "is below what the pruner keeps"
                )

    try:
        result = train_fn(dataset, model_spec, config, delta=delta, on_epoch_end=on_epoch_end)
    except optuna.TrialPruned as pruned:
        recorder.pruned(str(pruned))
        raise
    except Exception as error:  # noqa: BLE001 - every failure is recorded, the study goes on
        reason = fail_reason_of(error)
        recorder.failed(reason)
        raise TrialFailed(reason) from error
    recorder.finished(result)
    if evaluate_fn is not None:
        recorder.evaluated(lambda: evaluate_fn(result.model, dataset, delta=delta))
    return result


def is_planned(trial: optuna.Trial) -> bool:
    """Planned trials were enqueued with a `phase` (a retry copies it); a trial Optuna created
    because the queue ran dry between a worker's look and its ask has none."""
    return TrialRecord.of(trial).is_planned


def refuse_surplus(trial: optuna.Trial) -> None:
    write_trial(trial, fail_reason=SURPLUS_REASON, surplus=True)
    raise TrialFailed(SURPLUS_REASON)


def config_or_fail(trial: optuna.Trial, make: Callable[[], DPSGDConfig]) -> DPSGDConfig:
    """The trial's config; a user-level error while choosing it (e.g. a target ε that no
    sigma reaches at the suggested batch size and epochs) fails this trial, not the study."""
    try:
        return make()
    except DPTuneError as error:
        reason = f"no valid configuration: {error}"
    except Exception as error:  # a bug must fail this trial with its reason, not kill the worker
        reason = f"internal error while choosing the configuration: {type(error).__name__}: {error}"
    write_trial(trial, fail_reason=reason, device=_device())
    raise TrialFailed(reason)


def make_objective(spec: SearchSpec, dataset: Dataset, *, delta: float, train_fn: TrainFn | None = None):
    """The Optuna objective of a study whose trials are all alike (a mode that is not `phased`:
    budgeted, pareto; dptune.study.search picks the recipe's own for a recipe study).

    Each trial: refuse it if it is a surplus one, take its config from the mode (a user-level
    error fails the trial), train it (reporting to the pruner when the mode prunes), hold it
    to the spec's fairness_limit (check_fairness_limit), and return the mode's objective value.
    Raises TrialFailed / optuna.TrialPruned (recorded)."""
    mode = mode_for(spec.mode)

    def objective(trial: optuna.Trial):
        if not is_planned(trial):
            refuse_surplus(trial)
        write_trial(trial, sampler=spec.sampler)
        clip_epsilon = StudyRecord.of(trial.study).clip_epsilon
        config = config_or_fail(trial, lambda: mode.suggest_config(trial, spec, dataset.n_train, delta, clip_epsilon))
        result = run_trial(
            trial, dataset, spec.model, config, delta=delta, phase=SEARCH_PHASE, prune=mode.prunes,
            train_fn=train_fn,
            extra_epsilon=total_with_clip(dataset.n_train, delta, clip_epsilon) if clip_epsilon > 0 else None,
        )
        if spec.fairness_limit is not None:
            check_fairness_limit(trial, spec.fairness_limit)
        return mode.objective_value(result, trial)

    return objective


FAIRNESS_CONSTRAINT = "fairness_limit"
"""The Optuna constraint of a search with a fairness_limit (feasible when <= 0)."""


def check_fairness_limit(trial: optuna.Trial, limit: FairnessLimit) -> None:
    """Record how far the finished trial's fairness (measured on the validation rows) is over
    `limit` and tell the sampler (constraint FAIRNESS_CONSTRAINT). A trial whose metric could
    not be measured (no fairness report, or no group where it is defined) counts as over the
    limit: it cannot be shown to meet it."""
    violation = limit.violation(TrialRecord.of(trial).fairness)
    write_trial(trial, fairness_violation=violation, within_fairness_limit=violation is not None and violation <= 0)
    trial.set_constraint(FAIRNESS_CONSTRAINT, 1.0 if violation is None else violation)
