"""Reliability on a real PostgreSQL server (a throwaway one: tests/postgres_server.py; skipped,
with the install command, where PostgreSQL is not installed): the README's
`postgresql://user@host/db` URL works as installed, several workers share a study, one is
SIGKILLed mid-trial and the database is restarted mid-search, and nothing is lost, run twice or
left RUNNING."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from postgres_server import PostgresServer, postgres_or_skip
from test_reliability_workers import kill_one_mid_trial

from dptune.study.storage import driver_url, open_storage


@pytest.fixture(scope="module")
def postgres():
    bin_dir = postgres_or_skip()
    with PostgresServer(bin_dir) as server:
        yield server


def _fresh_database(server: PostgresServer, name: str) -> str:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=server.port, user=server.user, dbname="postgres",
                         autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://{server.user}@127.0.0.1:{server.port}/{name}"


def test_the_readme_postgresql_url_works_as_installed(postgres):
    assert postgres.url.startswith("postgresql://")  # the README's form, no driver named
    assert driver_url(postgres.url).startswith("postgresql+psycopg://")
    storage = open_storage(postgres.url)
    study = optuna.create_study(study_name="readme", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert [t.state for t in optuna.load_study(study_name="readme", storage=open_storage(postgres.url)).trials] == [
        TrialState.COMPLETE] * 2


def test_storage_calls_survive_a_database_restart(postgres):
    url = _fresh_database(postgres, "restart")
    storage = open_storage(url, heartbeat_seconds=5)
    study = optuna.create_study(study_name="r", storage=storage)
    study.optimize(lambda trial: 1.0, n_trials=1)
    postgres.restart(down_seconds=1)
    study.optimize(lambda trial: 1.0, n_trials=1)  # the pooled connections died with the server
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2


@pytest.mark.slow
def test_a_sigkilled_worker_and_a_database_restart_lose_nothing_on_postgres(tmp_path, postgres):
    url = _fresh_database(postgres, "kill")
    summary = kill_one_mid_trial(tmp_path, url, heartbeat=3,
                                 restart_database=lambda: postgres.restart(down_seconds=1))
    assert summary["lost"] == 0 and summary["duplicated"] == 0 and summary["database_restarted"]
