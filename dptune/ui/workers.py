"""Worker processes started by the dashboard, recorded in the workspace so a restarted app
re-attaches to them (no Streamlit import here).

A worker is `python -m dptune worker --study NAME --storage URL --n-trials K`
(dptune.study.launch builds and spawns it, as for `dptune tune`), started in its own session
(its own process group, so closing the app or the browser tab never stops it, and stopping it
stops its children too). Its record `<workspace>/workers/<study>/<pid>.json` holds the pid,
the command, the log file and the start time; the log is `<pid>.log` next to it.

A pid read from a record is signalled only while that process still runs the recorded command
(`runs_recorded_command`: /proc/<pid>/cmdline, or `ps`): a pid reused by another process after
the worker ended is left alone, and counts as not alive. A worker that exited by itself (killed,
crashed, or the storage unreachable past its retries) while its study still has unfinished
trials is "dead" (`dead_workers`); `restart_dead_workers` starts the same command again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import asdict, dataclass, replace
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
    stopped: bool = False  # stopped from the dashboard (not dead)
    replaced_by: int | None = None  # the pid of the worker that restarted it

    @property
    def alive(self) -> bool:
        return process_alive(self.pid, self.started) and runs_recorded_command(self.pid, self.command)

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


def process_command(pid: int) -> list[str] | None:
    """The command line of process `pid` (None when it is gone or unreadable).

    A process caught in the middle of exec (just spawned) has an empty command line for a
    moment: read again for up to half a second unless it is a zombie."""
    for _ in range(50):
        command = _read_command(pid)
        if command != []:
            return command
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return None
        if state in ("Z", "X"):
            return None
        time.sleep(0.01)
    return None


def _read_command(pid: int) -> list[str] | None:
    """[] for an empty command line (a zombie, a kernel thread, a process in exec)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self/cmdline").exists():
            return None  # /proc works: the process is gone
        try:  # no /proc (macOS): ask ps
            out = subprocess.run(["ps", "-o", "args=", "-p", str(int(pid))], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else None
    except OSError:
        return None
    if not raw:
        return []
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def runs_recorded_command(pid: int, command: list[str]) -> bool:
    """True when process `pid` runs `command` (a worker's recorded command line): before the
    dashboard signals a pid read from the workspace, it checks it is still that worker."""
    actual = process_command(pid)
    if actual is None:
        return False
    if actual == list(command):
        return True
    return " ".join(actual) == " ".join(command)  # `ps` gives one string, split on spaces


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


def _rewrite(workspace: Workspace, record: WorkerRecord, **changes: object) -> WorkerRecord:
    updated = replace(record, **changes)
    path = workspace.worker_dir(record.study) / f"{record.pid}.json"
    try:
        path.write_text(json.dumps(asdict(updated), indent=1))
    except OSError:
        pass
    return updated


def dead_workers(workspace: Workspace, study: str) -> list[WorkerRecord]:
    """The study's recorded workers that are gone although nobody stopped them (killed,
    crashed, storage unreachable) and that no restart replaced yet; newest first. Whether that
    matters depends on the study: the page shows them while trials are unfinished."""
    return [record for record in list_workers(workspace, study)
            if not record.stopped and record.replaced_by is None and not record.alive]


def exit_summary(record: WorkerRecord) -> str:
    """The last `error:` or exception line of a worker's log, or its last line."""
    lines = [line for line in record.log_tail(40).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:") or "Error" in line.split(":", 1)[0]:
            return line[:300]
    return lines[-1][:300] if lines else "(empty log)"


def restart_dead_workers(workspace: Workspace, study: str, *, env: dict[str, str] | None = None) -> list[WorkerRecord]:
    """Start each dead worker's command again (a new process and record); the old record says
    which pid replaced it. Returns the new records."""
    started = []
    for record in dead_workers(workspace, study):
        (new,) = start_workers(workspace, study, n_workers=1, n_trials_each=record.n_trials, storage=record.storage,
                               env=env, command=record.command)
        _rewrite(workspace, record, replaced_by=new.pid)
        started.append(new)
    return started


def stop_workers(workspace: Workspace, study: str, *, grace_seconds: float = 5.0) -> list[int]:
    """Stop the study's live workers: SIGTERM to each process group, SIGKILL after the grace.

    Only a pid that still runs its record's command is signalled (runs_recorded_command),
    checked again before the SIGKILL."""
    stopped = []
    commands = {}
    for record in live_workers(workspace, study):
        if not runs_recorded_command(record.pid, record.command):
            continue
        try:
            os.killpg(record.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            continue
        stopped.append(record.pid)
        commands[record.pid] = record.command
        _rewrite(workspace, record, stopped=True)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and any(process_alive(pid) for pid in stopped):
        time.sleep(0.1)
    for pid in stopped:
        if process_alive(pid) and runs_recorded_command(pid, commands[pid]):
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
