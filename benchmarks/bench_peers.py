"""CPU time per DP-SGD step: dptune against TF Privacy and Opacus, on the same model and batch.

The model is bench_dpsgd.py's seed CNN (TF Privacy's MNIST tutorial CNN, ReLU, 26,010
parameters) on random 28x28x1 data (N = 10,000 rows, 10 classes), B = 250 (expected) examples
per step, C = 1.5, sigma = 1.3, SGD with learning rate 0.25. Each framework runs in its own
process and environment, built layer for layer the same (the parameter counts are printed and
must match):
  dptune       the project's .venv (the interpreter running this script): non-private
               Keras 3 steps, dptune's default per-example step with Poisson sampling
               (dp_poisson) and the same on fixed batches (dp_fixed_batch), built as
               bench_dpsgd.py builds them -- peers/dptune_worker.py;
  TF Privacy   DPSequential (XLA on, its default, and off) and VectorizedDPKerasSGDOptimizer,
               fixed batches of B, and plain Keras 2 steps -- peers/tfp_worker.py;
  Opacus       GradSampleModule hooks and ghost clipping, both with Poisson sampling, and a
               plain PyTorch step -- peers/opacus_worker.py.
The peers' environments are virtual environments under --envs-dir (default
~/.cache/dptune-bench-peers), reused when their `pip freeze` equals the exact pins of
peers/{tfp,opacus}-requirements.txt, otherwise (re)created from those pins with pip and the
configured package index (pip's output goes to <envs-dir>/<name>.log). The workers' standard
error goes to <envs-dir>/<name>-worker.log.

How it is timed: every worker runs with one thread (OMP/MKL/TensorFlow pools = 1,
torch.set_num_threads(1)), builds its paths and warms each up (tracing, compilation), then
waits. The rounds are interleaved: in each round every framework in turn (the order rotated
from round to round) runs K timed steps of each of its paths while the others wait, so that
load from other work on a shared machine falls on every path alike. A step's time is its
process CPU time (`time.process_time`), batch sampling included; wall time is shown beside it.
The table gives, per path, the median over its rounds x K steps, its ratio to its own
framework's non-private step (the fastest of that framework's non-private paths), and
dptune's speed-up over it: the path's median CPU time / dptune dp_poisson's. The load
average is printed before and after. Not run in CI.

    .venv/bin/python benchmarks/bench_peers.py [--quick] [--rounds 7] [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from peers._protocol import THREAD_VARIABLES

PEERS = Path(__file__).resolve().parent / "peers"
BATCH, N, CLIP, SIGMA = 250, 10_000, 1.5, 1.3  # as in bench_dpsgd.py
DPTUNE_DEFAULT = ("dptune", "dp_poisson")


def _pins(requirements: Path) -> list[str]:
    lines = (line.strip() for line in requirements.read_text().splitlines())
    return sorted(line for line in lines if line and not line.startswith("#"))


def _freeze(python: Path) -> list[str]:
    out = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def ensure_environment(name: str, envs_dir: Path, base_python: str) -> Path:
    """The Python of environment `name`, reused when it holds exactly the pinned packages,
    else made anew from peers/<name>-requirements.txt."""
    requirements = PEERS / f"{name}-requirements.txt"
    env = envs_dir / name
    python = env / "bin" / "python"
    if python.exists() and _freeze(python) == _pins(requirements):
        print(f"environment {name}: reused {env}")
        return python
    if (env / "pyvenv.cfg").exists():
        shutil.rmtree(env)
    print(f"environment {name}: creating {env} from {requirements.name} (pip's output in {envs_dir / name}.log)",
          flush=True)
    envs_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([base_python, "-m", "venv", env], check=True)
    with open(envs_dir / f"{name}.log", "w") as log:
        subprocess.run([python, "-m", "pip", "install", "-r", requirements], stdout=log, stderr=subprocess.STDOUT,
                       check=True)
    if _freeze(python) != _pins(requirements):
        sys.exit(f"environment {name}: `pip freeze` in {env} differs from {requirements}")
    return python


class Worker:
    """One framework's worker process, spoken to by peers/_protocol.py's lines."""

    def __init__(self, name: str, python: Path, script: str, args: argparse.Namespace, log: Path):
        self.name, self.log = name, log
        env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1"), "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [str(python), script, "--batch", str(args.batch), "--n", str(N), "--clip", str(CLIP),
                   "--sigma", str(SIGMA), "--warmup", str(args.warmup)]
        self._stderr = open(log, "w")  # closed in close()
        self.process = subprocess.Popen(command, cwd=PEERS, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._stderr, text=True, bufsize=1)

    def reply(self, kind: str) -> dict:
        line = self.process.stdout.readline()
        if not line.startswith(kind + " "):
            self.process.kill()
            tail = "".join(self.log.read_text().splitlines(keepends=True)[-15:])
            sys.exit(f"the {self.name} worker stopped before `{kind}` (its standard error, {self.log}):\n{tail}")
        return json.loads(line[len(kind) + 1:])

    def run(self, steps: int) -> dict:
        self.process.stdin.write(f"run {steps}\n")
        self.process.stdin.flush()
        return self.reply("times")

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self._stderr.close()


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else ())
             if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--steps", type=int, default=5, help="K, timed steps of each path per round (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each path first (default 3)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"B, (expected) examples per step (default {BATCH})")
    parser.add_argument("--quick", action="store_true", help="a short run: 2 rounds of 2 steps, 1 warm-up step")
    parser.add_argument("--envs-dir", type=Path, default=Path.home() / ".cache" / "dptune-bench-peers",
                        help="where the peers' environments are kept (default ~/.cache/dptune-bench-peers)")
    parser.add_argument("--python", default=sys._base_executable,
                        help="the interpreter the peers' environments are made with, Python 3.9-3.11 for "
                             "TensorFlow 2.15 (default: the one under this script's venv)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.warmup = 2, 2, 1

    pythons = {"dptune": Path(sys.executable)}
    pythons.update({name: ensure_environment(name, args.envs_dir, args.python) for name in ("tfp", "opacus")})
    labels = {"dptune": "dptune", "tfp": "TF Privacy", "opacus": "Opacus"}
    load_before = _load()
    started = time.time()
    workers = [Worker(name, pythons[name], f"{name}_worker.py", args, args.envs_dir / f"{name}-worker.log")
               for name in labels]
    ready = {worker.name: worker.reply("ready") for worker in workers}
    if len({info["parameters"] for info in ready.values()}) != 1:
        sys.exit(f"the frameworks' models differ in parameter count: {ready}")
    times: dict[tuple[str, str], dict[str, list[float]]] = {}
    for round_ in range(args.rounds):
        for worker in workers[round_ % len(workers):] + workers[:round_ % len(workers)]:
            for path, measured in worker.run(args.steps).items():
                entry = times.setdefault((worker.name, path), {"cpu": [], "wall": []})
                entry["cpu"] += measured["cpu"]
                entry["wall"] += measured["wall"]
    for worker in workers:
        worker.close()
    load_after = _load()

    cpu = {key: statistics.median(value["cpu"]) for key, value in times.items()}
    wall = {key: statistics.median(value["wall"]) for key, value in times.items()}
    baseline = {name: min((key for key in cpu if key[0] == name and key[1].startswith("nonprivate")), key=cpu.get)
                for name in labels}
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}; {_cpu_model()}, {os.cpu_count()} cores, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    print(f"seed CNN, N {N}, B {args.batch}, C={CLIP}, sigma={SIGMA}, SGD 0.25; one thread per worker; "
          f"{args.warmup} warm-up steps, then {args.rounds} interleaved rounds x {args.steps} steps per path "
          f"({time.time() - started:.0f} s in all)")
    print(f"load average (1, 5, 15 min): {load_before} before, {load_after} after")
    for name, info in ready.items():
        print(f"  {labels[name]:<11}{info['framework']}; {info['parameters']:,} parameters")

    default = cpu[DPTUNE_DEFAULT]
    print(f"\n{'path':<42}{'CPU ms/step':>12}{'wall ms':>10}{'x own non-private':>19}{'dptune speed-up':>17}")
    for name, path in times:
        key = (name, path)
        ratio = cpu[key] / cpu[baseline[name]]
        speed_up = "" if path.startswith("nonprivate") else f"{cpu[key] / default:.2f}x"
        mark = " *" if key == baseline[name] else ""
        print(f"{labels[name] + ' ' + path + mark:<42}{cpu[key] * 1e3:>12.1f}{wall[key] * 1e3:>10.1f}"
              f"{ratio:>19.2f}{speed_up:>17}")
    print("* the framework's non-private step that the ratios divide by (its fastest non-private path)")
    print(f"dptune speed-up: the path's median CPU time / dptune {DPTUNE_DEFAULT[1]}'s "
          f"({default * 1e3:.1f} ms, Poisson sampling, per-example clipping m = B)")


if __name__ == "__main__":
    main()
