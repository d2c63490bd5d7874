"""Where the time goes between `dptune tune` and its first trial, on an MNIST-sized stored dataset
(issue 14, item 5). Measured in one run; asserts nothing.

The dataset: 60,000 synthetic 28x28x1 images of 10 classes (float32, ~190 MB of arrays),
prepared once and stored by fingerprint in `--workspace` (default: a cache folder outside the
project, reused across runs). Then, each in a fresh Python process (what a user pays):

1. stages, in the order `dptune tune` runs them: import the CLI; import the search layer
   (TensorFlow, Keras, Optuna); read the search YAML; read the stored .npz; recompute its
   SHA-256 fingerprint (the integrity check of `Dataset.load`); check the budget; create
   the study (storage, planned trials);
2. end to end: `dptune tune --config` in a subprocess, polling its storage for the first
   trial's start and its first recorded epoch (seconds from the process start).

The machine load (1-minute load average) is printed before and after; `--repeats` runs each
measurement several times, interleaved, and prints medians.

    python benchmarks/bench_startup.py [--repeats 3] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

STAGES_SCRIPT = r"""
import json, sys, time
marks = [("start", time.perf_counter())]
def mark(name): marks.append((name, time.perf_counter()))
import dptune.cli.main; mark("import the CLI")
import dptune.study.search; mark("import the search layer (TensorFlow, Optuna)")
from dptune.spec.search import load_search_spec
spec = load_search_spec(sys.argv[1]); mark("read the search YAML")
from dptune.data.dataset import Dataset
from dptune.workspace import Workspace
dataset = Dataset._read(Workspace.at(spec.workspace).dataset_path(spec.dataset.fingerprint)); mark("read the .npz (and its stored fingerprint)")
assert dataset.fingerprint == spec.dataset.fingerprint; mark("check the fingerprint (hashed only if not stored)")
from dptune.study.budget import check_budget
check_budget(spec, dataset.n_train); mark("check the budget")
dptune.study.search.create_study(spec, dataset=dataset); mark("create the study")
print(json.dumps([(b[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]))
"""


def _dataset(workspace: Path) -> dict:
    """The stored MNIST-sized dataset's reference (prepared once per workspace)."""
    marker = workspace / "startup-dataset.json"
    if marker.exists():
        return json.loads(marker.read_text())
    from dptune.data import builtin_dataset

    dataset = builtin_dataset("synthetic", n_examples=60_000, n_classes=10, image_shape=(28, 28, 1))
    dataset.save(workspace)
    ref = {"name": dataset.name, "fingerprint": dataset.fingerprint, "n_train": dataset.n_train}
    marker.write_text(json.dumps(ref))
    return ref


def _search_yaml(folder: Path, workspace: Path, ref: dict, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "mode": "budgeted", "dataset": ref, "model": {"kind": "mlp", "hidden_units": [64]}, "target_epsilon": 3.0,
        "n_trials": 1, "study_name": name, "workspace": str(workspace), "storage": f"sqlite:///{folder / name}.db",
        "ranges": {"batch_size": 256, "epochs": 1},
    }))
    return path


def _stages(config: Path) -> list[tuple[str, float]]:
    out = subprocess.run([sys.executable, "-c", STAGES_SCRIPT, str(config)], capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _end_to_end(config: Path, name: str, folder: Path) -> tuple[float, float]:
    """Seconds from starting `dptune tune` to its first trial RUNNING and to its first epoch."""
    import optuna

    storage = f"sqlite:///{folder / name}.db"
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "dptune", "tune", "--config", str(config), "--no-progress"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    first_trial = first_epoch = None
    while first_epoch is None and process.poll() is None:
        time.sleep(0.2)
        try:
            trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        except Exception:  # the study does not exist yet  # noqa: BLE001
            continue
        running = [t for t in trials if t.state.name in ("RUNNING", "COMPLETE")]
        if running and first_trial is None:
            first_trial = time.perf_counter() - started
        if any(t.user_attrs.get("history") for t in trials):
            first_epoch = time.perf_counter() - started
    process.wait()
    return first_trial or float("nan"), first_epoch or float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workspace", default=str(Path.home() / ".cache" / "dptune-bench-startup"))
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workspace = Path(args.workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    ref = _dataset(workspace)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; dataset {ref['name']} "
          f"(N = {ref['n_train']:,})")
    stages: dict[str, list[float]] = {}
    ends: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for repeat in range(args.repeats):
            for name, seconds in _stages(_search_yaml(folder, workspace, ref, f"stages{repeat}")):
                stages.setdefault(name, []).append(seconds)
            ends.append(_end_to_end(_search_yaml(folder, workspace, ref, f"e2e{repeat}"), f"e2e{repeat}", folder))
    print(f"{'stage (fresh process)':<48}{'median s':>10}   all")
    for name, values in stages.items():
        print(f"{name:<48}{statistics.median(values):>10.2f}   {', '.join(f'{v:.2f}' for v in values)}")
    print(f"{'total of the stages':<48}{sum(statistics.median(v) for v in stages.values()):>10.2f}")
    print(f"{'dptune tune: first trial running':<48}{statistics.median(e[0] for e in ends):>10.2f}   "
          f"{', '.join(f'{e[0]:.2f}' for e in ends)}")
    print(f"{'dptune tune: first epoch recorded':<48}{statistics.median(e[1] for e in ends):>10.2f}   "
          f"{', '.join(f'{e[1]:.2f}' for e in ends)}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
