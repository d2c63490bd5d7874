"""The speed paths of issue 14 compute exactly what the plain paths compute: Poisson chunks at
the smallest traced size, conv ghost norms from space-to-depth blocks, losses read once per
epoch, XLA chosen per device, and a user's `.keras` Conv2D/Dense model on the layerwise path."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from dptune.data import builtin_dataset
from dptune.engine import dpsgd, layer_taps
from dptune.engine.dpsgd import DPSGDStep, jit_compile_default, make_optimizer, train
from dptune.engine.layer_taps import DEPTHWISE_GROUP, Conv2DTap, _conv_patch_gram, _conv_patches
from dptune.engine.models import build_model
from dptune.engine.per_example import supports_layerwise
from dptune.engine.sampling import Chunk, PoissonSampler, poisson_chunk_rows, poisson_chunk_sizes
from dptune.errors import TrainingError
from dptune.spec.config import DPSGDConfig, ModelSpec

L = keras.layers


@pytest.fixture(scope="module")
def digits():
    return builtin_dataset("digits", seed=0)


def _weights(model):
    return np.concatenate([np.ravel(v.numpy()) for v in model.trainable_variables])


def test_poisson_chunk_sizes_run_from_one_sd_below_the_batch_to_the_padded_chunk_3_sd_above():
    sizes = poisson_chunk_sizes(60000, 250)
    assert sizes == (240, 256, 272, 288, 304)  # sd = 15.8: B - sd ... B + 3 sd, up to multiples of 8
    assert sizes[-1] == poisson_chunk_rows(60000, 250, 3.0) == PoissonSampler(60000, 250, 1, None).chunk_rows
    assert poisson_chunk_sizes(100, 100) == (100,)  # never more rows than examples


@pytest.mark.parametrize("microbatches", [32, 4, 1])
def test_a_poisson_step_at_its_smallest_size_equals_the_step_on_the_whole_padded_chunk(digits, microbatches):
    """Same chunks, same noise key: the step that computes each chunk at the smallest traced
    size that holds it (padding left out) moves the model exactly as the step on all rows."""
    config = DPSGDConfig(l2_norm_clip=0.5, noise_multiplier=0.7, num_microbatches=microbatches, batch_size=32,
                         learning_rate=0.5)
    spec = ModelSpec("mlp", hidden_units=(16,))
    sized, padded = (build_model(spec, digits.input_shape, digits.num_classes, seed=0) for _ in range(2))
    x, y = tf.constant(digits.x_train), tf.constant(digits.y_train)
    sized_step = DPSGDStep(sized, make_optimizer(config), config, x, y, 7, False)
    padded_step = DPSGDStep(padded, make_optimizer(config), config, x, y, 7, False)
    padded_step.chunk_sizes = ()  # before the first trace: every chunk at its full row count
    assert len(sized_step.chunk_sizes) > 1
    sampler = PoissonSampler(digits.n_train, 32, microbatches, np.random.default_rng(0))
    rows = sampler.chunk_rows
    steps = [sampler.next_step() for _ in range(12)]
    holed = np.arange(rows, dtype=np.int32)  # the last sampled row past the smallest size, a hole before it
    mask = np.zeros(rows, np.float32)
    mask[[0, 1, 3, rows - 2]] = 1
    steps.append([Chunk(indices=holed, mask=mask, microbatch=holed % microbatches)])
    for number, chunks in enumerate(steps):
        got, count = sized_step.run(chunks, number)
        want, _ = padded_step.run(chunks, number)
        assert count == sum(int(c.mask.sum()) for c in chunks)
        np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
    np.testing.assert_allclose(_weights(sized), _weights(padded), rtol=1e-4, atol=1e-6)
    assert sized_step._fused.experimental_get_tracing_count() == len(sized_step.chunk_sizes)  # each size once


@pytest.mark.parametrize(
    "kernel, strides, padding, size",
    [(4, 2, "valid", 13), (4, 2, "same", 13), (8, 2, "same", 28), (6, 3, "same", 11), ((2, 4), 2, "valid", 9)],
)
def test_conv_patch_gram_from_blocks_equals_the_gram_of_the_patches(kernel, strides, padding, size):
    layer = L.Conv2D(5, kernel, strides=strides, padding=padding)
    x = tf.random.stateless_normal([3, size, size + 1, 4], seed=[1, 2])
    z = layer(x)
    patches = _conv_patches(layer, x)
    want = tf.matmul(patches, patches, transpose_b=True).numpy()
    got = _conv_patch_gram(layer, x, tuple(z.shape[1:3])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_losses_are_read_once_per_epoch_and_a_diverging_epoch_is_named(digits, monkeypatch):
    reads = []
    original = dpsgd._run_epoch

    def counting(step_fn, sampler, first, last, traced):
        out = original(step_fn, sampler, first, last, traced)
        reads.append(last - first)
        return out

    monkeypatch.setattr(dpsgd, "_run_epoch", counting)
    config = DPSGDConfig(num_microbatches=32, batch_size=32, epochs=2)
    result = train(digits, ModelSpec("logreg"), config)
    assert len(reads) == 2 and sum(reads) == result.steps
    assert all(h.seconds_per_step > 0 for h in result.history)
    assert result.seconds_per_step == np.median([h.seconds_per_step for h in result.history])
    diverging = DPSGDConfig(l2_norm_clip=1e30, noise_multiplier=1e30, num_microbatches=32, batch_size=32,
                            learning_rate=1e30, epochs=2)
    with pytest.raises(TrainingError, match=r"in epoch 1 \(steps 1-\d+\); lower the learning rate"):
        train(digits, ModelSpec("logreg"), diverging)


def test_a_step_returns_its_loss_on_the_device_without_reading_it(digits):
    config = DPSGDConfig(num_microbatches=8, batch_size=8)
    model = build_model(ModelSpec("logreg"), digits.input_shape, digits.num_classes, seed=0)
    step = DPSGDStep(model, make_optimizer(config), config, tf.constant(digits.x_train),
                     tf.constant(digits.y_train), 3, False)
    loss, count = step.run(PoissonSampler(digits.n_train, 8, 8, np.random.default_rng(0)).next_step(), 0)
    assert isinstance(loss, tf.Tensor) and loss.shape == () and isinstance(count, int)


def test_xla_is_chosen_per_device(monkeypatch):
    assert jit_compile_default("CPU") is False
    monkeypatch.setitem(dpsgd.JIT_COMPILE_BY_DEVICE, "GPU", True)
    assert jit_compile_default("GPU: NVIDIA H100") is True
    assert jit_compile_default("CPU") is False


def test_a_saved_conv_dense_sequential_loaded_as_a_keras_file_takes_the_layerwise_path(tmp_path, digits):
    model = keras.Sequential([
        keras.Input(digits.input_shape),  # 8 x 8 x 1
        L.Conv2D(4, 3, strides=2, padding="same", activation="relu"),
        L.Conv2D(6, 2, activation="relu"),
        L.Flatten(),
        L.Dense(8, activation="relu"),
        L.Dense(digits.num_classes),
    ])
    path = tmp_path / "user.keras"
    model.save(path)
    loaded = build_model(ModelSpec(kind="keras_file", path=str(path)), digits.input_shape, digits.num_classes)
    assert supports_layerwise(loaded)
    config = DPSGDConfig(num_microbatches=16, batch_size=16, epochs=0.1)
    result = train(digits, ModelSpec(kind="keras_file", path=str(path)), config, model=loaded)
    assert result.gradient_path == "layerwise"


def test_one_channel_conv_gradients_in_groups_of_examples_equal_one_depthwise_call(monkeypatch):
    monkeypatch.setattr(layer_taps, "per_example_conv_kernel_grads", lambda: None)  # TensorFlow's ops
    layer = L.Conv2D(3, 4, strides=2, padding="same")
    x = tf.random.stateless_normal([2 * DEPTHWISE_GROUP + 5, 10, 9, 1], seed=[3, 4])
    layer.build(x.shape)
    tap = Conv2DTap(layer, x)
    delta = tf.reshape(tf.random.stateless_normal(tap.z.shape, seed=[5, 6]), [x.shape[0], -1, 3])
    np.testing.assert_allclose(
        tap.per_example_kernel(delta).numpy(), tap._depthwise_per_example(x, delta).numpy(), rtol=1e-5, atol=1e-6
    )
