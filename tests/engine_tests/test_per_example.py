"""The layerwise per-example gradients equal those of plain autodiff, example by example."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dptune.engine.per_example import (
    GenericGradients,
    LayerwiseGradients,
    chunk_gradients,
    clip_weights,
    squared_norms_of_sums,
    supports_layerwise,
)


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
def test_layerwise_norms_sums_and_gradients_match_autodiff(name, conv_kernel):
    model = MODELS[name]()
    assert supports_layerwise(model)
    if name.startswith("ghost") and conv_kernel == "tensorflow ops":
        from dptune.engine.layer_taps import _use_ghost_norms

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
    # the norms of those sums, for flat Dense inputs from ghost norms over each microbatch's rows
    np.testing.assert_allclose(fast.microbatch_squared_norms(microbatch, 4).numpy(),
                               squared_norms_of_sums(exact.microbatch_sums(microbatch, 4)).numpy(), rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ every accepted layer type against a tape loop


def _sequential(input_shape, *layers):
    return keras.Sequential([keras.Input(input_shape), *layers])


def _shared_dense():
    inputs = keras.Input((6,))
    shared = keras.layers.Dense(6, activation="tanh")
    return keras.Model(inputs, keras.layers.Dense(3)(shared(shared(inputs))))


def _nested():
    block = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(4)])
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Concatenate()([block(inputs), inputs])))


def _self_attention():
    inputs = keras.Input((4, 5))
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)(inputs, inputs)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(attended)))


L = keras.layers
LAYER_MODELS = {  # name: (model builder, path dptune must pick)
    "Dense+Conv2D": (lambda: _sequential((6, 6, 2), L.Conv2D(3, 3, activation="tanh"), L.Flatten(), L.Dense(3)),
                     "layerwise"),
    # a [P, 1, 4, 5] x [5, 3] batch matmul crashes oneDNN in TensorFlow 2.21
    "Dense on (1, T, K) inputs": (lambda: _sequential((1, 4, 5), L.Dense(3, activation="tanh"), L.Flatten(),
                                                      L.Dense(3)), "layerwise"),
    "Masking+Dense on sequences": (
        lambda: _sequential((5, 4), L.Masking(0.0), L.Dense(6, activation="tanh"), L.GlobalAveragePooling1D(),
                            L.Dense(3)), "layerwise"),
    "Embedding(mask_zero)+GRU": (
        lambda: _sequential((5,), L.Embedding(9, 4, mask_zero=True), L.GRU(3), L.Dense(3)), "generic"),
    "Embedding(mask_zero)+pooling": (
        lambda: _sequential((5,), L.Embedding(9, 4, mask_zero=True), L.GlobalAveragePooling1D(), L.Dense(3)),
        "generic"),
    "LayerNormalization": (lambda: _sequential((6,), L.Dense(5), L.LayerNormalization(), L.Dense(3)), "generic"),
    "GroupNormalization": (
        lambda: _sequential((5, 5, 2), L.Conv2D(4, 3), L.GroupNormalization(2), L.Flatten(), L.Dense(3)), "generic"),
    "Conv1D": (lambda: _sequential((7, 2), L.Conv1D(3, 3, activation="relu"), L.Flatten(), L.Dense(3)), "generic"),
    "DepthwiseConv2D": (
        lambda: _sequential((5, 5, 2), L.DepthwiseConv2D(3, depth_multiplier=2), L.Flatten(), L.Dense(3)), "generic"),
    "SeparableConv2D": (lambda: _sequential((5, 5, 2), L.SeparableConv2D(3, 3), L.Flatten(), L.Dense(3)), "generic"),
    "PReLU": (lambda: _sequential((6,), L.Dense(5), L.PReLU(), L.Dense(3)), "generic"),
    "EinsumDense": (
        lambda: _sequential((4, 5), L.EinsumDense("abc,cd->abd", output_shape=(4, 3), bias_axes="d"), L.Flatten(),
                            L.Dense(3)), "generic"),
    "GRU (unrolled)": (lambda: _sequential((4, 3), L.GRU(4, unroll=True), L.Dense(3)), "generic"),
    "GRU": (lambda: _sequential((4, 3), L.GRU(4), L.Dense(3)), "generic"),  # vectorizing its loop takes ~5 s
    "MultiHeadAttention": (_self_attention, "generic"),
    "shared layer (called twice)": (_shared_dense, "generic"),
    "nested Sequential in a functional model": (_nested, "generic"),
}


def tape_loop(model, x, y, mask, clip_norm):
    """Per-example gradient norms and the clipped sum Σ_i mask_i min(1, C/‖g_i‖) g_i, one
    example at a time with tf.GradientTape (norm over all trainable variables together)."""
    variables = model.trainable_variables
    norms, total = [], [np.zeros(v.shape, np.float32) for v in variables]
    for i in range(len(x)):
        with tf.GradientTape() as tape:
            logits = model(x[i : i + 1], training=True)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y[i : i + 1], logits=logits)[0]
        grads = [np.zeros(v.shape, np.float32) if g is None else tf.convert_to_tensor(g).numpy()
                 for g, v in zip(tape.gradient(loss, variables), variables)]
        norm = float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in grads)))
        norms.append(norm if mask[i] else 0.0)
        scale = mask[i] * min(1.0, clip_norm / norm)
        total = [t + scale * g for t, g in zip(total, grads)]
    return np.array(norms), total


def layer_model_batch(model, rows=6, seed=0):
    """A batch for `model`: ids in [0, 9) with some zeros (masked) for integer-id inputs, zero
    time steps for Masking models, else standard normal; labels in [0, 3); row 2 is padding."""
    rng = np.random.default_rng(seed)
    shape = (rows, *model.input_shape[1:])
    if any(isinstance(layer, keras.layers.Embedding) for layer in model.layers):
        x = rng.integers(1, 9, shape).astype(np.float32)
        x[:, -2:] = 0
        x[0, 1:] = 0
    else:
        x = rng.normal(size=shape).astype(np.float32)
        if any(isinstance(layer, keras.layers.Masking) for layer in model.layers):
            x[:, 3:] = 0
            x[0, 1:] = 0
    y = rng.integers(0, 3, rows).astype(np.int32)
    mask = np.array([1, 1, 0, 1, 1, 1], np.float32)[:rows]
    return x, y, mask


def relative_error(got, want):
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-12))


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name == "GRU" else name for name in LAYER_MODELS]
)
def test_norms_and_clipped_sums_match_a_per_example_tape_loop(name):
    build, path = LAYER_MODELS[name]
    keras.utils.set_random_seed(3)
    model = build()
    layerwise = supports_layerwise(model)
    assert ("layerwise" if layerwise else "generic") == path
    x, y, mask = layer_model_batch(model)
    want_norms, _ = tape_loop(model, x, y, mask, 1.0)
    clip_norm = float(np.median(want_norms[mask > 0]))  # half the examples are clipped
    _, want_sum = tape_loop(model, x, y, mask, clip_norm)
    grads = chunk_gradients(model, tf.constant(x), tf.constant(y), tf.constant(mask), layerwise)
    norms = np.sqrt(np.maximum(grads.squared_norms().numpy(), 0))
    assert relative_error(norms, want_norms) < 1e-4
    got_sum = grads.weighted_sum(clip_weights(grads.squared_norms(), clip_norm, tf.constant(mask)))
    for got, want in zip(got_sum, want_sum):
        assert relative_error(tf.convert_to_tensor(got).numpy(), want) < 1e-4


def test_a_loaded_model_keeps_the_fast_path(tmp_path):
    """Deserializing a Sequential leaves stale inbound nodes on its layers (Keras rebuilds it
    after each layer it adds); only calls in the model's own graph count as sharing."""
    for model in (_sequential((6,), L.Dense(5, activation="relu"), L.Dense(3)), _functional_model()):
        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
        if isinstance(loaded, keras.Sequential):
            assert len(loaded.layers[0]._inbound_nodes) > 1
        assert supports_layerwise(loaded)
        x, y, mask = layer_model_batch(loaded)
        want_norms, _ = tape_loop(loaded, x, y, mask, 1.0)
        grads = LayerwiseGradients(loaded, tf.constant(x), tf.constant(y), tf.constant(mask))
        assert relative_error(np.sqrt(grads.squared_norms().numpy()), want_norms) < 1e-4
