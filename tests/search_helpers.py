"""Helpers for the search tests: small specs, a scripted fake trainer, the end-to-end check."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from dptune import privacy
from dptune.cli import main
from dptune.data.dataset import Dataset

TINY_MLP = {"kind": "mlp", "hidden_units": [16]}


def tiny_dataset(n_train: int = 2000, n_val: int = 40, seed: int = 0) -> Dataset:
    """A small separable 2-class problem (for tests that use the fake trainer)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_train + n_val, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    return Dataset("tiny", x[:n_train], y[:n_train], x[n_train:], y[n_train:], ("neg", "pos"))


def fake_trainer(behaviour: Callable[[int, object], str] | None = None, epoch_seconds: float = 0.0):
    """A stand-in for dptune.engine.dpsgd.train with the same signature and result types.

    behaviour(call_index, config) -> "ok" | "nan" | "oom" | "crash"; accuracy grows with the
    learning rate so samplers and pruners have something to compare.
    """
    from dptune.engine.dpsgd import EpochMetrics, TrainResult
    from dptune.errors import TrainingError

    calls = {"n": 0}

    def train(dataset, model_spec, config, *, delta=None, on_epoch_end=None, jit_compile=None):
        index = calls["n"]
        calls["n"] += 1
        what = behaviour(index, config) if behaviour else "ok"
        n = dataset.n_train
        steps_total = privacy.num_steps(n, config.batch_size, config.epochs)
        history = []
        for epoch in range(1, int(np.ceil(config.epochs)) + 1):
            if what == "nan" and epoch == 1:
                raise TrainingError("the training loss became nan at step 3; lower the learning rate or the clip norm")
            if what == "oom":
                import tensorflow as tf

                raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape [4096,4096]")
            if what == "crash":
                raise ValueError("something unexpected")
            time.sleep(epoch_seconds)
            step = min(steps_total, int(np.ceil(epoch * n / config.batch_size)))
            accuracy = min(0.99, 0.3 + 0.1 * epoch + config.learning_rate / 2)
            epsilon = privacy.compute_epsilon(n, config.batch_size, config.noise_multiplier, steps=step, delta=delta,
                                              microbatched=not config.per_example, pld=False).epsilon_rdp
            metrics = EpochMetrics(epoch, step, 1.0 / epoch, 1.0 / epoch, accuracy, epsilon, 0.001, 1000.0,
                                   0.01 * epoch)
            history.append(metrics)
            if on_epoch_end is not None and on_epoch_end(metrics):
                break
        final = privacy.compute_epsilon(n, config.batch_size, config.noise_multiplier, steps=history[-1].step,
                                        delta=delta, microbatched=not config.per_example)
        return TrainResult(config, model_spec, dataset.name, dataset.fingerprint, n, delta, tuple(history),
                           history[-1].val_accuracy, history[-1].val_loss, final.epsilon_rdp, final.epsilon_pld,
                           final.rdp_order, history[-1].step, 0.001, 1000.0, 0.01, "CPU", "layerwise", False, None)

    train.calls = calls
    return train


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def end_to_end(tmp_path: Path, capsys, search: dict) -> dict:
    """`dptune tune`, then `export` (best within the target) and `train --config`; returns
    what a test asserts on: the study, the exported YAML, and the reproduction's numbers."""
    from dptune.spec.run import load_run_config
    from dptune.study.results import best_trial_within
    from dptune.study.search import load_study

    search = {"workspace": str(tmp_path / "ws"), "storage": f"sqlite:///{tmp_path / 'studies.db'}", **search}
    config_path = write_yaml(tmp_path / "search.yaml", search)
    assert main(["tune", "--config", str(config_path), "--no-progress"]) == 0
    tune_output = capsys.readouterr().out
    study, spec, _ = load_study(search["study_name"], search["storage"], load_dataset=False)
    best = best_trial_within(study)
    assert best is not None, tune_output
    chosen = tmp_path / "chosen.yaml"
    assert main(["export", "--storage", search["storage"], "--study", search["study_name"], "-o", str(chosen)]) == 0
    capsys.readouterr()
    exported = load_run_config(chosen)
    assert main(["train", "--config", str(chosen)]) == 0
    train_output = capsys.readouterr().out
    accuracy = float(re.search(r"val accuracy (\d\.\d+), val loss", train_output).group(1))
    epsilon = float(re.search(r"training: ε = (\d+\.\d+) \(RDP", train_output).group(1))
    return {
        "study": study, "spec": spec, "best": best, "exported": exported, "tune_output": tune_output,
        "train_output": train_output, "train_accuracy": accuracy, "train_epsilon": epsilon,
    }


def wait_for(condition, timeout: float, what: str):
    """Poll `condition` until it is truthy and return its value; `timeout` only stops a hung
    test (generous: a loaded 2-core machine must never reach it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
