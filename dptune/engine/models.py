"""Build a Keras 3 model from a ModelSpec, for any input shape and class count.

Every model outputs logits (no softmax); the trainer applies a softmax cross-entropy.
"""

from __future__ import annotations

import keras

from dptune.engine.user_models import load_user_model
from dptune.errors import ModelError
from dptune.spec.config import ModelSpec


def _seed_cnn(input_shape: tuple[int, ...], num_classes: int, activation: str) -> keras.Model:
    """TF Privacy's MNIST tutorial CNN (tutorials/mnist_dpsgd_tutorial_keras.py), exactly."""
    if len(input_shape) != 3:
        raise ModelError(f"the CNNs need image data (height, width, channels); this data has shape {input_shape}")
    height, width = input_shape[:2]
    # conv(8, stride 2, same) -> pool(2, 1) -> conv(4, stride 2, valid) needs >= 4x4 after the first pool.
    if min(height, width) < 10:
        raise ModelError(
            f"the CNN needs images of at least 10x10 pixels; these are {height}x{width}. "
            "Use the MLP or logistic regression, or resize the images."
        )
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Conv2D(16, 8, strides=2, padding="same", activation=activation),
            keras.layers.MaxPool2D(2, 1),
            keras.layers.Conv2D(32, 4, strides=2, padding="valid", activation=activation),
            keras.layers.MaxPool2D(2, 1),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation=activation),
            keras.layers.Dense(num_classes),
        ],
        name="tanh_cnn" if activation == "tanh" else "seed_cnn",
    )


def _mlp(input_shape: tuple[int, ...], num_classes: int, hidden_units: tuple[int, ...], activation: str) -> keras.Model:
    layers = [keras.Input(shape=input_shape)]
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten())
    layers += [keras.layers.Dense(units, activation=activation) for units in hidden_units]
    layers.append(keras.layers.Dense(num_classes))
    return keras.Sequential(layers, name="mlp" if hidden_units else "logreg")


def _user_model(path: str, input_shape: tuple[int, ...], num_classes: int) -> keras.Model:
    """The `.keras` file at `path`, built for `input_shape` when saved without an Input, and
    checked (dptune.engine.user_models, the removal test included) for private training."""
    model = load_user_model(path, input_shape)
    expected_in = (None, *input_shape)
    got_in = tuple(model.inputs[0].shape) if model.inputs else None
    if got_in is not None and tuple(got_in) != expected_in:
        raise ModelError(f"the uploaded model expects inputs of shape {got_in}, the data has {expected_in}")
    if model.outputs and model.outputs[0].shape[-1] != num_classes:
        raise ModelError(
            f"the uploaded model outputs {model.outputs[0].shape[-1]} values per example; the data has {num_classes} classes"
        )
    return model


def build_model(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int, seed: int | None = 0) -> keras.Model:
    """A fresh, uncompiled model whose initial weights are fixed by `seed` (None: random)."""
    if num_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {num_classes}")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    input_shape = tuple(int(d) for d in input_shape)
    if spec.kind in ("seed_cnn", "tanh_cnn"):
        return _seed_cnn(input_shape, num_classes, "tanh" if spec.kind == "tanh_cnn" else spec.activation)
    if spec.kind == "mlp":
        return _mlp(input_shape, num_classes, spec.hidden_units, spec.activation)
    if spec.kind == "logreg":
        return _mlp(input_shape, num_classes, (), spec.activation)
    return _user_model(spec.path, input_shape, num_classes)


def parameter_count(model: keras.Model) -> int:
    """Number of trainable scalars (what the noise is added to)."""
    return int(sum(int(v.numpy().size) for v in model.trainable_variables))
