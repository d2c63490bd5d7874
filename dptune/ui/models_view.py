"""Model page helpers: build the chosen model once (cached) and describe it."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from dptune.errors import ConfigError
from dptune.spec.config import ModelSpec

ARCHITECTURES = {
    "logreg": "no hidden layer: Dense(classes) on the flattened input",
    "seed_cnn": "Conv2D(16, 8×8, stride 2) → MaxPool(2) → Conv2D(32, 4×4, stride 2) → MaxPool(2) → "
                "Dense(32) → Dense(classes) (TF Privacy's MNIST tutorial)",
    "tanh_cnn": "the seed CNN with tanh activations (Papernot et al. 2021)",
}
"""The fixed layers of the architectures without configurable hidden sizes (dptune.engine.models)."""


@dataclass(frozen=True)
class ModelSummary:
    parameters: int
    layers: pd.DataFrame
    name: str


@st.cache_resource(show_spinner="Building the model…", max_entries=16)
def summarize(spec_key: str, input_shape: tuple[int, ...], num_classes: int) -> ModelSummary:
    """Build the model of `spec_key` (a ModelSpec as JSON) and count its trainable parameters."""
    from dptune.engine.models import build_model, parameter_count

    spec = ModelSpec.from_dict(json.loads(spec_key))
    model = build_model(spec, input_shape, num_classes)
    rows = []
    for layer in model.layers:
        try:
            shape = str(tuple(layer.output.shape))
        except (AttributeError, ValueError):
            shape = "–"
        rows.append({
            "layer": layer.name,
            "type": type(layer).__name__,
            "output shape": shape,
            "trainable parameters": int(sum(int(w.numpy().size) for w in layer.trainable_weights)),
        })
    return ModelSummary(parameter_count(model), pd.DataFrame(rows), model.name)


def spec_key(spec) -> str:
    return json.dumps(spec.to_dict(), sort_keys=True)


def parse_hidden_units(text: str) -> tuple[int, ...]:
    """'128, 64' -> (128, 64); ConfigError saying what to type otherwise."""
    parts = [p for p in text.replace(";", ",").replace(" ", ",").split(",") if p]
    try:
        units = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"hidden layer sizes must be whole numbers separated by commas, e.g. 128, 64; got {text!r}") from None
    if not units or any(u <= 0 for u in units):
        raise ConfigError(f"give at least one hidden layer size > 0, e.g. 128 (got {text!r}); "
                          "for no hidden layer choose logistic regression")
    return units
