"""`dptune federate` on loopback: a Flower server and 3 participant processes, each training on
its own shard, reproduce the one-process simulation (`run_collaborative`) of the same YAML.

Why exactly, not only within noise: with privacy none every choice is public and fixed by the
YAML's seed (the initial weights, the split, each participant's own mini-batch stream
`participant_rng`, the server's order and download ties), and the server applies the uploads
in the simulation's order, one participant per Flower round; the arrays cross the wire
bit-exact. So each round's global accuracy is the simulation's to the validation row.
With dp_sgd or laplace_svt the noise is fresh and secret in each process, so only ε (a
function of public quantities) is compared exactly, and the accuracy against the spread of
repeated simulations.
"""

from __future__ import annotations

import math
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from dptune.data import builtin_dataset
from dptune.engine.collaborative import run_collaborative
from dptune.privacy.collaborative import NOT_COVERED
from dptune.privacy.statement import format_epsilon
from dptune.spec.collaborative import collaborative_run_from_dict

PARTICIPANTS = 3
SIMULATIONS = 8  # one-process runs the loopback run's accuracy is compared with, under privacy
GUARD_S = 600  # a hung run fails the test instead of blocking it; not a speed requirement
BASE = {"dataset": {"builtin": "digits"}, "model": {"kind": "logreg"},
        "collaborative": {"participants": PARTICIPANTS, "rounds": 2, "theta_upload": 0.1}}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _federate(tmp_path, values: dict) -> str:
    """Run the server and the participants as processes; the server's stdout (all must exit 0).
    Stops at the first failure: the others would wait for the failed one until --wait."""
    config = tmp_path / "collab.yaml"
    config.write_text(yaml.safe_dump(values))
    common = ["--config", str(config), "--address", f"127.0.0.1:{_free_port()}", "--wait", "300"]
    roles = {"server": ["server"], **{f"participant{i}": ["participant", "--participant", str(i)]
                                      for i in range(PARTICIPANTS)}}
    processes = {}
    try:
        for name, role in roles.items():
            with open(tmp_path / f"{name}.out", "w") as out, open(tmp_path / f"{name}.err", "w") as err:
                processes[name] = subprocess.Popen([sys.executable, "-m", "dptune", "federate", *role, *common],
                                                   stdout=out, stderr=err)
        deadline = time.monotonic() + GUARD_S
        while time.monotonic() < deadline:
            codes = [process.poll() for process in processes.values()]
            if all(code == 0 for code in codes) or any(code not in (None, 0) for code in codes):
                break
            time.sleep(0.5)
        for name, process in processes.items():
            state = "is still running" if process.poll() is None else f"exited {process.poll()}"
            assert process.poll() == 0, f"{name} {state}:\n{(tmp_path / f'{name}.err').read_text()[-3000:]}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return (tmp_path / "server.out").read_text()


def _round_accuracies(out: str) -> list[str]:
    return re.findall(r"round \d+: global accuracy (\d\.\d{4})", out)


@pytest.fixture(scope="module")
def digits():
    return builtin_dataset("digits")


def test_loopback_run_equals_the_simulation(tmp_path, digits):
    out = _federate(tmp_path, BASE)
    run = collaborative_run_from_dict(BASE)
    simulated = run_collaborative(digits, run.model, run.collaborative)
    # 4 decimals tell apart every count of correct rows out of the 374 validation rows
    assert _round_accuracies(out) == [f"{accuracy:.4f}" for accuracy in simulated.history]
    assert f"final global accuracy {simulated.global_accuracy:.4f} after 6 Flower rounds" in out
    assert NOT_COVERED in out
    assert re.findall(r"^ +\d +(\d+) +∞ \(no privacy\) +- +(\d+)$", out, re.MULTILINE) == \
        [(str(n), f"{sent:.0f}") for n, sent in zip(simulated.shard_sizes, simulated.bytes_uploaded_per_round)]


@pytest.mark.parametrize("privacy", [
    {"kind": "dp_sgd", "noise_multiplier": 1.0, "l2_norm_clip": 1.0, "batch_size": 32},
    {"kind": "laplace_svt", "epsilon": 50.0, "gamma": 0.01},
], ids=lambda privacy: privacy["kind"])
def test_private_loopback_run_charges_each_participant_as_the_simulation(tmp_path, digits, privacy):
    collaborative = {**BASE["collaborative"], "privacy": privacy}
    if privacy["kind"] == "laplace_svt":
        collaborative["selection"] = "random_above_threshold"
    values = {**BASE, "delta": 1e-5, "collaborative": collaborative}
    out = _federate(tmp_path, values)
    run = collaborative_run_from_dict(values)
    simulations = [run_collaborative(digits, run.model, run.collaborative, delta=run.delta) for _ in range(SIMULATIONS)]
    simulated = simulations[0]
    printed = re.findall(r"^ +(\d) +(\d+) +(\S+) +\S+ +[\d,]+$", out, re.MULTILINE)
    assert printed == [(str(c.participant), str(c.n_train), format_epsilon(c.epsilon)) for c in simulated.privacy]
    assert all(math.isfinite(c.epsilon) for c in simulated.privacy)
    # fresh secret noise in every run, on both sides: the loopback run's accuracy is one draw
    # from the distribution the simulations sample (measured over 12 runs: dp_sgd mean 0.273,
    # sd 0.031; laplace_svt 0.200, sd 0.006). "The same within noise": within 4 of the
    # simulations' standard deviations of their mean (+0.01 for a spread estimated from few runs);
    # a server that dropped the uploads would stay near chance (0.1), far outside.
    accuracies = [float(a) for a in _round_accuracies(out)]
    finals = np.array([result.global_accuracy for result in simulations])
    assert len(accuracies) == 2
    assert abs(accuracies[-1] - finals.mean()) <= 4 * finals.std(ddof=1) + 0.01, (accuracies, finals)
    assert f"{simulated.uploads_per_round} values uploaded per round at most" in out


def test_a_participant_id_out_of_range_is_a_clear_error(tmp_path):
    config = tmp_path / "collab.yaml"
    config.write_text(yaml.safe_dump(BASE))
    done = subprocess.run([sys.executable, "-m", "dptune", "federate", "participant", "--config", str(config),
                           "--participant", "3", "--address", f"127.0.0.1:{_free_port()}"],
                          capture_output=True, text=True, timeout=GUARD_S)
    assert done.returncode == 2
    assert "error: --participant must be between 0 and 2 (the YAML has 3 participants), got 3" in done.stderr
