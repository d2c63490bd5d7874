"""The study format: what dptune records in an Optuna study, as typed records. The one owner
of the attribute names: no other module spells one.

A dptune study is a plain Optuna study (open it with `optuna-dashboard <storage URL>`);
dptune's own data lives in its user attributes, JSON values:

- `StudyRecord`: the study's attributes (mode, the pinned search spec, the dataset, δ, the
  plan, the search cost and the recipe's state, kept current while it runs);
- `TrialRecord`: one trial's attributes (its config, per-epoch history, ε as it trains,
  timings, why it failed or was pruned) plus the retry links Optuna keeps in system attrs.

Read with `StudyRecord.of(study)` / `TrialRecord.of(trial)`; an attribute missing (a study
written by an older dptune, a trial still running) reads as the field's default, so every
existing `studies.db` loads. Write with `write_study(study, field=value, ...)` and
`write_trial(trial, ...)`: the field names are checked against the records, so a misspelt
name fails at once instead of writing an attribute that nobody reads. Nested values
(configs, the search spec, the search cost, the recipe state) stay the JSON dicts of their
owners' `to_dict()` (DPSGDConfig, SearchSpec, ...).

ε values are stored as None when infinite or undefined (σ = 0): Optuna stores JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import optuna

RETRY_OF = "failed_trial"
"""Optuna's system attribute on a retry: the number of the killed trial it repeats."""
RETRY_HISTORY = "retry_history"
"""Optuna's system attribute on a retry: the numbers of every earlier attempt."""
COLLABORATIVE_MODE = "collaborative"
"""StudyRecord.mode of a collaborative (DSSGD) search (dptune.study.collaborative): its trials
are whole collaborative runs, not DP-SGD trials, so it is not one of dptune.study.modes."""
GAVE_UP_PREFIX = "gave_up:"
"""Study attribute `gave_up:<number>`: why trial <number>, lost to faults too often, was not
queued again (one attribute per trial, so that workers never overwrite each other's)."""


def json_safe(value: Any) -> Any:
    """`value` as stored: inf and nan (not JSON) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------- study
@dataclass(frozen=True)
class DatasetRecord:
    """The study's dataset: `name`, its content `fingerprint` (the workspace stores it as
    that), `n_train` (training rows; the N of every ε) and `preprocessing` ({epsilon, delta,
    note}: what preparing it cost; None in studies older than that record)."""

    name: str = ""
    fingerprint: str = ""
    n_train: int = 0
    preprocessing: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DatasetRecord:
        values = values or {}
        return cls(name=str(values.get("name") or ""), fingerprint=str(values.get("fingerprint") or ""),
                   n_train=int(values.get("n_train") or 0), preprocessing=values.get("preprocessing"))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fingerprint": self.fingerprint, "n_train": self.n_train,
                "preprocessing": self.preprocessing}


@dataclass(frozen=True)
class StudyRecord:
    """A dptune study's user attributes.

    mode: "budgeted" | "pareto" | "recipe" (dptune.study.modes.mode_for reads it) or
    COLLABORATIVE_MODE;
    search_spec: the pinned SearchSpec.to_dict() (dataset fingerprint, storage, workspace);
    dataset: DatasetRecord; workspace: the folder holding the dataset, as created;
    target_epsilon: the ε target (None in a pareto study without one); delta: δ of every ε;
    delta_warning: why δ is large for N, if it is; n_trials_planned: trials the plan runs
    (drawn when the number is random; recipe: every phase); n_trials_distribution: how that
    number was drawn (NTrials.to_dict()); epsilon_includes_search_cost: whether budgets
    include the search's own cost; created_at: ISO time; search_cost: the search's privacy
    cost, kept current after every trial (dptune.study.results.search_cost); recipe: the
    recipe's state (clip, baseline, noise_search, scaled, verify); ui_clip_selection: the
    dashboard's clip-norm release in studies made before the spec recorded it; gave_up:
    {trial number: why it was not queued again} (dptune.study.storage's retry limit), written
    with `record_gave_up`; collaborative: a collaborative search's shards, baselines and
    composed charge (dptune.study.collaborative.study_summary)."""

    mode: str | None = None
    search_spec: dict[str, Any] = field(default_factory=dict)
    dataset: DatasetRecord = field(default_factory=DatasetRecord)
    workspace: str | None = None
    target_epsilon: float | None = None
    delta: float | None = None
    delta_warning: str | None = None
    n_trials_planned: int = 0
    n_trials_distribution: dict[str, Any] | None = None
    epsilon_includes_search_cost: bool = False
    created_at: str | None = None
    search_cost: dict[str, Any] | None = None
    recipe: dict[str, Any] | None = None
    ui_clip_selection: dict[str, Any] | None = None
    gave_up: dict[int, str] = field(default_factory=dict)
    collaborative: dict[str, Any] | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        """The record of `study` (a live or loaded study; read once: a snapshot)."""
        return cls.from_attrs(study.user_attrs)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StudyRecord:
        """The record of a study's user attributes; missing ones read as the defaults."""
        values = {f.name: attrs[f.name] for f in fields(cls) if attrs.get(f.name) is not None}
        values["dataset"] = DatasetRecord.from_dict(attrs.get("dataset"))
        values["gave_up"] = {
            int(key[len(GAVE_UP_PREFIX):]): str(value) for key, value in attrs.items()
            if key.startswith(GAVE_UP_PREFIX) and key[len(GAVE_UP_PREFIX):].isdigit()
        }
        if "n_trials_planned" in values:
            values["n_trials_planned"] = int(values["n_trials_planned"])
        return cls(**values)

    @property
    def is_collaborative(self) -> bool:
        """Whether the study is a collaborative search (its trials are DSSGD runs)."""
        return self.mode == COLLABORATIVE_MODE

    @property
    def is_dptune(self) -> bool:
        """Whether dptune created the study (it pinned a search spec)."""
        return bool(self.search_spec)

    @property
    def n_train(self) -> int:
        return self.dataset.n_train

    @property
    def clip_epsilon(self) -> float:
        """Total pure ε of every clip-norm histogram released on the study's dataset, composed
        into every trial: the recipe's own release plus what was spent before the search (the
        spec's `clip_selection_epsilon`; studies made before it was recorded there: the
        dashboard's `ui_clip_selection`). A histogram once shown stays spent, whichever C is used.

        Charging k releases of ε_1..ε_k as one Laplace release of Σε_i is an upper bound at every
        RDP order: the RDP of the Laplace mechanism, log(a·e^{(α−1)ε} + b·e^{−αε})/(α−1), is
        convex in ε and 0 at ε = 0, hence superadditive."""
        recipe = float(((self.recipe or {}).get("clip") or {}).get("epsilon") or 0.0)
        if self.search_spec.get("clip_selection_epsilon"):
            return recipe + float(self.search_spec["clip_selection_epsilon"])
        ui = self.ui_clip_selection or {}
        return recipe + float(ui.get("epsilon_spent") or ui.get("epsilon") or 0.0)


def write_study(study: optuna.Study, **values: Any) -> None:
    """Set study attributes by StudyRecord field name (a DatasetRecord is stored as its dict)."""
    _check_names(StudyRecord, values, written_elsewhere={"gave_up"})
    for name, value in values.items():
        study.set_user_attr(name, value.to_dict() if isinstance(value, DatasetRecord) else value)


# ---------------------------------------------------------------------------- trial
@dataclass(frozen=True)
class TrialRecord:
    """One trial's user attributes (and its retry links).

    Set when it starts: phase (SEARCH_PHASE, or a recipe phase; planned trials are queued
    with it), planned_config (the recipe's fixed config), worker ("host:pid"), sampler,
    config (DPSGDConfig.to_dict()), model_spec, total_epochs, epsilon_planned (ε of the full
    run, at the start), delta, sampling, steps_planned.
    While it trains: history (one EpochMetrics dict per epoch), epochs_done, steps_done, and
    after a prune or failure the ε spent so far.
    When it ends: epsilon_rdp, epsilon_pld, rdp_order (of the run; None when σ = 0),
    epsilon_total (with the clip-norm selection; = epsilon_rdp without one), val_accuracy,
    val_loss, seconds_per_step, examples_per_second, train_seconds (s), device,
    gradient_path, stopped_early; prune_reason or fail_reason; surplus (a trial a worker
    race created: refused, trained nothing).
    After a finished trial, measured on the trained model (for the data owner: the validation
    rows they read are not protected by ε): fairness (dptune.evaluation.fairness.FairnessReport
    dict: per-class accuracy, per-group metrics with sizes, the gaps), membership
    (dptune.evaluation.membership.MembershipReport dict: two attacks, training rows against
    validation rows, and their slices), fairness_violation / within_fairness_limit (with the
    search's fairness_limit: how far the trial is over it, > 0 over; False too when its metric
    could not be measured), evaluation_seconds (s, both together), evaluation_error
    (why they could not be computed; the trial itself still counts).
    retry_of / retry_history (Optuna's system attrs): the killed trial(s) this one repeats.
    A collaborative search's trial (dptune.study.collaborative) records config (the
    CollaborativeConfig dict), history ({round, val_accuracy}), epsilon_total (the worst
    participant's ε), delta, val_accuracy, train_seconds and collaborative (its trial_summary)."""

    phase: str | None = None
    planned_config: dict[str, Any] | None = None
    worker: str | None = None
    sampler: str | None = None
    config: dict[str, Any] | None = None
    model_spec: dict[str, Any] | None = None
    total_epochs: int | None = None
    epsilon_planned: float | None = None
    delta: float | None = None
    sampling: str | None = None
    steps_planned: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs_done: int | None = None
    steps_done: int | None = None
    epsilon_rdp: float | None = None
    epsilon_pld: float | None = None
    rdp_order: float | None = None
    epsilon_total: float | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    seconds_per_step: float | None = None
    examples_per_second: float | None = None
    train_seconds: float | None = None
    device: str | None = None
    gradient_path: str | None = None
    stopped_early: bool | None = None
    fairness: dict[str, Any] | None = None
    membership: dict[str, Any] | None = None
    evaluation_seconds: float | None = None
    evaluation_error: str | None = None
    fairness_violation: float | None = None
    within_fairness_limit: bool | None = None
    prune_reason: str | None = None
    fail_reason: str | None = None
    surplus: bool = False
    collaborative: dict[str, Any] | None = None
    retry_of: int | None = None
    retry_history: tuple[int, ...] = ()

    @classmethod
    def of(cls, trial: optuna.trial.FrozenTrial | optuna.Trial) -> TrialRecord:
        """The record of a trial (frozen, or live inside an objective)."""
        attrs = trial.user_attrs
        values = {f.name: attrs[f.name] for f in fields(cls) if attrs.get(f.name) is not None}
        system = getattr(trial, "system_attrs", None) or {}
        if system.get(RETRY_OF) is not None:
            values["retry_of"] = int(system[RETRY_OF])
        values["retry_history"] = tuple(int(n) for n in system.get(RETRY_HISTORY, ()))
        return cls(**values)

    @property
    def is_planned(self) -> bool:
        """Planned trials were queued with a phase (a retry copies it); a trial Optuna made
        because the queue ran dry between a worker's look and its ask has none."""
        return self.phase is not None

    @property
    def epsilon(self) -> float | None:
        """ε of this trial's guarantee: with the clip-norm selection when there was one."""
        value = self.epsilon_total if self.epsilon_total is not None else self.epsilon_rdp
        return None if value is None else float(value)

    @property
    def last_epoch(self) -> dict[str, Any]:
        """The last recorded epoch's metrics ({} before the first)."""
        return self.history[-1] if self.history else {}

    @property
    def accuracy(self) -> float | None:
        """The final validation accuracy, or the last epoch's while it runs."""
        value = self.val_accuracy if self.val_accuracy is not None else self.last_epoch.get("val_accuracy")
        return None if value is None else float(value)


def write_trial(trial: optuna.Trial, **values: Any) -> None:
    """Set trial attributes by TrialRecord field name (not the retry links: Optuna's); inf
    and nan are stored as None."""
    for name, value in trial_attrs(**values).items():
        trial.set_user_attr(name, value)


def record_gave_up(study: optuna.Study, number: int, reason: str) -> None:
    """Record why trial `number` is not queued again (StudyRecord.gave_up)."""
    study.set_user_attr(f"{GAVE_UP_PREFIX}{int(number)}", str(reason))


def _check_names(record: type, values: dict[str, Any], written_elsewhere: frozenset[str] | set[str] = frozenset()) -> None:
    known = {f.name for f in fields(record)} - {"retry_of", "retry_history"} - set(written_elsewhere)
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(f"{record.__name__} has no field {', '.join(unknown)}")


def trial_attrs(**values: Any) -> dict[str, Any]:
    """Trial attributes by TrialRecord field name, as a dict (for a trial queued with them)."""
    _check_names(TrialRecord, values)
    return {name: json_safe(value) for name, value in values.items()}
