"""Starting, stopping and resuming searches from the dashboard (no training in this process).

A search is an Optuna study created by `dptune.study.search.create_study` (its planned trials
queued), plus worker processes `python -m dptune worker ...` started with
`dptune.ui.workers.start_workers` in their own sessions: they keep running when the tab
closes, and the app re-attaches to them from their records in the workspace.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from dptune.errors import ConfigError
from dptune.ui import core, specs
from dptune.ui.workers import live_workers, start_workers, stop_workers


def check_budget(spec: Any, n_train: int, delta: float) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the privacy budget before any trial runs.

    budgeted: σ must be calibratable at every corner of the B x epochs x microbatching
    ranges; an error when no corner can meet the target, a warning naming the corners
    that cannot (those trials would fail). pareto: a warning when even the largest σ of
    the range cannot reach the target at the smallest B and epochs.
    """
    from dptune import privacy
    from dptune.spec.search import PER_EXAMPLE

    errors: list[str] = []
    warnings: list[str] = []
    ranges = spec.ranges
    batches = sorted({min(int(b), n_train) for b in ranges.batch_size})
    epochs = sorted({int(e) for e in ranges.epochs})
    microbatching = sorted({choice != PER_EXAMPLE for choice in ranges.num_microbatches})
    if spec.mode == "budgeted" and not spec.epsilon_includes_search_cost:
        # σ is calibrated per trial in [MIN, MAX]_NOISE_MULTIPLIER: a corner of the ranges is
        # feasible when the largest σ meets the target and the smallest does not (two fast
        # RDP evaluations instead of a calibration per corner).
        unreachable, meaningless = [], []
        corners = list(itertools.product(batches, epochs, microbatching))
        for batch, epoch, microbatched in corners:
            def epsilon_at(sigma: float) -> float:
                return privacy.compute_epsilon(n_train, batch, sigma, epochs=float(epoch), delta=delta,
                                               microbatched=microbatched, pld=False).epsilon_rdp

            if epsilon_at(privacy.MAX_NOISE_MULTIPLIER) > spec.target_epsilon:
                unreachable.append((batch, epoch, microbatched))
            elif epsilon_at(privacy.MIN_NOISE_MULTIPLIER) <= spec.target_epsilon:
                meaningless.append((batch, epoch, microbatched))
        if len(unreachable) == len(corners):
            errors.append(
                f"Impossible budget: ε = {spec.target_epsilon:g} at δ = {delta:.2g} cannot be met by any trial, even "
                f"with σ = {privacy.MAX_NOISE_MULTIPLIER:g} (N = {n_train:,}). Raise the target ε, use fewer epochs or "
                "smaller batches (a smaller sampling rate), or more data."
            )
        elif len(meaningless) == len(corners):
            errors.append(
                f"ε = {spec.target_epsilon:g} is so large that even σ = {privacy.MIN_NOISE_MULTIPLIER:g} meets it: "
                "such a budget promises no meaningful privacy. Choose a smaller target ε (1–10 is usual)."
            )
        else:
            for failures, what in ((unreachable, "cannot meet"), (meaningless, "need no noise to meet")):
                if failures:
                    listed = ", ".join(f"B={b}, {e} epochs{' (m < B)' if mb else ''}" for b, e, mb in failures)
                    warnings.append(
                        f"Some trials {what} ε = {spec.target_epsilon:g} and will fail ({listed}); narrow the "
                        "batch-size or epochs range to avoid wasting them."
                    )
    elif spec.mode == "pareto" and ranges.noise_multiplier is not None:
        sigma = float(ranges.noise_multiplier[1])
        best = privacy.compute_epsilon(
            n_train, batches[0], sigma, epochs=float(epochs[0]), delta=delta, microbatched=microbatching[0], pld=False
        ).epsilon_rdp
        if best > spec.target_epsilon:
            warnings.append(
                f"Even σ = {sigma:g} with B = {batches[0]} and {epochs[0]} epoch(s) gives ε = {best:.3g} > target "
                f"{spec.target_epsilon:g}: no trial will be within the target. Raise the σ range, lower B or epochs."
            )
    return errors, warnings


def start_search(spec: Any, dataset: Any, *, n_workers: int, clip: dict[str, Any] | None = None) -> str:
    """Create the study (queueing its trials) and start `n_workers` workers; returns its name.

    clip: the Clip norm page's state; when C came from its private histogram (budgeted and
    pareto modes use it as their C range), how it was read is recorded in the study attribute
    `ui_clip_selection` for display. What every release on the dataset spent is charged through
    the spec's `clip_selection_epsilon` (in every mode, whichever C is used).
    The study becomes the current one (saved in the workspace)."""
    from dptune.study.results import update_search_cost
    from dptune.study.search import create_study

    # Create the storage's tables once, through the app's cached storage, before
    # create_study opens its own connection: two first connections racing to create the
    # schema of a new SQLite file fail (alembic_version UNIQUE constraint).
    core.storage()
    study, _ = create_study(spec, dataset=dataset)
    if clip and spec.mode != "recipe" and clip.get("method") == "private" and clip.get("selection") \
            and clip.get("l2_norm_clip"):
        study.set_user_attr("ui_clip_selection", {
            "source": "private", "epsilon": float(clip["selection"]["epsilon"]),
            "quantile": clip.get("quantile"), "l2_norm_clip": float(clip["l2_norm_clip"]), "use": clip.get("use"),
        })
    try:
        update_search_cost(study)
    except Exception:  # noqa: BLE001 - the cost is refreshed by the workers anyway
        pass
    planned = int(study.user_attrs.get("n_trials_planned") or 1)
    storage = spec.resolved_storage if spec.storage is None else spec.storage
    if spec.mode == "recipe":
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
    """`python -m dptune tune --config <the study's own search spec>` (it resumes the study)."""
    import sys

    import yaml

    from dptune.ui.workspace import safe_filename

    directory = core.workspace().workers_dir / safe_filename(study.study_name, default="study")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "search.yaml"
    path.write_text(yaml.safe_dump(study.user_attrs["search_spec"], sort_keys=False))
    return [sys.executable, "-m", "dptune", "tune", "--config", str(path), "--no-progress"]


def resume(name: str, *, n_workers: int) -> int:
    """Start more workers for an existing study (they take its queued trials)."""
    ws = core.workspace()
    study = core.load_study(name)
    counts = core.state_counts(study)
    waiting = counts.get("WAITING", 0)
    recipe = study.user_attrs.get("mode") == "recipe"
    if not waiting and not recipe:
        raise ConfigError(f"study {name!r} has no queued trial left; start a new search instead")
    if recipe:
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

    from dptune.study.search import fail_stale, open_storage

    study = core.load_study(name)
    spec = study.user_attrs.get("search_spec") or {}
    heartbeat = int(spec.get("heartbeat_seconds") or 10)
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
    values = specs.search_spec_dict(
        state, dataset_ref=ref, model_spec=suggest_model_spec(dataset), workspace=str(ws.root),
        storage=ws.storage_url, study_name=specs.default_study_name("digits-quick", "budgeted", 3.0),
    )
    spec = SearchSpec.from_dict(values)
    return start_search(spec, dataset, n_workers=1)


def study_status(name: str) -> dict[str, Any]:
    """Counts by state and the live workers of a study (cheap: COUNT queries and /proc)."""
    study = core.load_study(name)
    counts = core.state_counts(study)
    workers = live_workers(core.workspace(), name)
    return {"counts": counts, "workers": workers, "attrs": study.user_attrs}


def format_epsilon(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return f"{number:.3g}" if math.isfinite(number) else "∞"
