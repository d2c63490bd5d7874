"""Export page helpers: one trial -> run YAML text, written to the workspace and validated."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from dptune.errors import DPTuneError
from dptune.privacy.statement import format_epsilon
from dptune.report.export import choose_trial, run_config_from_trial
from dptune.spec.run import load_run_config
from dptune.ui import core


@dataclass(frozen=True)
class Export:
    text: str
    file_name: str
    path: str
    command: str
    valid: bool
    error: str | None
    val_accuracy: float | None
    epsilon: float | None
    epsilon_total: float | None
    search_epsilon: float | None
    statement: str  # the privacy statement, as `dptune export` and `dptune train` print it
    void: bool  # noise public (debug): no ε holds


def fmt(value: Any, *, void: bool = False) -> str:
    """ε as the Export page shows it: rounded up; None (infinite in the YAML) is ∞ (no privacy)."""
    return format_epsilon(None if value is None else float(value), void=void)


def export_yaml(snapshot: core.StudySnapshot, number: int) -> Export:
    """The run YAML of trial `number` (dptune.report.export.run_config_from_trial), saved under
    `<workspace>/exports/` and loaded back with dptune.spec.run.load_run_config."""
    ws = core.workspace()
    study = core._CachedStudy(core.load_study(snapshot.name), snapshot.trials, snapshot.user_attrs)
    trial = choose_trial(study, number)
    # The workers keep the study's `search_cost` current after every trial; recomputing it
    # here would compose every trial again (minutes with hundreds of trials).
    run_config = run_config_from_trial(study, trial, storage_url=ws.storage_url,
                                       cost=snapshot.record.search_cost)
    path = run_config.dump(ws.export_path(snapshot.name, number))
    text = path.read_text(encoding="utf-8")
    valid, error = True, None
    try:
        load_run_config(path)
    except DPTuneError as problem:
        valid, error = False, str(problem)
    accountant = run_config.accountant or {}
    cost = (run_config.search or {}).get("tuning_cost") or {}
    return Export(
        text=text,
        file_name=path.name,
        path=str(path),
        command=f"dptune train --config {shlex.quote(path.name)}",
        valid=valid,
        error=error,
        val_accuracy=(run_config.metrics or {}).get("val_accuracy"),
        epsilon=run_config.epsilon,
        epsilon_total=accountant.get("epsilon_total"),
        search_epsilon=cost.get("selected_release_epsilon"),
        statement=run_config.privacy_statement["text"],
        void=run_config.training.debug_fixed_noise,
    )
