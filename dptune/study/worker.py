"""A worker process: pull trials from a dptune study and run them until none is left.

    python -m dptune worker --study NAME --storage URL [--n-trials K]
    python -m dptune.study.worker --study NAME --storage URL [--n-trials K]   (the same)

Start as many as you like, on one machine (they share a GPU: memory growth is on) or on
several pointed at one storage (PostgreSQL, e.g. postgresql://user:pw@host/db). Each loads
the study's dataset from the workspace by its fingerprint (copy `<fingerprint>.npz` to the
other machines' workspace, or give --workspace). Trials send heartbeats: a worker killed
mid-trial leaves its trial RUNNING only for the grace period (3 heartbeats); the next
worker to look marks it FAIL and re-queues it. Finished trials are in the storage as soon
as they end, so killing a worker never loses one.

Reliability (dptune.study.storage): each queued trial is claimed by exactly one worker (on
SQLite every transaction takes the write lock at its start); a storage call that cannot reach
the database (a restart, a busy or full disk) is retried with backoff for up to
STORAGE_RETRY_SECONDS (120 s; $DPTUNE_STORAGE_RETRY_SECONDS), after which the worker exits with an `error:` line (exit 3);
a worker whose trial was taken over while it was silent (frozen, or cut off past the grace
period) logs it and goes on with the next trial; a trial lost to faults is re-queued at most
MAX_RETRY (2) times, and one lost once more is reported as given up (its fail reason says
so), not silently dropped.

dptune.study.launch builds this command line and starts it (for `dptune tune` and the
dashboard). This module's top imports stay light (the `dptune` parser imports
`add_arguments`); TensorFlow and Optuna are imported when a worker runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dptune.errors import DPTuneError


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///dptune-data/studies.db")
    parser.add_argument("--n-trials", type=int, default=None, help="stop after this many trials (default: until the queue is empty)")
    parser.add_argument("--heartbeat", type=int, default=None, help="heartbeat interval in seconds (default: the study's)")
    parser.add_argument("--workspace", default=None, help="directory holding the dataset .npz (default: the study's)")
    parser.add_argument("--worker-index", type=int, default=0, help="offsets the sampler seed so workers differ")
    parser.add_argument("--no-wait", action="store_true", help="exit when nothing waits, even while other trials run")
    return parser


def run_worker(
    study_name: str,
    storage: str,
    *,
    n_trials: int | None = None,
    heartbeat_seconds: int | None = None,
    workspace: str | None = None,
    worker_index: int = 0,
    wait: bool = True,
    train_fn=None,
) -> int:
    """Run queued trials of `study_name`; returns how many this worker ran."""
    from dptune.data.dataset import Dataset
    from dptune.engine.runtime import share_gpus_between_processes
    from dptune.study.format import StudyRecord
    from dptune.study.results import update_search_cost
    from dptune.study.search import load_study, open_storage, run_queued_trials

    _, spec, _ = load_study(study_name, open_storage(storage), load_dataset=False)
    share_gpus_between_processes()
    heartbeat = heartbeat_seconds or spec.heartbeat_seconds
    study, spec, _ = load_study(study_name, storage, heartbeat_seconds=heartbeat, load_dataset=False,
                                worker_index=worker_index)
    record = StudyRecord.of(study)
    dataset = Dataset.load(record.dataset.fingerprint, workspace or record.workspace)
    if heartbeat != spec.heartbeat_seconds:
        spec = spec.replace(heartbeat_seconds=heartbeat)
    ran = run_queued_trials(
        study, spec, dataset, max_trials=n_trials, wait_for_running=wait, train_fn=train_fn,
        on_trial_end=update_search_cost,
    )
    update_search_cost(study)
    return ran


def handle(args: argparse.Namespace) -> int:
    """The `worker` subcommand. Exit 3 when the storage stayed unreachable past its retries."""
    from dptune.study.storage import STORAGE_RETRY_SECONDS, is_transient

    try:
        ran = run_worker(
            args.study, args.storage, n_trials=args.n_trials, heartbeat_seconds=args.heartbeat,
            workspace=args.workspace, worker_index=args.worker_index, wait=not args.no_wait,
        )
    except Exception as error:
        if not is_transient(error):
            raise
        cause = error.__cause__ or error
        first_line = (str(cause).splitlines() or [""])[0][:300]
        print(f"error: the storage could not be reached for {STORAGE_RETRY_SECONDS:.0f} s ({type(cause).__name__}: "
              f"{first_line}); start the worker again once the database is back", file=sys.stderr)
        return 3
    print(f"worker {args.worker_index}: ran {ran} trial(s) of study {args.study!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(prog="python -m dptune.study.worker", description=__doc__.split("\n")[0]))
    args = parser.parse_args(argv)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    try:
        return handle(args)
    except DPTuneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
