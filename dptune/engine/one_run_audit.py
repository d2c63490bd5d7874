"""The one-run audit of Steinke, Nasr & Jagielski (NeurIPS 2023): train a configuration once with
m canaries, each included independently with probability ½, score them, and turn the guesses
into an ε lower bound at 95 % (dptune.privacy.one_run). Its cost is one training run.

Two kinds of canary:

- `black_box` (input canaries): m outlier rows, features drawn uniformly within each feature's
  range in the training data, labels uniform over the classes; the included ones are appended
  to the training rows (N grows by their number, and the accountant's ε is that of the run as
  trained). Score = −(loss of the canary's label under the final model): only the released
  model is read.
- `white_box` (gradient canaries, the stronger audit): the adversary adds a gradient of its
  choice to the clipped sum, as an extra example would: at every step each included canary
  joins independently with the sampling rate q = B/N and contributes its gradient after the
  engine's clipping. Canary k's gradient is R·s_k·e_{c_k} (a Dirac canary: one random
  coordinate c_k of the flattened trainable parameters, a random sign s_k, raw norm R = 100·C,
  so clipping must cut it to C). Score = −s_k·(θ_final − θ_initial)[c_k]: how far the model
  moved against the canary's gradient. Needs at least m trainable parameters.

The accountant's ε and the audit's bound are at the same δ. A lower bound below the accountant's
ε is what a correct engine gives; one above it refutes the claimed guarantee.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from dptune.data.dataset import Dataset
from dptune.engine.dpsgd import DPSGDStep, train
from dptune.engine.evaluate import losses_and_logits
from dptune.engine.models import build_model
from dptune.errors import TrainingError
from dptune.privacy.one_run import OneRunAudit, audit_scores
from dptune.spec.config import DPSGDConfig, ModelSpec

__all__ = ["AUDIT_MODES", "CANARY_RAW_NORM_FACTOR", "AuditReport", "CanaryStep", "one_run_audit"]

AUDIT_MODES = ("black_box", "white_box")
CANARY_RAW_NORM_FACTOR = 100.0
"""A gradient canary's norm before clipping, in units of the clip norm C."""


class CanaryStep(DPSGDStep):
    """DPSGDStep that adds the included gradient canaries sampled at this step to the clipped
    sum before the noise, clipped by the step's own `clip_weights` (as an extra example would be).

    coordinates, signs: canary k's gradient is raw_norm·signs[k]·e_{coordinates[k]} in the
    flattened trainable parameters (variables in order, each flattened row-major); included:
    which canaries take part; rate: each included canary joins a step with this probability."""

    def __init__(self, *args, coordinates: np.ndarray, signs: np.ndarray, included: np.ndarray, rate: float,
                 raw_norm: float, rng: np.random.Generator, **kwargs):
        super().__init__(*args, **kwargs)
        self.canary_coordinates = tf.constant(np.asarray(coordinates)[:, None], tf.int64)
        self.canary_values = tf.constant(raw_norm * np.asarray(signs), tf.float32)
        self.canary_squared_norms = tf.fill([len(signs)], tf.constant(raw_norm**2, tf.float32))
        self.included, self.rate, self.rng = np.asarray(included, bool), rate, rng
        self.sampled = tf.Variable(tf.zeros([len(signs)], tf.float32), trainable=False)
        self.sizes = [int(np.prod(v.shape)) for v in self.variables]

    def clipped_sum(self, statistics_):
        clipped, loss_sum = super().clipped_sum(statistics_)
        weights = self.clip_weights(self.canary_squared_norms, self.sampled)
        flat = tf.scatter_nd(self.canary_coordinates, weights * self.canary_values, [sum(self.sizes)])
        canaries = [tf.reshape(part, v.shape) for part, v in zip(tf.split(flat, self.sizes), self.variables)]
        return [g + c for g, c in zip(clipped, canaries)], loss_sum

    def run(self, chunks, step: int) -> tuple[float, int]:
        self.sampled.assign((self.included & (self.rng.random(len(self.included)) < self.rate)).astype(np.float32))
        return super().run(chunks, step)


@dataclass(frozen=True)
class AuditReport:
    """A one-run audit: the bound (`audit`), the accountant's ε of the run as trained (RDP and
    PLD, same δ), the mode, the rows trained on and the final validation accuracy."""

    mode: str
    audit: OneRunAudit
    epsilon_rdp: float
    epsilon_pld: float
    delta: float
    n_train: int
    val_accuracy: float

    def to_dict(self) -> dict:
        return {"mode": self.mode, **self.audit.to_dict(), "accountant_epsilon_rdp": self.epsilon_rdp,
                "accountant_epsilon_pld": self.epsilon_pld, "n_train": self.n_train,
                "val_accuracy": self.val_accuracy}


def _input_canaries(dataset: Dataset, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    low, high = dataset.x_train.min(axis=0), dataset.x_train.max(axis=0)
    x = rng.uniform(size=(count, *dataset.x_train.shape[1:])).astype(np.float32) * (high - low) + low
    return x, rng.integers(0, dataset.num_classes, count).astype(np.int32)


def _black_box(dataset, model_spec, config, canaries, delta, rng, step_factory):
    x_canary, y_canary = _input_canaries(dataset, canaries, rng)
    included = rng.random(canaries) < 0.5
    trained_on = Dataset(
        name=f"{dataset.name} + {int(included.sum())} canaries",
        x_train=np.concatenate([dataset.x_train, x_canary[included]]),
        y_train=np.concatenate([dataset.y_train, y_canary[included]]),
        x_val=dataset.x_val, y_val=dataset.y_val, class_names=dataset.class_names,
    )
    result = train(trained_on, model_spec, config, delta=delta, step_factory=step_factory)
    losses, _ = losses_and_logits(result.model, x_canary, y_canary)
    return result, -losses, included


def _white_box(dataset, model_spec, config, canaries, delta, rng, step_factory):
    model = build_model(model_spec, dataset.input_shape, dataset.num_classes, seed=config.seed)
    initial = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    if canaries > len(initial):
        raise TrainingError(
            f"the white-box audit needs at least as many trainable parameters as canaries: the model has "
            f"{len(initial):,}, asked for {canaries:,} canaries; use fewer canaries or the black-box audit"
        )
    coordinates = rng.choice(len(initial), canaries, replace=False)
    signs = rng.choice([-1.0, 1.0], canaries)
    included = rng.random(canaries) < 0.5
    factory = functools.partial(
        step_factory, coordinates=coordinates, signs=signs, included=included,
        rate=config.batch_size / dataset.n_train, raw_norm=CANARY_RAW_NORM_FACTOR * config.l2_norm_clip,
        rng=np.random.default_rng(secrets.randbits(128)),
    )
    result = train(dataset, model_spec, config, delta=delta, model=model, step_factory=factory)
    final = np.concatenate([v.numpy().ravel() for v in result.model.trainable_variables])
    return result, -signs * (final - initial)[coordinates], included


def one_run_audit(dataset: Dataset, model_spec: ModelSpec, config: DPSGDConfig, *, canaries: int = 1000,
                  mode: str = "black_box", delta: float | None = None, confidence: float = 0.95,
                  step_factory=None, rng: np.random.Generator | None = None) -> AuditReport:
    """Train `config` once on `dataset` with `canaries` canaries (each included with probability
    ½) and return the ε lower bound beside the accountant's ε (see the module docstring).

    delta: δ of both (default: 1/N^1.1 of the rows trained on). step_factory: the step class (default
    DPSGDStep for black-box, CanaryStep for white-box; a test passes a broken variant).
    rng: draws the canaries and their inclusion (default: fresh)."""
    if mode not in AUDIT_MODES:
        raise ValueError(f"audit mode must be one of {AUDIT_MODES}, got {mode!r}")
    if canaries < 2:
        raise ValueError(f"need at least 2 canaries, got {canaries}")
    rng = np.random.default_rng(secrets.randbits(128)) if rng is None else rng
    run = _black_box if mode == "black_box" else _white_box
    default_step = DPSGDStep if mode == "black_box" else CanaryStep
    result, scores, included = run(dataset, model_spec, config, canaries, delta, rng, step_factory or default_step)
    return AuditReport(
        mode=mode, audit=audit_scores(scores, included, delta=result.delta, confidence=confidence),
        epsilon_rdp=result.epsilon_rdp, epsilon_pld=result.epsilon_pld, delta=result.delta, n_train=result.n_train,
        val_accuracy=result.val_accuracy,
    )
