"""Thin adapters between the dashboard and the library (no Streamlit here).

Each function prefers the library's own implementation and falls back to a minimal one
that follows docs/INTERFACES.md, so the UI works while a module is being written.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd

FRAME_COLUMNS = [
    "number", "state", "val_accuracy", "epsilon", "epsilon_pld", "l2_norm_clip", "noise_multiplier",
    "num_microbatches", "learning_rate", "batch_size", "epochs", "seconds_per_step", "examples_per_second",
    "train_seconds", "device", "fail_reason", "history", "epochs_done", "phase",
]


def _fallback_trials_frame(study: optuna.Study) -> pd.DataFrame:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        config = dict(attrs.get("config") or {})
        for key, value in trial.params.items():
            config.setdefault(key, value)
        history = list(attrs.get("history") or [])
        epsilon = attrs.get("epsilon_rdp")
        if epsilon is None and history:
            epsilon = history[-1].get("epsilon")
        accuracy = attrs.get("val_accuracy")
        if accuracy is None and history and trial.state != optuna.trial.TrialState.COMPLETE:
            accuracy = history[-1].get("val_accuracy")
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "val_accuracy": accuracy,
                "epsilon": epsilon,
                "epsilon_pld": attrs.get("epsilon_pld"),
                "l2_norm_clip": config.get("l2_norm_clip"),
                "noise_multiplier": config.get("noise_multiplier"),
                "num_microbatches": config.get("num_microbatches"),
                "learning_rate": config.get("learning_rate"),
                "batch_size": config.get("batch_size"),
                "epochs": config.get("epochs"),
                "seconds_per_step": attrs.get("seconds_per_step"),
                "examples_per_second": attrs.get("examples_per_second")
                or (history[-1].get("examples_per_second") if history else None),
                "train_seconds": attrs.get("train_seconds"),
                "device": attrs.get("device"),
                "fail_reason": attrs.get("fail_reason"),
                "history": history,
                "epochs_done": len(history),
                "phase": attrs.get("phase"),
            }
        )
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    for column in ("val_accuracy", "epsilon", "epsilon_pld", "l2_norm_clip", "noise_multiplier", "learning_rate",
                   "epochs", "seconds_per_step", "examples_per_second", "train_seconds"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """`dptune.results.trials_frame(study)`, or the fallback above while it is missing."""
    try:
        from dptune.results import trials_frame as library_trials_frame
    except ImportError:
        return _fallback_trials_frame(study)
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
