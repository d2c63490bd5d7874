"""dptune's compiled per-example Conv2D kernel against an independent reference: each example's
kernel gradient from its own GradientTape through a Keras Conv2D (so padding, strides,
dilations and the register blocks' edges are all checked against Keras's own convolution)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from dptune.engine import native_ops
from dptune.engine.layer_taps import Conv2DTap


@pytest.fixture(scope="module")
def kernel():
    op = native_ops.per_example_conv_kernel_grads()
    if op is None:
        pytest.skip(f"dptune's compiled kernel is unavailable ({native_ops.unavailable_reason()}); "
                    "install a C++ compiler: apt-get install g++")
    return op


def tape_gradients(layer, x, delta_images):
    """∂(Σ z_i · D_i)/∂kernel for each example i alone: A_iᵀ D_i, [P, kh, kw, Ci, Co]."""
    grads = []
    for i in range(x.shape[0]):
        with tf.GradientTape() as tape:
            z = layer.convolution_op(x[i : i + 1], layer.kernel)
            total = tf.reduce_sum(z * delta_images[i : i + 1])
        grads.append(tape.gradient(total, layer.kernel))
    return tf.stack(grads).numpy()


CASES = {
    # name: (input shape, filters, kernel, strides, padding, dilation)
    "seed CNN's first layer: 1 channel, 8x8 stride 2 same": ((28, 28, 1), 16, 8, 2, "same", 1),
    "seed CNN's second layer: 16 channels, 4x4 stride 2 valid": ((13, 13, 16), 32, 4, 2, "valid", 1),
    "20 filters: a 16-channel block and a 4-channel tail": ((9, 9, 3), 20, 3, 1, "same", 1),
    "even kernel, uneven same padding, 5 kernel columns": ((10, 11, 2), 16, (2, 5), (1, 2), "same", 1),
    "dilated, fewer than 16 filters": ((12, 12, 2), 8, 3, 1, "valid", 2),
    "10 kernel columns: blocks of 8 and 2": ((7, 12, 1), 16, (3, 10), 1, "same", 1),
    "stride larger than the kernel": ((11, 11, 2), 16, 2, 3, "same", 1),
}


@pytest.mark.parametrize("name", CASES)
def test_compiled_per_example_kernel_gradients_and_norms_equal_a_tape_per_example(kernel, name):
    shape, filters, size, strides, padding, dilation = CASES[name]
    layer = keras.layers.Conv2D(filters, size, strides=strides, padding=padding, dilation_rate=dilation)
    x = tf.random.stateless_normal([5, *shape], seed=[1, 2])
    layer.build(x.shape)
    tap = Conv2DTap(layer, x)
    assert tap._native_kernel() is kernel
    delta = tf.random.stateless_normal([5, tap.z.shape[1] * tap.z.shape[2], filters], seed=[3, 4])
    want = tape_gradients(layer, x, tap._delta_images(delta))
    got = tap.per_example_kernel(delta).numpy().reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tap.kernel_squared_norms(delta).numpy(), np.sum(want**2, (1, 2, 3, 4)), rtol=1e-4)
    weights = tf.constant([0.5, 0.0, 1.0, 0.25, 2.0])
    np.testing.assert_allclose(tap.weighted_kernel(weights, delta).numpy().reshape(want.shape[1:]),
                               np.tensordot(weights.numpy(), want, 1), rtol=1e-4, atol=1e-5)


def test_the_reference_catches_a_wrong_padding(kernel):
    """The comparison above is sharp: the same kernel called with padding shifted by one row
    (what an off-by-one in `_padding_before` would do) differs from the tape."""
    layer = keras.layers.Conv2D(16, 8, strides=2, padding="same")
    x = tf.random.stateless_normal([3, 28, 28, 1], seed=[5, 6])
    layer.build(x.shape)
    tap = Conv2DTap(layer, x)
    delta_images = tf.random.stateless_normal([3, *tap.z.shape[1:]], seed=[7, 8])
    want = tape_gradients(layer, x, delta_images)
    right, _ = kernel(x, delta_images, kernel_size=[8, 8], strides=[2, 2], dilations=[1, 1], padding=tap._padding_before())
    shifted, _ = kernel(x, delta_images, kernel_size=[8, 8], strides=[2, 2], dilations=[1, 1],
                        padding=[tap._padding_before()[0] + 1, tap._padding_before()[1]])
    np.testing.assert_allclose(right.numpy(), want, rtol=1e-4, atol=1e-5)
    assert np.max(np.abs(shifted.numpy() - want)) > 0.1


def test_the_kernel_refuses_inconsistent_arguments_with_a_message(kernel):
    x = tf.zeros([2, 8, 8, 1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="differ in examples"):
        kernel(x, tf.zeros([3, 4, 4, 2]), kernel_size=[3, 3], strides=[2, 2], dilations=[1, 1], padding=[0, 0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="positive"):
        kernel(x, tf.zeros([2, 4, 4, 2]), kernel_size=[3, 3], strides=[0, 2], dilations=[1, 1], padding=[0, 0])


def test_without_a_compiler_the_kernel_is_none_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("DPTUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(native_ops, "_compiler", lambda: None)
    native_ops._load.cache_clear()
    try:
        assert native_ops.per_example_conv_kernel_grads() is None
        assert "no C++ compiler" in native_ops.unavailable_reason()
        assert not (tmp_path / "native").exists()
    finally:
        native_ops._load.cache_clear()


def test_a_failing_build_leaves_tensorflow_ops_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("DPTUNE_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")  # a "compiler" that always fails
    native_ops._load.cache_clear()
    try:
        assert native_ops.per_example_conv_kernel_grads() is None
        assert "failed" in native_ops.unavailable_reason()
        assert list((tmp_path / "native").iterdir()) == []  # no half-built file left behind
    finally:
        native_ops._load.cache_clear()


@pytest.mark.parametrize("shape, filters, materializes", [
    ((13, 13, 16), 32, True),  # the seed CNN's second layer: T(K+C)/KC = 0.88
    ((32, 32, 3), 32, True),  # a CIFAR-sized first layer: many positions
    ((4, 4, 128), 128, False),  # few positions, wide: T(K+C)/KC = 0.14, ghost norms are cheaper
])
def test_the_compiled_kernel_is_used_where_it_is_cheaper_than_ghost_norms(kernel, shape, filters, materializes):
    layer = keras.layers.Conv2D(filters, 4 if shape[0] == 13 else 3, strides=2 if shape[0] == 13 else 1,
                                padding="valid" if shape[0] == 13 else "same")
    x = tf.zeros([4, *shape])
    layer.build(x.shape)
    tap = Conv2DTap(layer, x)
    assert tap._materializes(tf.zeros([4, tap.z.shape[1] * tap.z.shape[2], filters])) == materializes


BUILD_AND_REPORT = """
from dptune.engine import native_ops
print("ok" if native_ops.per_example_conv_kernel_grads() else native_ops.unavailable_reason())
"""


@pytest.mark.slow
def test_two_workers_building_the_kernel_at_once_both_load_it(kernel, tmp_path):
    """Workers of one search start together on a fresh machine: each builds into its own file
    and renames it into place, so both load a whole kernel and one file is left."""
    env = {**os.environ, "DPTUNE_CACHE": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    workers = [subprocess.Popen([sys.executable, "-c", BUILD_AND_REPORT], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outputs = [worker.communicate(timeout=native_ops.BUILD_TIMEOUT_SECONDS + 120)[0].strip() for worker in workers]
    assert outputs == ["ok", "ok"]
    assert [path.suffix for path in (tmp_path / "native").iterdir()] == [".so"]
