"""`dptune collab --config`: the table of standalone / DSSGD / centralized accuracy with each
participant's ε and bytes, and every problem of a bad YAML at once (exit 2)."""

from __future__ import annotations

import pytest
import yaml

from dptune.cli import main
from dptune.errors import ConfigError
from dptune.spec.collaborative import collaborative_run_from_dict


def _write(tmp_path, values) -> str:
    path = tmp_path / "collab.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


BASE = {"dataset": {"builtin": "digits"}, "model": {"kind": "logreg"},
        "collaborative": {"participants": 3, "rounds": 2, "theta_upload": 0.1}}


def test_collab_prints_the_table(tmp_path, capsys):
    config = _write(tmp_path, BASE)
    assert main(["collab", "--config", config, "--theta-upload", "1,0.1"]) == 0
    out = capsys.readouterr().out
    assert "3 participants, split iid, shard sizes" in out
    assert "standalone, mean / worst participant" in out
    assert "DSSGD theta_u 1, theta_d 1 (largest)" in out and "DSSGD theta_u 0.1, theta_d 1 (largest)" in out
    assert "centralized (all rows pooled)" in out
    assert out.count("worst participant's epsilon: ∞ (no privacy)") == 2
    # logreg on 8x8 digits: P = 64*10 + 10 = 650; θu = 0.1 uploads 65 values = 520 bytes per round
    assert "650 parameters" in out and "(65 values uploaded per round at most)" in out and "520" in out


def test_collab_with_dp_sgd_prints_each_participants_epsilon(tmp_path, capsys):
    values = {**BASE, "delta": 1e-5, "collaborative": {**BASE["collaborative"], "privacy": {
        "kind": "dp_sgd", "noise_multiplier": 1.0, "l2_norm_clip": 1.0, "batch_size": 32}}}
    assert main(["collab", "--config", _write(tmp_path, values)]) == 0
    out = capsys.readouterr().out
    assert "privacy: dp_sgd (local DP-SGD: sigma 1, clip 1, batch 32)" in out
    assert "its own DP-SGD run: q = 32/" in out and "1e-05" in out


def test_every_problem_of_a_bad_config_is_reported_at_once(tmp_path, capsys):
    values = {"dataset": {"builtin": "digits"}, "extra": 1, "delta": 2, "collaborative": {
        "participants": 1, "theta_upload": 0, "theta_download": 1.5, "order": "sideways", "rounds": 0,
        "split": {"kind": "dirichlet"}, "selection": "largest",
        "privacy": {"kind": "laplace_svt", "epsilon": -1, "gamma": 0.01, "sigma": 3}}}
    assert main(["collab", "--config", _write(tmp_path, values)]) == 2
    err = capsys.readouterr().err
    for expected in ("unknown key(s): extra", "delta must be a number in (0, 1)", "participants must be an integer",
                     "theta_upload (θu) must be a number in (0, 1], got 0", "theta_download (θd)",
                     "order must be one of round_robin, random", "rounds must be an integer",
                     "split.alpha (Dirichlet concentration)", "privacy.epsilon", "unknown key(s) in "
                     "collaborative.privacy: sigma", "selection must be random_above_threshold with privacy laplace_svt"):
        assert expected in err, expected
    assert "11 problems" in err


def test_bad_theta_upload_flag_and_missing_keys(tmp_path, capsys):
    assert main(["collab", "--config", _write(tmp_path, BASE), "--theta-upload", "0.1,2"]) == 2
    assert "--theta-upload must be comma-separated numbers in (0, 1]" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="missing key\\(s\\): dataset, collaborative"):
        collaborative_run_from_dict({"model": {"kind": "logreg"}})
