"""The line protocol between `benchmarks/bench_peers.py` and its workers (standard library only,
so that every worker imports it in its own environment).

A worker builds its paths (name -> a callable doing one training step), runs `warmup` untimed
steps of each, and prints one line `ready <json>` (framework, versions, parameter count). Then,
for each line `run K` on its standard input, it runs K timed steps of every path in turn and
prints one line `times <json>`: per path, the CPU time (`time.process_time`, all threads of the
process) and the wall time (`time.perf_counter`) of each step, in seconds. `quit` or the end of
its input ends it. Anything else the frameworks print goes to standard error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def single_thread_environment() -> None:
    """One thread for OpenMP, MKL and TensorFlow's pools (before any framework is imported)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def worker_arguments(description: str) -> argparse.Namespace:
    """The arguments the driver passes to every worker: B, N, C, sigma, warm-up steps."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=int, required=True, help="B, (expected) examples per step")
    parser.add_argument("--n", type=int, required=True, help="N, rows of random 28x28x1 data")
    parser.add_argument("--clip", type=float, required=True, help="C, the per-example L2 clip norm")
    parser.add_argument("--sigma", type=float, required=True, help="noise multiplier")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per path before `ready`")
    return parser.parse_args()


def _reply(kind: str, payload: dict) -> None:
    print(f"{kind} {json.dumps(payload)}", file=sys.__stdout__, flush=True)


def serve(paths: dict[str, Callable[[], object]], info: dict, warmup: int) -> None:
    """Warm every path up, say `ready`, then answer `run K` lines until `quit` or end of input.
    The frameworks' own printing is sent to standard error, so standard output carries only
    the protocol's lines."""
    for step in paths.values():
        for _ in range(warmup):
            step()
    _reply("ready", info)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        steps = int(command[1])
        times = {}
        for name, step in paths.items():
            cpu, wall = [], []
            for _ in range(steps):
                cpu0, wall0 = time.process_time(), time.perf_counter()
                step()
                cpu.append(time.process_time() - cpu0)
                wall.append(time.perf_counter() - wall0)
            times[name] = {"cpu": cpu, "wall": wall}
        _reply("times", times)


def redirect_stdout_to_stderr() -> None:
    """Send `print` and library output on standard output to standard error (the protocol
    writes to `sys.__stdout__`)."""
    sys.stdout = sys.stderr
