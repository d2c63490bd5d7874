"""Export page helpers: one trial -> run YAML text, written to the workspace and validated."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

from dptune.ui import core
from dptune.ui.workspace import safe_filename


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
    clip_note: str | None


def fmt(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{number:.3f}" if math.isfinite(number) else "∞"


def export_yaml(snapshot: core.StudySnapshot, number: int) -> Export:
    """The run YAML of trial `number` (dptune.export.run_config_from_trial), saved under
    `<workspace>/exports/` and loaded back with dptune.run_config.load_run_config."""
    import dataclasses

    from dptune.errors import DPTuneError
    from dptune.export import COST_KEYS, choose_trial, run_config_from_trial
    from dptune.run_config import load_run_config

    ws = core.workspace()
    study = core._CachedStudy(core.load_study(snapshot.name), snapshot.trials, snapshot.user_attrs)
    trial = choose_trial(study, number)
    stored_cost = snapshot.user_attrs.get("search_cost")
    if stored_cost:
        # The workers keep the study's `search_cost` current after every trial; recomputing
        # it here would compose every trial again (minutes with hundreds of trials), so the
        # run config is built on this trial alone and given the stored tuning cost.
        alone = core._CachedStudy(study._study, (trial,), snapshot.user_attrs)
        run_config = run_config_from_trial(alone, trial, storage_url=ws.storage_url)
        search = dict(run_config.search or {})
        search["tuning_cost"] = {key: stored_cost.get(key) for key in COST_KEYS}
        run_config = dataclasses.replace(run_config, search=search)
    else:
        run_config = run_config_from_trial(study, trial, storage_url=ws.storage_url)
    file_name = f"{safe_filename(snapshot.name, default='study')}-trial{number}.yaml"
    path = run_config.dump(ws.root / "exports" / file_name)
    text = path.read_text(encoding="utf-8")
    valid, error = True, None
    try:
        load_run_config(path)
    except DPTuneError as problem:
        valid, error = False, str(problem)
    accountant = run_config.accountant or {}
    cost = (run_config.search or {}).get("tuning_cost") or {}
    clip_note = None
    ui_clip = snapshot.user_attrs.get("ui_clip_selection")
    if ui_clip and ui_clip.get("epsilon"):
        clip_note = (
            f"C came from the Clip norm page's private histogram (ε_C = {ui_clip['epsilon']:g}, pure DP): add it to "
            "this run's ε when you state the guarantee (composition; the Clip norm page shows the total)."
        )
    return Export(
        text=text,
        file_name=file_name,
        path=str(path),
        command=f"dptune train --config {shlex.quote(file_name)}",
        valid=valid,
        error=error,
        val_accuracy=(run_config.metrics or {}).get("val_accuracy"),
        epsilon=run_config.epsilon,
        epsilon_total=accountant.get("epsilon_total"),
        search_epsilon=cost.get("selected_release_epsilon"),
        clip_note=clip_note,
    )
