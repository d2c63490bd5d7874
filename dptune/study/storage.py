"""The Optuna storage of dptune's studies (SQLite by default, any RDB URL such as PostgreSQL).

Its own module so that the dashboard can open the storage without the training side of the
study layer (which imports TensorFlow through dptune.engine)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna

MAX_RETRY = 2
"""How many times a killed worker's trial is re-queued (Optuna's heartbeat retry callback)."""


def open_storage(url: str, *, heartbeat_seconds: int | None = None) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for `url` (SQLite file, PostgreSQL, MySQL, ...).

    With `heartbeat_seconds`, running trials send a heartbeat; one silent for 3 heartbeats
    (a killed worker) is failed and re-queued (up to MAX_RETRY times) by the next worker.
    """
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        kwargs: dict[str, Any] = {}
        if heartbeat_seconds:
            kwargs = dict(
                heartbeat_interval=int(heartbeat_seconds),
                grace_period=3 * int(heartbeat_seconds),
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
            )
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
