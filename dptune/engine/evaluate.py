"""After training: a model's per-example losses and logits, and the fairness and membership-inference
reports of dptune.evaluation computed from them for one finished trial.

The reports read the validation rows (fairness, the attacks' non-members) and the training rows'
losses (the attacks' members); the validation rows are not protected by ε and none of this is
released under the guarantee: it is shown to the data owner.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from dptune.data.dataset import Dataset
from dptune.engine.per_example import per_example_losses
from dptune.evaluation.fairness import FairnessReport, fairness_report
from dptune.evaluation.membership import MAX_PER_SIDE, MembershipReport, membership_report

EVAL_BATCH = 2048


def losses_and_logits(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = EVAL_BATCH
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(per-example cross-entropy losses in nats [n], logits [n, classes]) of `model` in inference
    mode, in batches of `batch_size`, eagerly (tracing a function cost more than a trial's
    few evaluation batches)."""
    losses, logits = [], []
    for start in range(0, len(x), batch_size):
        batch_logits = model(tf.constant(x[start : start + batch_size], tf.float32), training=False)
        losses.append(per_example_losses(batch_logits, tf.constant(y[start : start + batch_size], tf.int32)).numpy())
        logits.append(batch_logits.numpy())
    if not losses:
        return np.zeros(0, np.float32), np.zeros((0, model.output_shape[-1]), np.float32)
    return np.concatenate(losses), np.concatenate(logits)


@dataclass(frozen=True)
class TrialEvaluation:
    """A finished trial's fairness (validation rows) and membership inference (training rows
    against validation rows) reports, and the seconds computing both took."""

    fairness: FairnessReport
    membership: MembershipReport
    seconds: float


def evaluate_trial(model: keras.Model, dataset: Dataset, *, delta: float, rng: np.random.Generator | None = None,
                   max_per_side: int = MAX_PER_SIDE) -> TrialEvaluation:
    """Fairness and membership inference of a trained model on `dataset`.

    The attack balances members and non-members, so only as many training rows as it uses
    (min(N, validation rows, max_per_side), a random subsample) go through the model. delta:
    the run's δ (for the attacks' ε lower bounds). rng: the subsampling (default: fresh)."""
    started = time.perf_counter()
    rng = np.random.default_rng() if rng is None else rng
    members = rng.choice(dataset.n_train, min(dataset.n_train, len(dataset.y_val), max_per_side), replace=False)
    val_losses, val_logits = losses_and_logits(model, dataset.x_val, dataset.y_val)
    train_losses, train_logits = losses_and_logits(model, dataset.x_train[members], dataset.y_train[members])
    fairness = fairness_report(
        dataset.y_val, np.argmax(val_logits, axis=1), dataset.class_names, dataset.sensitive_val,
        sensitive_name=dataset.sensitive_name,
    )
    membership = membership_report(
        (train_losses, train_logits, dataset.y_train[members]), (val_losses, val_logits, dataset.y_val),
        dataset.class_names, delta=delta, rng=rng, max_per_side=max_per_side,
    )
    return TrialEvaluation(fairness=fairness, membership=membership, seconds=time.perf_counter() - started)
