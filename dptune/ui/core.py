"""Streamlit plumbing shared by every page: workspace, saved choices, cached data, errors.

State lives in the workspace (`ui_state.json`, the datasets, the Optuna storage), never in
`st.session_state` alone: every script run reads the saved choices, so a reload, a second
tab or a restarted app shows the same thing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import streamlit as st

from dptune.data import load_dataset, prepare_builtin
from dptune.errors import ConfigError, DataError, DPTuneError
from dptune.report import plots
from dptune.study.format import StudyRecord, TrialRecord
from dptune.study.storage import open_storage
from dptune.ui import specs
from dptune.ui.adapters import trials_frame
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
    dataset: Any  # dptune.data.dataset.Dataset
    report: Any  # dptune.data.prepare.DataReport | None
    ref: dict[str, Any]  # DatasetRef mapping for the search spec
    source_label: str


@st.cache_resource(show_spinner="Preparing the built-in dataset…", max_entries=8)
def _builtin(name: str, root: str) -> tuple[Any, Any]:
    prepared = prepare_builtin(name)
    prepared.dataset.save(root)
    return prepared.dataset, prepared.report


def loaded_data(state: dict[str, Any] | None = None) -> LoadedData:
    """The dataset the pages work on (built-in digits until the user picks another).

    Raises DataError (shown by `guard`) when the saved upload can no longer be read.
    """
    state = state or load_state()
    section = state["dataset"]
    root = str(workspace().root)
    if section.get("source") == "upload" and section.get("upload"):
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
    from dptune.engine.user_models import suggest_model_spec

    return specs.model_spec_from_state(state, suggest_model_spec(data.dataset))


@st.cache_resource(show_spinner="Preparing the data…", max_entries=8)
def prepare_upload(digest: str, name: str, options_key: str, _content: bytes | Path) -> Any:
    """`dptune.data.load_dataset((name, bytes), **options)` -> PreparedData (DataError when unusable)."""
    if isinstance(_content, Path):
        _content = _content.read_bytes()
    options = json.loads(options_key)
    if "image_size" in options:
        options["image_size"] = tuple(options["image_size"])

    return load_dataset((name, _content), **options)


# ----------------------------------------------------------------------------- storage
@st.cache_resource(show_spinner=False)
def _storage(url: str) -> optuna.storages.BaseStorage:
    return open_storage(url)


def storage() -> optuna.storages.BaseStorage:
    return _storage(workspace().storage_url)


def study_names(*, collaborative: bool = False) -> list[str]:
    """dptune studies in the workspace storage (those with a `mode` attribute), newest first;
    collaborative (DSSGD) searches only with `collaborative` (only the Trade-offs page shows them).

    Reads the studies' attributes only, never their trials."""
    studies = storage().get_all_studies()
    newest_first = sorted(studies, key=lambda s: s._study_id, reverse=True)
    records = ((s.study_name, StudyRecord.from_attrs(s.user_attrs)) for s in newest_first)
    return [name for name, record in records if record.mode and (collaborative or not record.is_collaborative)]


@st.cache_resource(show_spinner=False, max_entries=32)
def _study(name: str, url: str) -> optuna.Study:
    # One Study object per name and process: its storage cache keeps finished trials (they
    # never change), so every later read fetches only the unfinished and the new trials.
    return optuna.load_study(study_name=name, storage=_storage(url))


def load_study(name: str) -> optuna.Study:
    """The study `name` (cached; its finished trials are read from the storage once)."""
    try:
        return _study(name, workspace().storage_url)
    except KeyError:
        raise ConfigError(f"there is no study {name!r} in {workspace().storage_url}; pick another one") from None


def counts_of(trials: Any) -> dict[str, int]:
    counts = {state.name: 0 for state in optuna.trial.TrialState}
    for trial in trials:
        counts[trial.state.name] += 1
    return counts


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state (from the study's cached trials: only unfinished ones are re-read)."""
    return counts_of(study.get_trials(deepcopy=False))


@dataclass(frozen=True)
class StudySnapshot:
    """One read of a study: its attributes, its trials (FrozenTrial, read-only) and their frame."""
    name: str
    user_attrs: dict[str, Any]
    trials: tuple
    frame: pd.DataFrame
    counts: dict[str, int]
    read_at: float

    @property
    def record(self) -> StudyRecord:
        """The study's attributes as read (dptune.study.format)."""
        return StudyRecord.from_attrs(self.user_attrs)


@st.cache_resource(show_spinner=False, max_entries=16)
def _snapshot(name: str, url: str, version: tuple, _study: Any, _trials: tuple, _attrs: dict) -> StudySnapshot:
    frame = trials_frame(_CachedStudy(_study, _trials))
    return StudySnapshot(name, _attrs, _trials, frame, counts_of(_trials), time.time())


class _CachedStudy:
    """A study whose get_trials returns trials already read (so one read serves everything)."""
    def __init__(self, study: optuna.Study, trials: tuple, user_attrs: dict[str, Any] | None = None):
        self._study = study
        self._trials = trials
        self._user_attrs = user_attrs

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list:
        if states is None:
            return list(self._trials)
        return [t for t in self._trials if t.state in states]

    @property
    def trials(self) -> list:
        return list(self._trials)

    @property
    def user_attrs(self) -> dict[str, Any]:
        return self._user_attrs if self._user_attrs is not None else self._study.user_attrs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


def snapshot(name: str) -> StudySnapshot:
    """The study's trials and their frame, rebuilt only when something changed.

    Reading the trials is incremental (finished trials are cached); the frame is rebuilt
    when a trial changes state, a running trial reports an epoch, or the study's
    attributes change (e.g. the search cost)."""
    study = load_study(name)
    trials = tuple(study.get_trials(deepcopy=False))
    attrs = dict(study.user_attrs)
    records = ((t, TrialRecord.of(t)) for t in trials if not t.state.is_finished())
    unfinished = tuple((t.number, t.state.name, len(r.history), r.config is not None) for t, r in records)
    finished = sum(1 for t in trials if t.state.is_finished())
    version = (len(trials), finished, unfinished, hash(json.dumps(attrs, sort_keys=True, default=str)))
    return _snapshot(name, workspace().storage_url, version, study, trials, attrs)
@st.cache_resource(show_spinner="Computing importances…", max_entries=8)
def _importances(name: str, url: str, complete: int, _trials: tuple) -> Any:
    return plots.param_importances_figure(_trials)


def importances_figure(name: str, snapshot: StudySnapshot) -> Any:
    """Optuna's importance figure, recomputed only when the number of complete trials changes."""
    return _importances(name, workspace().storage_url, snapshot.counts.get("COMPLETE", 0), snapshot.trials)


def clear_caches() -> None:
    _snapshot.clear()
    _study.clear()
