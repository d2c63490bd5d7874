"""The layerwise per-example gradients equal those of plain autodiff, example by example."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dptune.per_example import GenericGradients, LayerwiseGradients, supports_layerwise


def _conv_model(kernel, strides, padding, channels, filters=5):
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12, 11, channels)),
        keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, activation="tanh"),
        keras.layers.Conv2D(4, 2, strides=2, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])


def _functional_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((6,))
    left = keras.layers.Dense(5, activation="relu")(inputs)
    right = keras.layers.Dense(4, activation="tanh", use_bias=False)(inputs)
    outputs = keras.layers.Dense(3)(keras.layers.Concatenate()([left, right]))
    return keras.Model(inputs, outputs)


MODELS = {
    "conv k4 s2 valid 3ch": lambda: _conv_model(4, 2, "valid", 3),
    # wide layers with few positions take the ghost-norm path over space-to-depth patches
    "ghost conv k4 s2 valid 16ch": lambda: _conv_model(4, 2, "valid", 16, filters=32),
    "ghost conv k4 s2 same 16ch": lambda: _conv_model(4, 2, "same", 16, filters=64),
    "ghost conv k4 s1 valid 32ch": lambda: _conv_model(4, 1, "valid", 32, filters=128),
    "conv k3 s1 same 2ch": lambda: _conv_model(3, 1, "same", 2),
    "conv k3 s2 valid 1ch": lambda: _conv_model(3, 2, "valid", 1),
    "conv k6 s3 same 2ch": lambda: _conv_model(6, 3, "same", 2),
    "functional with branches": _functional_model,
}


@pytest.mark.parametrize("name", MODELS)
def test_layerwise_norms_sums_and_gradients_match_autodiff(name):
    model = MODELS[name]()
    assert supports_layerwise(model)
    if name.startswith("ghost"):
        from dptune.per_example import _use_ghost_norms

        first = model.layers[0]
        positions = int(np.prod(first.compute_output_shape((1, 12, 11, first.input.shape[-1]))[1:3]))
        kernel_values = int(np.prod(first.kernel.shape[:3]))
        assert _use_ghost_norms((6, positions, kernel_values), first.filters)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(6, *model.input_shape[1:])).astype(np.float32))
    y = tf.constant(rng.integers(0, 3, 6).astype(np.int32))
    mask = tf.constant([1, 1, 0, 1, 1, 1], tf.float32)
    fast, exact = LayerwiseGradients(model, x, y, mask), GenericGradients(model, x, y, mask)
    np.testing.assert_allclose(fast.squared_norms().numpy(), exact.squared_norms().numpy(), rtol=1e-4, atol=1e-6)
    assert fast.squared_norms().numpy()[2] == 0  # a padded row contributes nothing
    weights = tf.constant(rng.random(6).astype(np.float32))
    for got, want in zip(fast.weighted_sum(weights), exact.weighted_sum(weights)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)
    for got, want in zip(fast.per_example(), exact.per_example()):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)
    microbatch = tf.constant([0, 2, 1, 2, 0, 1], tf.int32)
    for got, want in zip(fast.microbatch_sums(microbatch, 4), exact.microbatch_sums(microbatch, 4)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)
