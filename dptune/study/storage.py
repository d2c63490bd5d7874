"""The Optuna storage of dptune's studies (SQLite by default, any RDB URL such as PostgreSQL).

Its own module so that the dashboard can open the storage without the training side of the
study layer (which imports TensorFlow through dptune.engine).

What dptune adds to Optuna's RDBStorage (`open_storage`):

- **One worker per trial on SQLite.** Optuna claims a queued trial with
  `SELECT ... FOR UPDATE`, which SQLite ignores, so two workers could take the same trial
  (and re-queue one stale trial twice). Every SQLite transaction here begins with
  `BEGIN IMMEDIATE` (SQLAlchemy's pysqlite recipe): it takes the database's write lock at its
  start, so a read-check-write such as "is this trial still WAITING? then it is mine" is
  atomic. Waiting for the lock is fine: the busy timeout is SQLITE_BUSY_SECONDS.
- **PostgreSQL as written in the README.** `postgresql://user:pw@host/db` is opened with
  psycopg 3 (`postgresql+psycopg://`, the driver in requirements.txt), whatever SQLAlchemy's
  default driver is; connections are checked before use (`pool_pre_ping`), so a restarted
  server is reconnected to.
- **Storage errors are retried.** A call that fails because the database cannot be reached
  (an OperationalError: server restarting, SQLite busy past its timeout, disk full) is retried
  with backoff (0.5 s doubling to 5 s) for up to STORAGE_RETRY_SECONDS (120 s, or
  $DPTUNE_STORAGE_RETRY_SECONDS); after that the error
  is raised (a worker then exits with an `error:` line). While a storage has seen such an
  error within the last grace period (3 heartbeats), it reports no stale trial: the other
  workers' heartbeats could not reach the database either, so their trials are not lost.
- **Lost trials are retried, up to MAX_RETRY times.** A running trial whose heartbeat stops
  for the grace period (its worker was killed, frozen or cut off) is marked FAIL and queued
  again as a new trial with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback).
  A trial lost MAX_RETRY + 1 times is not queued again; that is recorded in the study
  attribute `gave_up:<trial number>` (dptune.study.format.StudyRecord.gave_up) with the reason, which
  dptune.study.results shows as the failed trial's reason.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
import sqlalchemy.exc

from dptune.study.format import record_gave_up

MAX_RETRY = 2
"""How many times a trial lost to a fault (no heartbeat for the grace period: its worker was
killed, frozen or cut off from the storage) is queued again; the trial lost once more is
reported as given up (StudyRecord.gave_up), not retried."""

STORAGE_RETRY_SECONDS = float(os.environ.get("DPTUNE_STORAGE_RETRY_SECONDS", "120"))
"""How long a storage call that cannot reach the database is retried before its error is raised
(120 s; the environment variable DPTUNE_STORAGE_RETRY_SECONDS changes it)."""

SQLITE_BUSY_SECONDS = 60
"""How long a SQLite transaction waits for the database's write lock."""

_log = logging.getLogger("dptune.storage")
T = TypeVar("T")


def open_storage(url: str, *, heartbeat_seconds: int | None = None,
                 retry_seconds: float | None = None) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for `url` (SQLite file, PostgreSQL, MySQL, ...); see the module
    docstring for what dptune adds (atomic claims on SQLite, retries, the psycopg driver).

    With `heartbeat_seconds`, running trials send a heartbeat; one silent for 3 heartbeats
    (a killed worker) is failed and re-queued (up to MAX_RETRY times) by the next worker.
    retry_seconds: how long a call that cannot reach the database is retried (default
    STORAGE_RETRY_SECONDS; opening the storage is retried as long).
    """
    engine_url = driver_url(url)
    engine_kwargs: dict[str, Any] = {}
    if engine_url.startswith("sqlite:///"):
        path = engine_url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}}
    elif not engine_url.startswith("sqlite"):
        engine_kwargs = {"pool_pre_ping": True}
    budget = STORAGE_RETRY_SECONDS if retry_seconds is None else float(retry_seconds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        kwargs: dict[str, Any] = {}
        if heartbeat_seconds:
            kwargs = dict(
                heartbeat_interval=int(heartbeat_seconds),
                grace_period=3 * int(heartbeat_seconds),
                heartbeat_stale_trial_callback=RetryLostTrial(max_retry=MAX_RETRY),
            )
        storage = _with_retries(lambda: RetryingRDBStorage(engine_url, engine_kwargs=engine_kwargs, **kwargs),
                                budget, "opening the storage")
    storage.retry_seconds = budget
    if storage.engine.name == "sqlite" and not _in_memory(engine_url):
        lock_at_begin(storage.engine)
    return storage


def driver_url(url: str) -> str:
    """The SQLAlchemy URL dptune opens for a storage URL: `postgresql://` and `postgres://`
    become `postgresql+psycopg://` (psycopg 3, in requirements.txt); anything else is unchanged."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _in_memory(url: str) -> bool:
    rest = url.split("://", 1)[1] if "://" in url else ""
    return rest in ("", "/", "/:memory:") or "mode=memory" in rest


def lock_at_begin(engine: sqlalchemy.engine.Engine) -> None:
    """Make every transaction of a SQLite `engine` begin with BEGIN IMMEDIATE (it takes the
    write lock at its start, so SELECT ... FOR UPDATE's intent holds): SQLAlchemy's documented
    pysqlite recipe. Connections opened before are dropped, so every connection has it."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite emits no BEGIN of its own
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_SECONDS * 1000)}")

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    sqlalchemy.event.listen(engine, "connect", on_connect)
    sqlalchemy.event.listen(engine, "begin", on_begin)
    engine.dispose()


# ---------------------------------------------------------------------------- retries
def is_transient(error: BaseException) -> bool:
    """True when `error` (or what caused it) says the database could not be reached or was
    busy: worth retrying. Errors about the data or the trial's state are not."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError,
                                sqlalchemy.exc.DisconnectionError, sqlalchemy.exc.TimeoutError)):
            return True
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False


def _with_retries(call: Callable[[], T], budget: float, what: str, on_error: Callable[[], None] | None = None) -> T:
    deadline = time.monotonic() + budget
    delay = 0.5
    while True:
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            if on_error is not None:
                on_error()
            if time.monotonic() + delay > deadline:
                _log.error("storage unreachable while %s for %.0f s, giving up: %s", what, budget, _short(error))
                raise
            _log.warning("storage error while %s (retrying in %.1f s): %s", what, delay, _short(error))
            time.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(5.0, delay * 2)


def _short(error: BaseException) -> str:
    cause = error.__cause__ or error
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"[:300]


_RETRIED_METHODS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_all_studies", "create_new_trial", "_create_new_trial", "set_trial_param", "_set_trial_param",
    "get_trial_id_from_study_id_trial_number", "get_trial_number_from_id", "get_trial_param",
    "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr", "set_trial_system_attr",
    "get_trial", "get_all_trials", "_get_trials", "get_best_trial", "_get_best_trial_id", "get_n_trials",
    "get_trial_params", "get_trial_user_attrs", "get_trial_system_attrs", "record_heartbeat",
)
_inside = threading.local()


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        if getattr(_inside, "active", False):  # nested inside a retried call: that one retries
            return method(self, *args, **kwargs)
        _inside.active = True
        try:
            return _with_retries(lambda: method(self, *args, **kwargs), self.retry_seconds, method.__name__,
                                 self._saw_error)
        finally:
            _inside.active = False

    return call


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage whose calls are retried across database outages (module docstring)."""

    retry_seconds: float = STORAGE_RETRY_SECONDS
    _last_error: float = -1e18

    def _saw_error(self) -> None:
        self._last_error = time.monotonic()

    def recovering(self) -> bool:
        """True while the last storage error is less than a grace period old."""
        grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
        return time.monotonic() - self._last_error < grace

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if self.recovering():
            return []  # the other workers' heartbeats may not have reached the database yet
        stale = _with_retries(lambda: super(RetryingRDBStorage, self)._get_stale_trial_ids(study_id),
                              self.retry_seconds, "looking for stale trials", self._saw_error)
        return [] if self.recovering() else stale


for _name in _RETRIED_METHODS:
    if hasattr(optuna.storages.RDBStorage, _name):
        setattr(RetryingRDBStorage, _name, _retrying(getattr(optuna.storages.RDBStorage, _name)))


# ---------------------------------------------------------------------------- lost trials
class RetryLostTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Queue a lost (stale) trial again, up to `max_retry` times; the trial that exhausts the
    limit is recorded in the study attribute `gave_up:<number>` with the reason."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if self._max_retry is not None and len(history) > self._max_retry:
            record_gave_up(study, trial.number, gave_up_reason(history, self._max_retry))
            return
        super().__call__(study, trial)


def gave_up_reason(history: list[int], max_retry: int = MAX_RETRY) -> str:
    runs = ", ".join(str(n) for n in history)
    return (f"lost {len(history)} times (trials {runs}): not queued again, dptune retries a lost trial "
            f"at most {max_retry} times")


def backend(storage: Any) -> Any:
    """The RDB storage under Optuna's cache wrapper (study._storage), or `storage` itself."""
    return getattr(storage, "_backend", storage)
