"""Streamlit plumbing shared by every page: workspace, saved choices, cached data, errors.

State lives in the workspace (`ui_state.json`, the datasets, the Optuna storage), never in
`st.session_state` alone: every script run reads the saved choices, so a reload, a second
tab or a restarted app shows the same thing.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import optuna
import pandas as pd
import streamlit as st

from dptune.errors import DPTuneError
from dptune.ui import specs
from dptune.ui.workspace import Workspace

LOG = logging.getLogger("dptune.ui")
optuna.logging.set_verbosity(optuna.logging.WARNING)  # no INFO line per study read in the app's terminal
POLL_SECONDS = 2.0


# ----------------------------------------------------------------------------- workspace
@st.cache_resource(show_spinner=False)
def _workspace(root: str | None, storage: str | None) -> Workspace:
    return Workspace.from_env(root, storage)


def workspace() -> Workspace:
    """The workspace (`$DPTUNE_WORKSPACE`, default ./dptune-data; `$DPTUNE_STORAGE` for a URL)."""
    import os

    return _workspace(os.environ.get("DPTUNE_WORKSPACE"), os.environ.get("DPTUNE_STORAGE"))


def load_state() -> dict[str, Any]:
    """The page choices: defaults overlaid with `<workspace>/ui_state.json`."""
    return specs.merged_state(workspace().load_state())


def save_state(state: dict[str, Any]) -> None:
    workspace().save_state(state)


def update_state(section: str, **values: Any) -> dict[str, Any]:
    """Change some keys of one section (or the top-level `study`) and save at once."""
    state = load_state()
    if section == "study":
        state["study"] = values.get("name")
    else:
        state[section].update(values)
    save_state(state)
    return state


# ----------------------------------------------------------------------------- errors
@contextlib.contextmanager
def guard(what: str = "") -> Iterator[None]:
    """Show a user's mistake as st.error (its message says what to do), never a traceback."""
    try:
        yield
    except DPTuneError as error:
        st.error(f"{what}{': ' if what else ''}{error}", icon=":material/error:")
    except optuna.exceptions.StorageInternalError as error:
        st.error(
            f"{what}{': ' if what else ''}the study storage could not be read ({error}). Check that the workspace "
            "disk is writable and not full, then reload the page.",
            icon=":material/error:",
        )
    except Exception as error:  # noqa: BLE001 - shown to the user instead of a traceback
        LOG.exception("unexpected error in the dashboard")
        st.error(
            f"{what}{': ' if what else ''}unexpected {type(error).__name__}: {error}. "
            "This is a bug in dptune, not something you did; the full traceback is in the terminal running "
            "`streamlit run app.py`.",
            icon=":material/bug_report:",
        )


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True)
class LoadedData:
    dataset: Any  # dptune.dataset.Dataset
    report: Any  # dptune.prepare.DataReport | None
    ref: dict[str, Any]  # DatasetRef mapping for the search spec
    source_label: str


@st.cache_resource(show_spinner="Preparing the built-in dataset…", max_entries=8)
def _builtin(name: str, root: str) -> tuple[Any, Any]:
    from dptune.data import prepare_builtin

    prepared = prepare_builtin(name)
    prepared.dataset.save(root)
    return prepared.dataset, prepared.report


def loaded_data(state: dict[str, Any] | None = None) -> LoadedData:
    """The dataset the pages work on (built-in digits until the user picks another).

    Raises DataError (shown by `guard`) when the saved upload can no longer be read.
    """
    import json

    from dptune.errors import DataError

    state = state or load_state()
    section = state["dataset"]
    root = str(workspace().root)
    if section.get("source") == "upload" and section.get("upload"):
        from pathlib import Path

        from dptune.ui.datasets import prepare_upload

        upload = section["upload"]
        path = Path(upload["path"])
        if not path.exists():
            raise DataError(
                f"the uploaded file {upload['name']!r} is no longer in the workspace; upload it again on the Data page"
            )
        options = dict(section.get("options") or {})
        digest = upload.get("sha256") or path.name
        prepared = prepare_upload(digest, upload["name"], json.dumps(options, sort_keys=True), path)
        dataset = prepared.dataset
        ref = {"name": dataset.name, "fingerprint": dataset.fingerprint, "n_train": dataset.n_train, "workspace": root}
        return LoadedData(dataset, prepared.report, ref, f"upload {upload['name']}")
    name = section.get("builtin") or "digits"
    dataset, report = _builtin(name, root)
    ref = {"name": dataset.name, "builtin": name, "fingerprint": dataset.fingerprint, "n_train": dataset.n_train}
    return LoadedData(dataset, report, ref, f"built-in {name}")


def current_model_spec(state: dict[str, Any], data: LoadedData):
    """The model the search uses: the saved choice, else the suggestion for the data."""
    from dptune.user_models import suggest_model_spec

    return specs.model_spec_from_state(state, suggest_model_spec(data.dataset))


# ----------------------------------------------------------------------------- storage
@st.cache_resource(show_spinner=False)
def _storage(url: str) -> optuna.storages.BaseStorage:
    from dptune.search import open_storage

    return open_storage(url)


def storage() -> optuna.storages.BaseStorage:
    return _storage(workspace().storage_url)


def study_names() -> list[str]:
    """dptune studies in the workspace storage, newest first."""
    summaries = optuna.get_all_study_summaries(storage(), include_best_trial=False)
    ordered = sorted(
        summaries,
        key=lambda s: (s.datetime_start is not None, s.datetime_start or 0, s._study_id),
        reverse=True,
    )
    return [s.study_name for s in ordered if "mode" in s.user_attrs]


def load_study(name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage())


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state by COUNT queries (cheap, even with thousands of trials)."""
    counts = {}
    for state in optuna.trial.TrialState:
        counts[state.name] = study._storage.get_n_trials(study._study_id, state=state)
    return counts


@dataclass(frozen=True)
class StudySnapshot:
    """One read of a study: its trials (FrozenTrial, read-only) and their frame."""

    name: str
    user_attrs: dict[str, Any]
    trials: tuple
    frame: pd.DataFrame
    counts: dict[str, int]
    read_at: float


@st.cache_resource(show_spinner=False, max_entries=16)
def _snapshot(name: str, url: str, version: tuple) -> StudySnapshot:
    from dptune.ui.adapters import trials_frame

    study = optuna.load_study(study_name=name, storage=_storage(url))
    trials = tuple(study.get_trials(deepcopy=False))
    frame = trials_frame(_CachedStudy(study, trials))
    return StudySnapshot(name, dict(study.user_attrs), trials, frame, dict(version[0]), time.time())


class _CachedStudy:
    """A study whose get_trials returns trials already read (so one read serves everything)."""

    def __init__(self, study: optuna.Study, trials: tuple):
        self._study = study
        self._trials = trials

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list:
        if states is None:
            return list(self._trials)
        return [t for t in self._trials if t.state in states]

    @property
    def trials(self) -> list:
        return list(self._trials)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def snapshot(name: str) -> StudySnapshot:
    """The study's trials, read again only when something changed.

    The cache key is the per-state trial counts (COUNT queries) and, while trials run, the
    poll period: a finished study with 500 trials is read once, a running one every poll.
    """
    study = load_study(name)
    counts = state_counts(study)
    live = counts.get("RUNNING", 0) > 0 or counts.get("WAITING", 0) > 0
    tick = int(time.time() / POLL_SECONDS) if live else 0
    version = (tuple(sorted(counts.items())), tick, len(study.user_attrs))
    return _snapshot(name, workspace().storage_url, version)


@st.cache_resource(show_spinner="Computing importances…", max_entries=8)
def _importances(name: str, url: str, complete: int, _trials: tuple) -> Any:
    from dptune import plots

    return plots.param_importances_figure(_trials)


def importances_figure(name: str, snapshot: StudySnapshot) -> Any:
    """Optuna's importance figure, recomputed only when the number of complete trials changes."""
    return _importances(name, workspace().storage_url, snapshot.counts.get("COMPLETE", 0), snapshot.trials)


def clear_caches() -> None:
    _snapshot.clear()
