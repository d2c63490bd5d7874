"""Worker processes started by the dashboard: recorded in the workspace, re-attached, stopped."""

import sys
import time

import optuna
import pytest

from dptune.ui import workers
from dptune.ui.workspace import Workspace, safe_filename

SLEEPER = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]


@pytest.fixture
def workspace(tmp_path):
    return Workspace.from_env(tmp_path / "ws")


def test_started_workers_are_recorded_and_survive_an_app_restart(workspace):
    records = workers.start_workers(workspace, "s1", n_workers=2, n_trials_each=3, command=SLEEPER)
    try:
        assert len(records) == 2 and all(r.alive for r in records)
        for record in records:
            assert (workspace.workers_dir / "s1" / f"{record.pid}.json").exists()
            assert record.log.startswith(str(workspace.root))
        # a restarted app has no Popen objects: it re-attaches from the records in the workspace
        workers._CHILDREN.clear()
        again = workers.live_workers(Workspace.from_env(workspace.root), "s1")
        assert sorted(r.pid for r in again) == sorted(r.pid for r in records)
        deadline = time.time() + 120
        while "started" not in records[0].log_tail() and time.time() < deadline:
            time.sleep(0.1)
        assert "started" in records[0].log_tail()
    finally:
        stopped = workers.stop_workers(workspace, "s1", grace_seconds=5)
    assert sorted(stopped) == sorted(r.pid for r in records)
    time.sleep(0.2)
    assert not workers.live_workers(workspace, "s1")
    assert len(workers.list_workers(workspace, "s1")) == 2  # the records stay, as history


def test_a_finished_worker_is_not_alive(workspace):
    (record,) = workers.start_workers(workspace, "s2", n_workers=1, n_trials_each=1,
                                      command=[sys.executable, "-c", "pass"])
    deadline = time.time() + 120
    while record.alive and time.time() < deadline:
        time.sleep(0.05)
    assert not record.alive


def test_the_dashboards_workers_run_the_documented_command(workspace, monkeypatch):
    """Worker i of the dashboard runs `python -m dptune worker ... --n-trials K`, seed offset i."""
    started = []

    def spawn(argv, **kwargs):
        kwargs["log_path"].touch()
        started.append((argv, kwargs))
        return _Exited(len(started))

    monkeypatch.setattr(workers, "spawn", spawn)
    monkeypatch.setattr(workers, "_CHILDREN", {})
    records = workers.start_workers(workspace, "s", n_workers=2, n_trials_each=4, storage="sqlite:///x.db")
    expected = ["-m", "dptune", "worker", "--study", "s", "--storage", "sqlite:///x.db", "--n-trials", "4"]
    assert [argv[1:] for argv, _ in started] == [expected, expected + ["--worker-index", "1"]]
    assert [r.command for r in records] == [argv for argv, _ in started]
    assert all(kw["detach"] and str(kw["log_path"]).startswith(str(workspace.workers_dir)) for _, kw in started)


class _Exited:
    """What the fake spawn returns: a process that has already exited."""

    def __init__(self, pid: int):
        self.pid = pid

    def poll(self):
        return 0


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs/path.csv", "a\\..\\b.csv", "..", "ok name.csv"])
def test_uploads_never_leave_the_workspace(workspace, name):
    path = workspace.save_upload(name, b"1,2\n")
    assert path.resolve().parent == workspace.uploads_dir.resolve()
    assert "/" not in safe_filename(name) and not safe_filename(name).startswith(".")


def test_state_round_trips_and_survives_garbage(workspace):
    workspace.save_state({"study": "x"})
    assert workspace.load_state() == {"study": "x"}
    workspace.state_path.write_text("{not json")
    assert workspace.load_state() == {}


@pytest.mark.slow
def test_a_real_worker_runs_the_queued_trials(workspace):
    """`python -m dptune worker` started by the dashboard runs a tiny digits search to the end."""
    from dptune.data import builtin_dataset
    from dptune.spec.search import SearchSpec
    from dptune.study.search import create_study
    from dptune.ui import specs

    dataset = builtin_dataset("digits")
    state = specs.default_state()
    state["search"].update(specs.QUICK_START_SEARCH, n_trials=2, epochs=[1, 1])
    values = specs.search_spec_dict(
        state, dataset_ref={"builtin": "digits", "fingerprint": dataset.fingerprint, "n_train": dataset.n_train},
        model_spec=__import__("dptune.engine.user_models", fromlist=["x"]).suggest_model_spec(dataset),
        workspace=str(workspace.root), storage=workspace.storage_url, study_name="real",
    )
    study, _ = create_study(SearchSpec.from_dict(values), dataset=dataset)
    workers.start_workers(workspace, "real", n_workers=1, n_trials_each=2)
    deadline = time.time() + 900
    while workers.live_workers(workspace, "real") and time.time() < deadline:
        time.sleep(1)
    states = [t.state for t in optuna.load_study(study_name="real", storage=workspace.storage_url).trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2, workers.list_workers(workspace, "real")[0].log_tail()
