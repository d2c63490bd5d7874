"""`dptune audit --config`: the one-run ε lower bound printed beside the accountant's ε, and clean
`error:` lines (exit 2) for bad input."""

from __future__ import annotations

import json

import pytest
import yaml

from dptune import privacy
from dptune.cli import main
from dptune.data import builtin_dataset
from dptune.spec.config import DPSGDConfig, ModelSpec
from dptune.spec.dataset_ref import DatasetRef
from dptune.spec.run import RunConfig
from dptune.workspace import Workspace


@pytest.fixture(scope="module")
def run_yaml(tmp_path_factory) -> str:
    """A run YAML of one short epoch of logistic regression on the built-in breast cancer data."""
    data = builtin_dataset("breast_cancer")
    delta = privacy.default_delta(data.n_train)
    run = RunConfig(
        training=DPSGDConfig(l2_norm_clip=1.0, noise_multiplier=1.5, num_microbatches=32, batch_size=32, epochs=1),
        delta=delta,
        dataset=DatasetRef(name="breast_cancer", builtin="breast_cancer", fingerprint=data.fingerprint,
                           n_train=data.n_train, workspace=str(tmp_path_factory.mktemp("ws"))),
        model=ModelSpec("logreg"),
    )
    path = tmp_path_factory.mktemp("run") / "chosen.yaml"
    run.dump(path)
    return str(path)


def test_audit_prints_the_lower_bound_beside_the_accountant(run_yaml, capsys):
    assert main(["audit", "--config", run_yaml, "--canaries", "100"]) == 0
    out = capsys.readouterr().out
    assert "empirical epsilon lower bound (95% confidence)" in out
    assert "accountant epsilon of this run" in out and "consistent" in out


def test_membership_compares_the_run_with_a_non_private_reference(run_yaml, capsys):
    assert main(["audit", "--config", run_yaml, "--canaries", "20", "--membership"]) == 0
    out = capsys.readouterr().out
    assert "reference, noise_multiplier 0: NO PRIVACY" in out and "as configured (epsilon" in out
    assert out.count("loss_threshold: AUC") == 2 and out.count("logistic_regression: AUC") == 2


def test_white_box_refuses_more_canaries_than_parameters(run_yaml, capsys):
    # logistic regression on 30 features and 2 classes has 62 parameters
    assert main(["audit", "--config", run_yaml, "--canaries", "100", "--mode", "white-box"]) == 2
    assert "error: the white-box audit needs at least as many trainable parameters" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--canaries", "1"], "--canaries must be between 2"),
    (["--mode", "grey-box"], "invalid choice"),
])
def test_bad_arguments_give_one_error_line(run_yaml, capsys, arguments, message):
    assert main(["audit", "--config", run_yaml, *arguments]) == 2
    assert message in capsys.readouterr().err


def test_a_broken_yaml_gives_one_error_line(tmp_path, run_yaml, capsys):
    values = yaml.safe_load(open(run_yaml, encoding="utf-8"))
    values["noise_multiplier"] = "lots"
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    assert main(["audit", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "noise_multiplier" in err
    assert main(["audit", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_an_audit_of_a_studys_trial_is_saved_for_the_dashboard(tmp_path, run_yaml, capsys):
    """A run YAML exported from a study names it: the audit lands in the workspace beside that
    trial, with the numbers printed (the Trade-offs tab reads it: tests/ui_tests/test_ui_harms.py)."""
    values = yaml.safe_load(open(run_yaml))
    values["search"] = {"study": "s", "trial": 3}
    path = tmp_path / "from-study.yaml"
    path.write_text(yaml.safe_dump(values))
    workspace = tmp_path / "ws"
    assert main(["audit", "--config", str(path), "--canaries", "100", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    saved = Workspace.at(workspace).audit_path("s", 3, "black_box")
    assert f"saved for the dashboard (Trade-offs, Attacks & fairness): {saved}" in out
    audit = json.loads(saved.read_text())
    assert f"empirical epsilon lower bound (95% confidence): {audit['epsilon_lower_bound']:.3f}" in out
    assert audit["canaries"] == 100 and audit["mode"] == "black_box"


def test_an_audit_of_a_yaml_of_no_study_writes_nothing(tmp_path, run_yaml, capsys):
    workspace = tmp_path / "ws"
    assert main(["audit", "--config", run_yaml, "--canaries", "50", "--workspace", str(workspace)]) == 0
    assert "saved for the dashboard" not in capsys.readouterr().out
    assert not Workspace.at(workspace).audits_dir.exists()
