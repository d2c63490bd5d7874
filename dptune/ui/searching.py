"""Starting, stopping and resuming searches from the dashboard (no training in this process).

A search is an Optuna study created by `dptune.study.search.create_study` (its planned trials
queued), plus worker processes `python -m dptune worker ...` started with
`dptune.ui.workers.start_workers` in their own sessions: they keep running when the tab
closes, and the app re-attaches to them from their records in the workspace.
"""

from __future__ import annotations

from typing import Any

import yaml

from dptune.errors import ConfigError
from dptune.study.budget import check_budget
from dptune.study.format import StudyRecord, write_study
from dptune.study.launch import tune_command
from dptune.study.modes import mode_for, study_mode
from dptune.ui import core, specs
from dptune.ui.workers import live_workers, start_workers, stop_workers


def start_search(spec: Any, dataset: Any, *, n_workers: int, clip: dict[str, Any] | None = None) -> str:
    """Create the study (queueing its trials) and start `n_workers` workers; returns its name.

    clip: the Clip norm page's state; when C came from its private histogram (budgeted and
    pareto modes use it as their C range), how it was read is recorded in the study attribute
    `ui_clip_selection` for display. What every release on the dataset spent is charged through
    the spec's `clip_selection_epsilon` (in every mode, whichever C is used).
    The study becomes the current one (saved in the workspace). Raises ConfigError, listing
    every error of dptune.study.budget.check_budget, when no trial could meet the budget."""
    from dptune.study.results import update_search_cost
    from dptune.study.search import create_study

    errors = check_budget(spec, dataset.n_train).errors
    if errors:
        raise ConfigError(" ".join(errors))
    mode = mode_for(spec.mode)
    # Create the storage's tables once, through the app's cached storage, before
    # create_study opens its own connection: two first connections racing to create the
    # schema of a new SQLite file fail (alembic_version UNIQUE constraint).
    core.storage()
    study, _ = create_study(spec, dataset=dataset)
    if clip and not mode.chooses_clip_norm and clip.get("method") == "private" and clip.get("selection") \
            and clip.get("l2_norm_clip"):
        write_study(study, ui_clip_selection={
            "source": "private", "epsilon": float(clip["selection"]["epsilon"]),
            "quantile": clip.get("quantile"), "l2_norm_clip": float(clip["l2_norm_clip"]), "use": clip.get("use"),
        })
    try:
        update_search_cost(study)
    except Exception:  # noqa: BLE001 - the cost is refreshed by the workers anyway
        pass
    if mode.phased:  # baseline + noise search + verify: what the Search page showed before Start
        write_study(study, n_trials_planned=recipe_plan(spec)["runs"])
    planned = StudyRecord.of(study).n_trials_planned or 1
    storage = spec.resolved_storage if spec.storage is None else spec.storage
    if mode.phased:
        # the recipe's phases depend on each other: one `dptune tune` process drives them
        start_workers(core.workspace(), study.study_name, n_workers=1, n_trials_each=max(1, planned),
                      storage=storage, command=recipe_driver_command(study))
    else:
        start_workers(core.workspace(), study.study_name, n_workers=n_workers, n_trials_each=max(1, planned),
                      storage=storage)
    core.update_state("study", name=study.study_name)
    core.clear_caches()
    return study.study_name


def recipe_driver_command(study: Any) -> list[str]:
    """The command of the process that drives a phased study: `dptune tune` on the study's own
    search spec, written to its workers folder (it resumes the study)."""
    directory = core.workspace().worker_dir(study.study_name)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "search.yaml"
    path.write_text(yaml.safe_dump(StudyRecord.of(study).search_spec, sort_keys=False))
    return tune_command(path)


def resume(name: str, *, n_workers: int) -> int:
    """Start more workers for an existing study (they take its queued trials)."""
    ws = core.workspace()
    study = core.load_study(name)
    counts = core.state_counts(study)
    waiting = counts.get("WAITING", 0)
    phased = study_mode(StudyRecord.of(study)).phased
    if not waiting and not phased:
        raise ConfigError(f"study {name!r} has no queued trial left; start a new search instead")
    if phased:
        records = start_workers(ws, name, n_workers=1, n_trials_each=waiting, storage=ws.storage_url,
                                command=recipe_driver_command(study))
    else:
        records = start_workers(ws, name, n_workers=min(n_workers, waiting), n_trials_each=waiting,
                                storage=ws.storage_url)
    core.clear_caches()
    return len(records)


def reap_stale(name: str) -> int:
    """Fail (and re-queue) the study's trials whose worker stopped sending heartbeats.

    A worker that is stopped or killed mid-trial leaves its trial RUNNING; after the grace
    period (3 heartbeats) Optuna's RetryHeartbeatStaleTrialCallback marks it FAIL and queues
    a retry, exactly as the next worker would. Trials of live workers, here or on other
    machines, keep their heartbeats and are untouched. Returns how many trials it failed."""
    import optuna

    from dptune.study.queue import fail_stale
    from dptune.study.storage import open_storage

    study = core.load_study(name)
    heartbeat = int(StudyRecord.of(study).search_spec.get("heartbeat_seconds") or 10)
    before = core.state_counts(study).get("FAIL", 0)
    storage = open_storage(core.workspace().storage_url, heartbeat_seconds=heartbeat)
    fail_stale(optuna.load_study(study_name=name, storage=storage))
    return core.state_counts(study).get("FAIL", 0) - before


def stop(name: str) -> int:
    """Stop the workers this app started for the study; queued trials stay queued."""
    stopped = stop_workers(core.workspace(), name)
    core.clear_caches()
    return len(stopped)


def quick_start() -> str:
    """The one-button search: 3 tiny budgeted trials on the built-in digits."""
    from dptune.data import builtin_dataset
    from dptune.engine.user_models import suggest_model_spec
    from dptune.spec.search import SearchSpec

    ws = core.workspace()
    dataset = builtin_dataset("digits")
    state = specs.default_state()
    state["search"].update(specs.QUICK_START_SEARCH)
    ref = {"name": dataset.name, "builtin": "digits", "fingerprint": dataset.fingerprint, "n_train": dataset.n_train}
    quick = specs.QUICK_START_SEARCH
    values = specs.search_spec_dict(
        state, dataset_ref=ref, model_spec=suggest_model_spec(dataset), workspace=str(ws.root),
        storage=ws.storage_url, study_name=specs.default_study_name("digits-quick", quick["mode"], quick["target_epsilon"]),
    )
    spec = SearchSpec.from_dict(values)
    return start_search(spec, dataset, n_workers=1)


def study_status(name: str) -> dict[str, Any]:
    """Counts by state and the live workers of a study (cheap: COUNT queries and /proc)."""
    study = core.load_study(name)
    counts = core.state_counts(study)
    workers = live_workers(core.workspace(), name)
    return {"counts": counts, "workers": workers, "record": StudyRecord.of(study)}


def recipe_plan(spec: Any) -> dict[str, Any]:
    """What a recipe search will run, from its spec (before Start).

    Returns the phases as (title, runs, text) tuples, the total number of runs
    (baseline_trials + noise-search trials + verify_trials: the study's
    `n_trials_planned`) and the number of processes (1: the recipe's driver), plus
    `clip_norm` (None when the recipe chooses C from the gradient-norm quantile)."""
    recipe = spec.recipe
    noise = int(spec.n_trials.n or 0)
    if recipe.clip_norm is None:
        clip = (f"C at the {recipe.clip_quantile:.0%} quantile of the per-example gradient norms "
                f"(released with ε_C = {recipe.clip_epsilon:g})")
    else:
        clip = f"C = {recipe.clip_norm:.4g}, fixed (nothing released)"
    sigma = spec.ranges.noise_multiplier
    phases = [
        ("1. Clip norm", 0, clip),
        ("2a. Non-private baseline", recipe.baseline_trials,
         f"σ = 0, m = 1, B = {recipe.batch_size}, {recipe.epochs} epochs"),
        ("2b. Largest σ at m = 1", noise,
         f"σ in {sigma[0]:g} … {sigma[1]:g} and the learning rate, searched (tolerance {recipe.tolerance:g})"),
        ("3. Scale σ and m to the target ε", 0, f"ε ≤ {spec.target_epsilon:g} (computed, no training)"),
        ("4. Verify", recipe.verify_trials, "full runs of the scaled configuration"),
    ]
    return {
        "phases": phases,
        "runs": recipe.baseline_trials + noise + recipe.verify_trials,
        "processes": 1,
        "clip_norm": recipe.clip_norm,
    }


def running_state(name: str | None) -> dict[str, Any] | None:
    """Whether the study `name` is still running: None when it is not (or does not exist),
    else its counts of RUNNING and WAITING trials and its live workers started here."""
    if not name or name not in core.study_names():
        return None
    status = study_status(name)
    running = status["counts"].get("RUNNING", 0)
    waiting = status["counts"].get("WAITING", 0)
    if not (running or waiting or status["workers"]):
        return None
    return {"name": name, "running": running, "waiting": waiting, "workers": len(status["workers"])}
