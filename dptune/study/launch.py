"""Starting the processes a search runs in: the one worker command line and the one way to
spawn it (used by `dptune tune` for its extra workers and by the dashboard).

A worker is `python -m dptune worker --study NAME --storage URL [--n-trials K]
[--worker-index I] [--heartbeat S]`, the same command a user runs by hand on another machine
(`python -m dptune.study.worker` takes the same arguments). The recipe, whose phases depend
on each other, is driven by one `python -m dptune tune --config <its search YAML>` instead.

Every process gets this one's environment with TF_CPP_MIN_LOG_LEVEL=2 unless set (TensorFlow's
start-up chatter stays out of the log) and PYTHONUNBUFFERED=1 (the log is current while it
runs); stdin is closed. No heavy import here: the dashboard imports this module.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path


def worker_command(study: str, storage: str, *, n_trials: int | None = None, worker_index: int = 0,
                   heartbeat_seconds: int | None = None) -> list[str]:
    """The command line of one worker of `study` in `storage` (an Optuna storage URL).

    n_trials: stop after this many trials (default: when the queue is empty); worker_index:
    offsets the sampler seed so that workers draw different parameters (0 is omitted, the
    default); heartbeat_seconds: default the study's."""
    command = [sys.executable, "-m", "dptune", "worker", "--study", study, "--storage", storage]
    if n_trials is not None:
        command += ["--n-trials", str(int(n_trials))]
    if worker_index:
        command += ["--worker-index", str(int(worker_index))]
    if heartbeat_seconds is not None:
        command += ["--heartbeat", str(int(heartbeat_seconds))]
    return command


def tune_command(config: str | os.PathLike) -> list[str]:
    """`python -m dptune tune --config <search YAML> --no-progress`: the recipe's driver (it
    creates or resumes the study that YAML describes)."""
    return [sys.executable, "-m", "dptune", "tune", "--config", str(config), "--no-progress"]


def spawn(command: Sequence[str], *, log_path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None,
          cwd: str | os.PathLike | None = None, detach: bool = False) -> subprocess.Popen:
    """Start `command` as a child process and return it.

    log_path: stdout and stderr are appended there (discarded when None); env: variables set
    on top of the environment described above; detach: run it in its own session (its own
    process group), so it keeps running when the parent's terminal or browser tab goes and
    `os.killpg(pid, ...)` stops it with its children."""
    process_env = dict(os.environ)
    process_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    process_env["PYTHONUNBUFFERED"] = "1"
    process_env.update(env or {})
    options = dict(stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=process_env,
                   cwd=None if cwd is None else str(cwd), start_new_session=detach)
    if log_path is None:
        return subprocess.Popen(list(command), stdout=subprocess.DEVNULL, **options)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(list(command), stdout=log, **options)


def spawn_worker(study: str, storage: str, *, n_trials: int | None = None, worker_index: int = 0,
                 heartbeat_seconds: int | None = None, log_path: str | os.PathLike | None = None,
                 env: Mapping[str, str] | None = None, detach: bool = False) -> subprocess.Popen:
    """Start one worker (`worker_command`) as a child process (see `spawn`)."""
    command = worker_command(study, storage, n_trials=n_trials, worker_index=worker_index,
                             heartbeat_seconds=heartbeat_seconds)
    return spawn(command, log_path=log_path, env=env, detach=detach)
