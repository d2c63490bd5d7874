"""`dptune collab --config`: the table of standalone / DSSGD / centralized accuracy with each
participant's ε and bytes, and every problem of a bad YAML at once (exit 2)."""

from __future__ import annotations

import optuna
import pytest
import yaml

from dptune.cli import main
from dptune.errors import ConfigError
from dptune.privacy.collaborative import NOT_COVERED
from dptune.spec.collaborative import collaborative_run_from_dict, load_collaborative_run
from dptune.workspace import Workspace


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
    assert NOT_COVERED in out  # the baselines and accuracies are not covered by epsilon, and it says so
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


def test_collab_search_prints_each_trial_the_best_and_exports_a_runnable_yaml(tmp_path, capsys):
    values = {**BASE, "delta": 1e-5, "collaborative": {**BASE["collaborative"], "privacy": {
        "kind": "laplace_svt", "epsilon": 5.0, "gamma": 0.05}, "selection": "random_above_threshold"},
        "search": {"trials": 3, "target_epsilon": 2.0, "theta_upload": [0.05, 0.5], "study_name": "cli-collab"}}
    exported = tmp_path / "best.yaml"
    assert main(["collab", "--config", _write(tmp_path, values), "--search", "--workspace", str(tmp_path),
                 "--export", str(exported)]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="cli-collab", storage=Workspace.at(tmp_path).storage_url)
    accuracies = {t.number: t.values[0] for t in study.trials}
    best = max(accuracies, key=accuracies.get)
    for number, accuracy in accuracies.items():
        assert f"trial {number} (" in out and f"accuracy {accuracy:.4f}" in out
    assert f"best trial within the target: trial {best} (" in out
    # laplace_svt with a target: every trial spends exactly the target; three trials add up to 3 x 2
    assert out.count("worst epsilon 2,") == 4
    assert "the search itself charged each participant up to epsilon 6.000 (pure DP: the 3 trials' budgets added up)" in out
    assert f"wrote trial {best} to {exported}" in out
    run = load_collaborative_run(exported)
    assert run.search is None and run.collaborative.privacy.epsilon == 2.0
    assert run.collaborative.theta_upload == study.trials[best].params["theta_upload"]
    assert main(["collab", "--config", str(exported)]) == 0
    assert "worst participant's epsilon: 2.000" in capsys.readouterr().out


def test_collab_search_without_a_search_block_or_with_a_bad_one_says_why(tmp_path, capsys):
    assert main(["collab", "--config", _write(tmp_path, BASE), "--search"]) == 2
    assert "no search block to tune" in capsys.readouterr().err
    values = {**BASE, "search": {"trials": "many", "target_epsilon": 1}}
    assert main(["collab", "--config", _write(tmp_path, values), "--search"]) == 2
    err = capsys.readouterr().err
    assert "search.trials must be an integer" in err and "target_epsilon needs privacy" in err and "2 problems" in err
    assert main(["collab", "--config", _write(tmp_path, BASE), "--export", str(tmp_path / "x.yaml")]) == 2
    assert "--export needs --search" in capsys.readouterr().err and not (tmp_path / "x.yaml").exists()


def test_collab_search_without_privacy_prints_the_baselines_the_study_holds(tmp_path, capsys):
    values = {**BASE, "search": {"trials": 2, "study_name": "plain"}}
    assert main(["collab", "--config", _write(tmp_path, values), "--search", "--workspace", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="plain", storage=Workspace.at(tmp_path).storage_url)
    baselines = study.user_attrs["collaborative"]["baselines"]
    assert f"standalone accuracy: mean {baselines['standalone_mean']:.4f}, worst {min(baselines['standalone']):.4f}" in out
    assert f"centralized accuracy: {baselines['centralized']:.4f}" in out
    assert "no privacy: the uploads are exact parameter changes (epsilon = inf for every trial)" in out
    assert NOT_COVERED in out
    assert out.count("worst epsilon inf") == 3  # two trials and the best one
