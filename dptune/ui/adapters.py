"""Thin adapters between the dashboard and the library (no Streamlit here).

They hold what the pages need from the library in the shape the pages use it.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd

from dptune.study.results import trials_frame as library_trials_frame

FRAME_COLUMNS = [
    "number", "state", "val_accuracy", "epsilon", "epsilon_pld", "l2_norm_clip", "noise_multiplier",
    "num_microbatches", "learning_rate", "batch_size", "epochs", "seconds_per_step", "examples_per_second",
    "train_seconds", "device", "fail_reason", "history", "epochs_done", "phase",
]


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """`dptune.study.results.trials_frame(study)` with every column of the contract present."""
    frame = library_trials_frame(study)
    for column in FRAME_COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame


def finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
