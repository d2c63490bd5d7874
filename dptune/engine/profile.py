"""The gradient-norm profile of the recipe: per-example norms of a freshly initialised model."""

from __future__ import annotations

import numpy as np

from dptune.data.dataset import Dataset
from dptune.engine.dpsgd import gradient_norms
from dptune.engine.models import build_model
from dptune.spec.config import ModelSpec


def gradient_norm_profile(dataset: Dataset, model_spec: ModelSpec, *, seed: int | None = 0) -> np.ndarray:
    """Per-example gradient norms (over all trainable parameters) of a freshly initialised
    model (initial weights fixed by the public `seed`), on EVERY training example, in row
    order. Not private by itself: `private_clip_norm` releases it.

    Every row, not a subsample: with a seeded subsample, adding one row changes which other
    rows are profiled, so the histogram's sensitivity is no longer the 1 that is charged."""
    model = build_model(model_spec, dataset.input_shape, dataset.num_classes, seed=seed)
    return np.asarray(gradient_norms(model, dataset.x_train, dataset.y_train), dtype=np.float64)
