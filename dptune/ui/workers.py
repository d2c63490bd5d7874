"""Worker processes started by the dashboard, recorded in the workspace so a restarted app
re-attaches to them (no Streamlit import here).

A worker is `python -m dptune worker --study NAME --storage URL --n-trials K`
(dptune.study.launch builds and spawns it, as for `dptune tune`), started in its own session
(its own process group, so closing the app or the browser tab never stops it, and stopping it
stops its children too). Its record `<workspace>/workers/<study>/<pid>.json` holds the pid,
the command, the log file and the start time; the log is `<pid>.log` next to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dptune.study.launch import spawn, worker_command
from dptune.ui.workspace import Workspace

# Popen objects of the workers this process started: polled so finished ones are reaped
# (a finished child that is never waited for would look alive as a zombie).
_CHILDREN: dict[int, subprocess.Popen] = {}


@dataclass(frozen=True)
class WorkerRecord:
    pid: int
    study: str
    storage: str
    n_trials: int
    command: list[str]
    log: str
    started: float

    @property
    def alive(self) -> bool:
        return process_alive(self.pid, self.started)

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = Path(self.log).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def process_alive(pid: int, started: float | None = None) -> bool:
    """True while `pid` runs (not a zombie) and is not a newer process that reused the pid."""
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)
            return False
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return True
        if fields and fields[0] in ("Z", "X"):
            return False
        if started is not None:
            try:
                ticks = int(fields[19])
                boot = _boot_time()
                if boot is not None and boot + ticks / os.sysconf("SC_CLK_TCK") > started + 5:
                    return False  # the pid was reused by a process started after our worker
            except (ValueError, IndexError, OSError):
                pass
    return True


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def start_workers(
    workspace: Workspace,
    study: str,
    *,
    n_workers: int,
    n_trials_each: int,
    storage: str | None = None,
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
) -> list[WorkerRecord]:
    """Start `n_workers` worker processes for `study`, each running up to `n_trials_each` trials
    (worker i offsets its sampler seed by i), and record them.

    `command` replaces the worker command line (the recipe mode runs one `dptune tune` driver);
    env: variables set for the processes on top of dptune.study.launch.spawn's."""
    storage = storage or workspace.storage_url
    directory = workspace.worker_dir(study)
    directory.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(max(1, int(n_workers))):
        argv = list(command) if command else worker_command(study, storage, n_trials=n_trials_each, worker_index=index)
        log_path = directory / f"pending-{time.time_ns()}.log"
        process = spawn(argv, log_path=log_path, env=env, cwd=workspace.root.parent, detach=True)
        _CHILDREN[process.pid] = process
        final_log = directory / f"{process.pid}.log"
        os.replace(log_path, final_log)  # the child's open file descriptor follows the rename
        record = WorkerRecord(
            pid=process.pid, study=study, storage=storage, n_trials=int(n_trials_each), command=argv,
            log=str(final_log), started=time.time(),
        )
        (directory / f"{process.pid}.json").write_text(json.dumps(asdict(record), indent=1))
        records.append(record)
    return records


def list_workers(workspace: Workspace, study: str | None = None) -> list[WorkerRecord]:
    """Every recorded worker (alive or not) of `study`, or of all studies; newest first."""
    directories = [workspace.worker_dir(study)] if study else sorted(workspace.workers_dir.glob("*"))
    records = []
    for directory in directories:
        for path in directory.glob("*.json"):
            try:
                values = json.loads(path.read_text())
                records.append(WorkerRecord(**values))
            except (OSError, ValueError, TypeError):
                continue
    return sorted(records, key=lambda r: r.started, reverse=True)


def live_workers(workspace: Workspace, study: str | None = None) -> list[WorkerRecord]:
    return [record for record in list_workers(workspace, study) if record.alive]


def stop_workers(workspace: Workspace, study: str, *, grace_seconds: float = 5.0) -> list[int]:
    """Stop the study's live workers: SIGTERM to each process group, SIGKILL after the grace."""
    stopped = []
    for record in live_workers(workspace, study):
        try:
            os.killpg(record.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            continue
        stopped.append(record.pid)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(process_alive(pid) for pid in stopped):
        time.sleep(0.1)
    for pid in stopped:
        if process_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    for pid in stopped:
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            try:
                child.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
    return stopped
