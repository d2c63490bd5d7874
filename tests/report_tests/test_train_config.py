"""`dptune train --config` recomputes the privacy statement, never trusts the file (issue 8, item 7).

Each test writes a run YAML as `dptune export` does (digest included), edits it the way a
user might, and runs the real CLI on the built-in digits (one short epoch of logistic
regression)."""

from __future__ import annotations

import math
import re

import pytest
import yaml

from dptune import privacy
from dptune.cli import main
from dptune.data import builtin_dataset
from dptune.privacy.run import DPSGDRun
from dptune.privacy.search_cost import epsilon_with_clip_selection
from dptune.report.export import train_from_config
from dptune.spec.config import DPSGDConfig, ModelSpec
from dptune.spec.dataset_ref import DatasetRef
from dptune.spec.run import RunConfig, load_run_config

CLIP_EPSILON = 0.2


@pytest.fixture(scope="module")
def digits():
    return builtin_dataset("digits")


def exported(tmp_path, digits, **training) -> tuple[RunConfig, str]:
    """A run YAML with a private clip-norm release, written with its digest (as exported)."""
    config = DPSGDConfig(l2_norm_clip=1.0, noise_multiplier=1.0, num_microbatches=64, batch_size=64, epochs=1,
                         **training)
    steps = privacy.num_steps(digits.n_train, 64, 1)
    delta = privacy.default_delta(digits.n_train)
    epsilon = privacy.compute_epsilon(digits.n_train, 64, 1.0, steps=steps, delta=delta, pld=False).epsilon_rdp
    run = RunConfig(
        training=config, delta=delta, epsilon=epsilon,
        dataset=DatasetRef(name="digits", builtin="digits", fingerprint=digits.fingerprint, n_train=digits.n_train),
        model=ModelSpec("logreg"),
        accountant={"method": "rdp", "epsilon_rdp": epsilon, "steps": steps,
                    "clip_norm_selection": {"source": "private", "quantile": 0.75, "epsilon": CLIP_EPSILON}},
    ).with_digest()
    path = tmp_path / "chosen.yaml"
    run.dump(path)
    return run, str(path)


def edit(path: str, change) -> None:
    values = yaml.safe_load(open(path, encoding="utf-8"))
    change(values)
    open(path, "w", encoding="utf-8").write(yaml.safe_dump(values, sort_keys=False))


def test_an_exported_file_reproduces_its_epsilon_and_charges_the_clip_release(tmp_path, digits, capsys):
    run, path = exported(tmp_path, digits)
    assert load_run_config(path).digest_matches() is True
    assert main(["train", "--config", path]) == 0
    out = capsys.readouterr().out
    assert "training epsilon reproduces the recorded value exactly" in out
    assert "WARNING" not in out and "NOTE" not in out
    progress = re.findall(r"^epoch (\d+) \(step (\d+)\): val accuracy ([\d.]+), ε so far ([\d.]+)", out, re.M)
    assert [int(epoch) for epoch, *_ in progress] == list(range(1, run.training.epochs + 1))
    steps = [int(step) for _, step, *_ in progress]
    assert steps[-1] == privacy.num_steps(digits.n_train, 64, run.training.epochs)
    epsilons = [float(e) for *_, e in progress]
    assert epsilons == sorted(epsilons) and epsilons[-1] == pytest.approx(run.epsilon, rel=1e-2)
    reproduction = train_from_config(path)
    expected = epsilon_with_clip_selection(
        DPSGDRun(digits.n_train, 64, 1.0, reproduction.result.steps, False), CLIP_EPSILON, run.delta)[0]
    assert reproduction.epsilon_total == pytest.approx(expected)
    assert reproduction.epsilon_total > run.epsilon


def test_a_deleted_clip_release_is_detected(tmp_path, digits, capsys):
    _, path = exported(tmp_path, digits)
    edit(path, lambda values: values["accountant"].pop("clip_norm_selection"))
    assert load_run_config(path).digest_matches() is False
    assert main(["train", "--config", path]) == 0
    out = capsys.readouterr().out
    assert "WARNING: the file was edited after export" in out


def test_a_missing_accountant_block_is_said(tmp_path, digits, capsys):
    _, path = exported(tmp_path, digits)
    edit(path, lambda values: values.pop("accountant"))
    assert main(["train", "--config", path]) == 0
    assert "no release before training" in capsys.readouterr().out


def test_an_unsafe_delta_is_refused_unless_forced(tmp_path, digits, capsys):
    _, path = exported(tmp_path, digits)
    edit(path, lambda values: values.update(delta=0.5))
    assert main(["train", "--config", path]) == 2
    err = capsys.readouterr().err
    assert "delta = 0.5 is not below 1/N" in err and "--force-unsafe-delta" in err
    assert main(["train", "--config", path, "--force-unsafe-delta"]) == 0
    out = capsys.readouterr().out
    assert "Warning: delta = 0.5" in out and "epsilon = 0.0000" not in out


def test_shuffle_and_public_noise_are_labelled(tmp_path, digits, capsys):
    _, path = exported(tmp_path, digits, sampling="shuffle")
    assert main(["train", "--config", path]) == 0
    assert "accounted as Poisson, as TF Privacy does" in capsys.readouterr().out
    _, path = exported(tmp_path, digits, seed=4, debug_fixed_noise=True)
    assert main(["train", "--config", path]) == 0
    out = capsys.readouterr().out
    assert "void (noise is public)" in out and "PUBLIC" in out


def test_an_exported_file_carries_no_noise_seed(tmp_path, digits):
    _, path = exported(tmp_path, digits)
    values = yaml.safe_load(open(path, encoding="utf-8"))
    assert "debug_fixed_noise" not in values  # the normal case writes nothing about the noise
    assert values["seed"] == 0  # initial weights only (public)
    reproduction = train_from_config(path)
    assert reproduction.statement.noise_is_secret and not math.isinf(reproduction.epsilon_total)
