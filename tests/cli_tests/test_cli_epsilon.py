"""`dptune epsilon`: in-process through main() and once as a real subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dptune import privacy
from dptune.cli import main

REPO = Path(__file__).resolve().parents[2]

# ../shared/REFERENCES.md: N=60000, B=250, sigma=1.3, 3 epochs, delta=1e-5 -> 720 steps,
# RDP eps 0.5632 at order 18, PLD eps 0.3703; microbatched: RDP 3.4259, PLD 2.6075.
TUTORIAL = ["epsilon", "--n", "60000", "--batch-size", "250", "--noise-multiplier", "1.3", "--epochs", "3"]


def _run_json(capsys, argv):
    code = main(argv + ["--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_json_matches_published_values(capsys):
    out = _run_json(capsys, TUTORIAL + ["--delta", "1e-5"])
    assert out["steps"] == 720
    assert out["epsilon_rdp"] == pytest.approx(0.5632, rel=0.005)
    assert out["rdp_order"] == 18
    assert out["epsilon_pld"] == pytest.approx(0.3703, rel=0.005)
    assert out["delta"] == 1e-5 and out["delta_is_default"] is False
    assert out["sampling_rate"] == pytest.approx(250 / 60000)
    assert out["charged_noise_multiplier"] == 1.3 and out["microbatched"] is False


def test_json_microbatched_charges_half_sigma(capsys):
    out = _run_json(capsys, TUTORIAL + ["--delta", "1e-5", "--microbatches", "25"])
    assert out["microbatched"] is True and out["num_microbatches"] == 25
    assert out["charged_noise_multiplier"] == 0.65
    assert out["epsilon_rdp"] == pytest.approx(3.4259, rel=0.005)
    assert out["epsilon_pld"] == pytest.approx(2.6075, rel=0.005)


def test_microbatches_equal_to_batch_size_is_per_example(capsys):
    out = _run_json(capsys, TUTORIAL + ["--delta", "1e-5", "--microbatches", "250"])
    assert out["microbatched"] is False and out["charged_noise_multiplier"] == 1.3


def test_default_delta_is_one_over_n_to_the_1_1(capsys):
    out = _run_json(capsys, TUTORIAL)
    assert out["delta"] == pytest.approx(privacy.default_delta(60000))
    assert out["delta_is_default"] is True
    expected = privacy.compute_epsilon(60000, 250, 1.3, epochs=3, delta=privacy.default_delta(60000))
    assert out["epsilon_rdp"] == pytest.approx(expected.epsilon_rdp, rel=1e-12)


def test_steps_instead_of_epochs(capsys):
    argv = ["epsilon", "--n", "60000", "--batch-size", "256", "--noise-multiplier", "1.1", "--steps", "14063"]
    out = _run_json(capsys, argv + ["--delta", "1e-5"])
    assert out["steps"] == 14063
    assert out["epsilon_rdp"] == pytest.approx(2.5967, rel=0.005)
    assert out["epsilon_pld"] == pytest.approx(2.3818, rel=0.005)


def test_zero_noise_json_is_strict_with_null_epsilon(capsys):
    out = _run_json(capsys, ["epsilon", "--n", "100", "--batch-size", "10", "--noise-multiplier", "0", "--steps", "3"])
    assert out["epsilon_rdp"] is None and out["epsilon_pld"] is None


def test_text_statement(capsys):
    assert main(TUTORIAL + ["--delta", "1e-5"]) == 0
    text = capsys.readouterr().out
    for fragment in ("N = 60000", "B = 250", "sigma = 1.3", "3 epochs = 720 steps", "1e-05", "order 18"):
        assert fragment in text
    rdp = re.search(r"epsilon \(RDP accounting, optimal order 18\): *([0-9.]+)", text)
    pld = re.search(r"epsilon \(PLD accounting\): *([0-9.]+)", text)
    assert rdp and float(rdp.group(1)) == pytest.approx(0.5632, rel=0.005)
    assert pld and float(pld.group(1)) == pytest.approx(0.3703, rel=0.005)
    assert "sigma/2" not in text and "Warning" not in text


def test_text_statement_explains_microbatching_and_default_delta(capsys):
    assert main(TUTORIAL + ["--microbatches", "10"]) == 0
    text = capsys.readouterr().out
    assert "sigma/2 = 0.65" in text and "2C" in text and "10 microbatches" in text
    assert "default" in text and "1/N^1.1" in text


def test_text_statement_warns_when_delta_not_below_one_over_n(capsys):
    argv = ["epsilon", "--n", "100", "--batch-size", "10", "--noise-multiplier", "1.0", "--epochs", "1"]
    assert main(argv + ["--delta", "0.01"]) == 0
    assert "1/N" in capsys.readouterr().out
    out = _run_json(capsys, argv + ["--delta", "0.01"])
    assert "1/N" in out["delta_warning"]


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["epsilon", "--n", "100", "--batch-size", "200", "--noise-multiplier", "1", "--epochs", "1"], "200"),
        (["epsilon", "--n", "100", "--batch-size", "10", "--noise-multiplier", "-1", "--epochs", "1"], "-1"),
        (["epsilon", "--n", "100", "--batch-size", "10", "--noise-multiplier", "1", "--epochs", "1", "--delta", "2"], "2"),
        (["epsilon", "--n", "100", "--batch-size", "10", "--noise-multiplier", "1", "--epochs", "1", "--microbatches", "11"], "11"),
        (["epsilon", "--n", "100", "--batch-size", "10", "--noise-multiplier", "1", "--epochs", "1", "--steps", "5"], "--steps"),
        (["epsilon", "--n", "100", "--batch-size", "10", "--noise-multiplier", "1"], "--epochs"),
        (["epsilon", "--n", "many", "--batch-size", "10", "--noise-multiplier", "1", "--epochs", "1"], "many"),
        (["no-such-command"], "no-such-command"),
        ([], "command"),
    ],
)
def test_bad_arguments_exit_2_with_error_on_stderr(capsys, argv, needle):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert error_lines and needle in error_lines[0]
    assert "Traceback" not in captured.err


def test_help_exits_0(capsys):
    assert main(["epsilon", "--help"]) == 0
    assert "--noise-multiplier" in capsys.readouterr().out


def test_subprocess_python_m_dptune_json():
    argv = TUTORIAL + ["--delta", "1e-5", "--json"]
    proc = subprocess.run(
        [sys.executable, "-m", "dptune", *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # exactly one JSON object, nothing else on stdout
    assert isinstance(out, dict)
    assert out["epsilon_rdp"] == pytest.approx(0.5632, rel=0.005)
    assert out["epsilon_pld"] == pytest.approx(0.3703, rel=0.005)
    assert out["rdp_order"] == 18 and out["steps"] == 720


def test_subprocess_error_exit_code():
    argv = ["epsilon", "--n", "100", "--batch-size", "200", "--noise-multiplier", "1", "--epochs", "1"]
    proc = subprocess.run(
        [sys.executable, "-m", "dptune", *argv], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
