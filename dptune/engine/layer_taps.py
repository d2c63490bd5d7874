"""The layer rules of the layerwise per-example path: what a Dense or Conv2D call records
in the forward pass (a "tap": its input rows A, conv: image patches, and pre-activation z)
and how that layer's per-example kernel gradients A_iᵀ D_i, their squared norms (materialized
or ghost norms, Li et al. 2022) and their weighted and per-microbatch sums follow from the
output gradients D. `has_tap(layer)` says which layers have a rule; dptune.engine.per_example
runs the model with `tapped_call` in place of those layers' calls.

Traced inside the trainer's `tf.function`; a chunk holds P examples.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend import get_keras_mask, set_keras_mask

from dptune.engine.native_ops import per_example_conv_kernel_grads
from dptune.engine.runtime import device_name


def has_tap(layer: keras.layers.Layer) -> bool:
    """True for the layers with a rule here: a plain Dense, a channels-last ungrouped Conv2D."""
    if isinstance(layer, keras.layers.Dense):
        return not getattr(layer, "lora_enabled", False) and getattr(layer, "quantization_mode", None) is None
    if type(layer) is keras.layers.Conv2D:
        return layer.groups == 1 and layer.data_format == "channels_last"
    return False


def _conv_patches(layer: keras.layers.Conv2D, x: tf.Tensor) -> tf.Tensor:
    """Input patches of a Conv2D as rows [P, T, kh·kw·cin], ordered like the reshaped kernel.

    Small patches come from a convolution with an identity kernel (oneDNN/cuDNN make this
    3x faster than tf.image.extract_patches for a 64-value patch on a CPU); large ones from
    extract_patches, whose cost does not grow with the patch size squared.
    """
    kh, kw = layer.kernel_size
    size = kh * kw * x.shape[-1]
    if size <= 128:
        identity = tf.reshape(tf.eye(size, dtype=x.dtype), [kh, kw, x.shape[-1], size])
        patches = tf.nn.conv2d(x, identity, layer.strides, layer.padding.upper(), dilations=layer.dilation_rate)
    else:
        sh, sw = layer.strides
        dh, dw = layer.dilation_rate
        patches = tf.image.extract_patches(
            x, sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1], rates=[1, dh, dw, 1], padding=layer.padding.upper()
        )
    return tf.reshape(patches, [tf.shape(x)[0], -1, size])


MATERIALIZE_BYTES = 256 * 2**20

DEPTHWISE_GROUP = 64
"""Examples per depthwise filter gradient of a one-channel Conv2D (`Conv2DTap`): the kernel's
cost grows faster than its channel count (P·C) and, in small groups, loses to thread overhead.
For the seed CNN's first layer on the project's 2-core CPU (2026-12-07, medians of 50 calls,
TensorFlow's default 2 threads), groups of 64 cost 1.5 / 1.7 / 6.5 ms for 250 / 288 / 1024
examples, against 2.9 / 3.2 / 11.0 ms in groups of 16 and 25 ms for 1024 in one call; on one
thread 64 and 16 are within 10 % of each other."""

ONE_HOT_MICROBATCHES = 32
"""Up to this many microbatches, per-example gradients are summed per microbatch with one
matrix product against the examples' one-hot microbatch ids (P·m·K·C multiply-adds on the
BLAS); above it, with a scatter-add (unsorted_segment_sum, P·K·C adds, single-threaded).
Measured for [288, 256·32] on the 2-core CPU: m = 5 / 25 / 64 / 125 take 0.35 / 0.58 / 0.98 /
1.71 ms as a product against 1.23 / 1.29 / 1.09 / 1.21 ms as a scatter-add."""


def sum_by_microbatch(values: tf.Tensor, microbatch: tf.Tensor, count: int) -> tf.Tensor:
    """Σ_{i in microbatch j} values_i for j < count: [count, ...] from values [P, ...] and
    microbatch ids [P] in [0, count)."""
    if count > ONE_HOT_MICROBATCHES:
        return tf.math.unsorted_segment_sum(values, microbatch, count)
    return tf.tensordot(tf.one_hot(microbatch, count, dtype=values.dtype), values, [[0], [0]])


def _too_big_to_materialize(rows_shape, outputs: int) -> bool:
    """True when per-example kernel gradients (P·K·C floats) would exceed MATERIALIZE_BYTES."""
    batch, _, inputs = rows_shape
    return (batch or 1024) * inputs * outputs * 4 > MATERIALIZE_BYTES


def _use_ghost_norms(rows_shape, outputs: int, compiled_kernel: bool = False) -> bool:
    """Norms from Gram matrices (cost T²(K+C) per example; Li et al. 2022) rather than from
    materialized per-example gradients (T·K·C, and P·K·C floats of memory): when those would
    be too big, or the Gram route is cheaper, that is T(K+C) < K·C with TensorFlow's ops and
    T(K+C) < K·C/3 with the compiled Conv2D kernel, whose gradients also give the clipped sum
    (measured for 3×3 convolutions at P = 256 on the 2-core CPU, 2026-12-07: the two routes
    cost the same at T(K+C)/KC = 0.28, Gram matrices 1.7× faster at 0.14, the compiled
    kernel 1.8× faster at 1.1 and 2.5× at 8.9)."""
    _, positions, inputs = rows_shape
    cheaper = positions * (inputs + outputs) * (3 if compiled_kernel else 1) < inputs * outputs
    return _too_big_to_materialize(rows_shape, outputs) or cheaper


def _ghost_squared_norms(gram_rows: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """‖A_iᵀ D_i‖²_F = Σ_{t,s} (A_i A_iᵀ)_{ts} (D_i D_iᵀ)_{ts}, from the Gram matrices
    A_i A_iᵀ [P, T, T] of the input rows and the output gradients D [P, T, C]."""
    gram_delta = tf.matmul(delta, delta, transpose_b=True)
    return tf.reduce_sum(gram_rows * gram_delta, [1, 2])


class DenseTap:
    """A Dense call: input rows A [P, T, K] (T = 1 for flat inputs), pre-activation z."""

    def __init__(self, layer: keras.layers.Dense, x: tf.Tensor):
        self.layer = layer
        self.rows = tf.reshape(x, [tf.shape(x)[0], -1, x.shape[-1]])
        # one 2-D product: oneDNN in TensorFlow 2.21 gets some broadcast batch matmuls
        # ([P, 1, T, K] x [K, N]) wrong or crashes on them
        z = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), layer.kernel)
        self.z = tf.reshape(z, tf.concat([tf.shape(x)[:-1], tf.shape(layer.kernel)[-1:]], 0))
        self.z.set_shape(x.shape[:-1].concatenate(layer.kernel.shape[-1:]))
        self._per_example = None
        self._order = None

    def per_example_kernel(self, delta: tf.Tensor) -> tf.Tensor:
        """A_iᵀ D_i for each example, [P, K, C] (computed once)."""
        return self._in_kernel_order(self._kernel_grads(delta), 1)

    def _kernel_grads(self, delta: tf.Tensor) -> tf.Tensor:
        """`per_example_kernel` with its K rows possibly in another fixed order (`_order`):
        norms and sums over examples need no reordering, and their results are P times
        smaller to reorder."""
        if self._per_example is None:
            self._per_example = tf.matmul(self.rows, delta, transpose_a=True)
        return self._per_example

    def _in_kernel_order(self, grads: tf.Tensor, axis: int) -> tf.Tensor:
        """`grads` with its `axis` (the K rows of `_kernel_grads`) in kernel order."""
        return grads if self._order is None else tf.gather(grads, self._order, axis=axis)

    def _rows_gram(self) -> tf.Tensor:
        """A_i A_iᵀ for each example, [P, T, T]."""
        return tf.matmul(self.rows, self.rows, transpose_b=True)

    def microbatch_kernels(self, delta: tf.Tensor, microbatch: tf.Tensor, count: int) -> tf.Tensor:
        """Σ_{i in microbatch j} A_iᵀ D_i for j < count, [count, K, C]. Flat Dense inputs use
        one matrix product against the output gradients spread over their microbatch's
        columns (Aᵀ [D ⊗ onehot]); other layers sum their per-example gradients."""
        if self.layer_rows_shape()[1] != 1:
            return self._in_kernel_order(sum_by_microbatch(self._kernel_grads(delta), microbatch, count), 1)
        rows, outputs = self.rows[:, 0, :], delta.shape[-1]
        spread = tf.one_hot(microbatch, count, dtype=delta.dtype)[:, :, None] * delta[:, 0, None, :]
        sums = tf.matmul(rows, tf.reshape(spread, [-1, count * outputs]), transpose_a=True)  # [K, count·C]
        return tf.transpose(tf.reshape(sums, [-1, count, outputs]), [1, 0, 2])

    def microbatch_kernel_squared_norms(self, delta: tf.Tensor, microbatch: tf.Tensor, count: int) -> tf.Tensor:
        """‖Σ_{i in microbatch j} A_iᵀ D_i‖²_F for j < count, [count]. Flat Dense inputs use ghost
        norms over each microbatch's rows when cheaper than the sums (P²(K+C) against K·P·m·C
        multiply-adds): Σ_{i,i' in j} (a_i·a_i')(d_i·d_i'), from the Gram matrices of A and D."""
        (batch, positions, inputs), outputs = self.layer_rows_shape(), delta.shape[-1]
        if positions == 1 and batch is not None and batch * (inputs + outputs) < count * inputs * outputs:
            rows, gradients = self.rows[:, 0, :], delta[:, 0, :]
            products = tf.matmul(rows, rows, transpose_b=True) * tf.matmul(gradients, gradients, transpose_b=True)
            members = tf.one_hot(microbatch, count, dtype=delta.dtype)  # [P, count]
            return tf.reduce_sum(members * tf.matmul(products, members), 0)
        return tf.reduce_sum(tf.square(self.microbatch_kernels(delta, microbatch, count)), [1, 2])

    def kernel_squared_norms(self, delta: tf.Tensor) -> tf.Tensor:
        """‖A_iᵀ D_i‖²_F for each example, [P]."""
        if self.layer_rows_shape()[1] == 1:
            return tf.reduce_sum(tf.square(self.rows), [1, 2]) * tf.reduce_sum(tf.square(delta), [1, 2])
        if self._per_example is None and _use_ghost_norms(self.layer_rows_shape(), delta.shape[-1]):
            return _ghost_squared_norms(self._rows_gram(), delta)
        return tf.reduce_sum(tf.square(self._kernel_grads(delta)), [1, 2])

    def layer_rows_shape(self) -> tuple:
        return tuple(self.rows.shape)

    def weighted_kernel(self, weights: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
        """Σ_i weights_i A_iᵀ D_i, [K, C]."""
        if self._per_example is not None:
            return self._in_kernel_order(tf.tensordot(weights, self._per_example, axes=1), 0)
        rows = tf.reshape(self.rows, [-1, self.rows.shape[-1]])
        weighted = tf.reshape(delta * weights[:, None, None], [-1, delta.shape[-1]])
        return tf.matmul(rows, weighted, transpose_a=True)


class Conv2DTap(DenseTap):
    """A Conv2D call. On a CPU with dptune's compiled kernel (`native_ops`, float32), per-example
    kernel gradients come from it, without patches, and give the norms, the clipped sum and
    the microbatch sums (unless `_use_ghost_norms` finds them too big or ghost norms
    cheaper, as for wide layers with few positions). Otherwise they come from
    depthwise-convolution filter gradients with the examples as channels (`DEPTHWISE_GROUP`
    examples per call) when the input has one channel; else norms come from ghost norms over
    the input patches (their Gram matrices from space-to-depth blocks when the stride divides
    the kernel, which is far faster than extract_patches) and the clipped sum from the ordinary
    filter gradient of the reweighted output gradients, or from materialized per-example
    gradients when those are cheaper."""

    def __init__(self, layer: keras.layers.Conv2D, x: tf.Tensor):
        self.layer, self.x = layer, x
        self.z = layer.convolution_op(x, layer.kernel)
        self._per_example = None
        self._native_norms = None  # the compiled kernel's squared norms, with its gradients
        self._order = None
        self._rows = None

    @property
    def rows(self) -> tf.Tensor:
        if self._rows is None:
            self._rows = _conv_patches(self.layer, self.x)
        return self._rows

    def layer_rows_shape(self) -> tuple:
        kh, kw = self.layer.kernel_size
        return (self.x.shape[0], self.z.shape[1] * self.z.shape[2], kh * kw * self.x.shape[-1])

    def _rows_gram(self) -> tf.Tensor:
        return _conv_patch_gram(self.layer, self.x, self._out_hw())

    def _conv_args(self) -> dict:
        return {"strides": [1, *self.layer.strides, 1], "padding": self.layer.padding.upper()}

    def _native_kernel(self):
        """The compiled per-example kernel where it applies (a CPU, float32 inputs), else None."""
        if self.x.dtype != tf.float32 or device_name() != "CPU":
            return None
        return per_example_conv_kernel_grads()

    def _materializes(self, delta: tf.Tensor) -> bool:
        """Norms from materialized per-example gradients: with the compiled kernel unless
        ghost norms are cheaper (`_use_ghost_norms`), or for a one-channel input (depthwise
        filter gradients)."""
        if self._native_kernel() is not None:
            return not _use_ghost_norms(self.layer_rows_shape(), delta.shape[-1], compiled_kernel=True)
        return self.x.shape[-1] == 1 and self.layer.dilation_rate == (1, 1)

    def _padding_before(self) -> list[int]:
        """Zero rows and columns Conv2D's padding puts before the input (TensorFlow's "same":
        half the total, rounded down; "valid": none)."""
        if self.layer.padding != "same":
            return [0, 0]
        windows = [(out - 1) * stride + (k - 1) * rate + 1 for out, stride, k, rate in
                   zip(self._out_hw(), self.layer.strides, self.layer.kernel_size, self.layer.dilation_rate)]
        return [max(window - size, 0) // 2 for window, size in zip(windows, self.x.shape[1:3])]

    def _kernel_grads(self, delta: tf.Tensor) -> tf.Tensor:
        native = self._native_kernel()
        if self._per_example is None and native is not None:
            kh, kw = self.layer.kernel_size
            grads, self._native_norms = native(
                self.x, self._delta_images(delta), kernel_size=[kh, kw], strides=list(self.layer.strides),
                dilations=list(self.layer.dilation_rate), padding=self._padding_before(),
            )
            self._per_example = tf.reshape(grads, [tf.shape(delta)[0], kh * kw * self.x.shape[-1], delta.shape[-1]])
        elif self._per_example is None and self.x.shape[-1] == 1 and self.layer.dilation_rate == (1, 1):
            batch = self.x.shape[0]
            if batch is None or batch <= DEPTHWISE_GROUP:
                self._per_example = self._depthwise_per_example(self.x, delta)
            else:
                sizes = [DEPTHWISE_GROUP] * (batch // DEPTHWISE_GROUP) + [batch % DEPTHWISE_GROUP] * (batch % DEPTHWISE_GROUP > 0)
                self._per_example = tf.concat([
                    self._depthwise_per_example(x, d) for x, d in zip(tf.split(self.x, sizes), tf.split(delta, sizes))
                ], 0)
        elif self._per_example is None:
            patches, self._order = _unordered_conv_patches(self.layer, self.x, self._out_hw())
            self._per_example = tf.matmul(patches, delta, transpose_a=True)
        return self._per_example

    def _depthwise_per_example(self, x: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
        """A_iᵀ D_i [P, kh·kw, C] of one-channel inputs x [P, H, W, 1]: one depthwise filter
        gradient with the P examples as channels."""
        kh, kw = self.layer.kernel_size
        batch = tf.shape(x)[0]
        images = tf.transpose(x[..., 0], [1, 2, 0])[None]  # [1, H, W, P]
        out_grad = tf.transpose(self._delta_images(delta), [1, 2, 0, 3])
        out_grad = tf.reshape(out_grad, [1, *self._out_hw(), -1])  # [1, Ho, Wo, P·C]
        grads = tf.compat.v1.nn.depthwise_conv2d_native_backprop_filter(
            images, [kh, kw, batch, delta.shape[-1]], out_grad, **self._conv_args()
        )  # [kh, kw, P, C]
        return tf.reshape(tf.transpose(grads, [2, 0, 1, 3]), [batch, kh * kw, -1])

    def _out_hw(self) -> tuple[int, int]:
        return tuple(self.z.shape[1:3])

    def _delta_images(self, delta: tf.Tensor) -> tf.Tensor:
        return tf.reshape(delta, [tf.shape(delta)[0], *self._out_hw(), delta.shape[-1]])

    def kernel_squared_norms(self, delta: tf.Tensor) -> tf.Tensor:
        if self._materializes(delta):
            grads = self._kernel_grads(delta)
            if self._native_norms is not None:
                return self._native_norms
            return tf.reduce_sum(tf.square(grads), [1, 2])
        return super().kernel_squared_norms(delta)

    def weighted_kernel(self, weights: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
        if self._per_example is not None:
            return super().weighted_kernel(weights, delta)
        weighted = self._delta_images(delta * weights[:, None, None])
        return tf.compat.v1.nn.conv2d_backprop_filter(
            self.x, self.layer.kernel.shape, weighted, dilations=[1, *self.layer.dilation_rate, 1], **self._conv_args()
        )


def _same_padding(layer: keras.layers.Conv2D, x: tf.Tensor, need_hw: tuple[int, int]) -> tf.Tensor:
    """x padded as Conv2D's "same" padding does (at most one more row/column at the end) so
    that windows of `need_hw` input pixels fit; "valid" x unchanged."""
    if layer.padding != "same":
        return x
    pad_h, pad_w = max(need_hw[0] - x.shape[1], 0), max(need_hw[1] - x.shape[2], 0)
    return tf.pad(x, [[0, 0], [pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2], [0, 0]])


def _conv_patch_gram(layer: keras.layers.Conv2D, x: tf.Tensor, out_hw: tuple[int, int]) -> tf.Tensor:
    """A_i A_iᵀ [P, T, T] of the Conv2D's input patches, without the patches when the stride
    s ≥ 2 divides the kernel: a k×k stride-s window is (k/s)² adjacent blocks of
    space_to_depth(x, s), so (A_i A_iᵀ)_{(y,x),(y',x')} = Σ_{a,b} G_i[(y+a, x+b), (y'+a, x'+b)]
    with G_i the Gram matrix of the blocks (half the products of the patches' Gram for the
    seed CNN's 4×4 stride-2 layer, and no patch copies)."""
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    if layer.dilation_rate != (1, 1) or sh != sw or sh < 2 or kh % sh or kw % sw:
        patches = _conv_patches(layer, x)
        return tf.matmul(patches, patches, transpose_b=True)
    (out_h, out_w), (ah, aw) = out_hw, (kh // sh, kw // sw)
    blocks_h, blocks_w = out_h + ah - 1, out_w + aw - 1
    x = _same_padding(layer, x, (blocks_h * sh, blocks_w * sw))
    blocks = tf.nn.space_to_depth(x[:, : blocks_h * sh, : blocks_w * sw, :], sh)
    blocks = tf.reshape(blocks, [tf.shape(x)[0], blocks_h * blocks_w, -1])
    gram = tf.reshape(tf.matmul(blocks, blocks, transpose_b=True), [-1, blocks_h, blocks_w, blocks_h, blocks_w])
    total = tf.add_n([
        gram[:, a : a + out_h, b : b + out_w, a : a + out_h, b : b + out_w] for a in range(ah) for b in range(aw)
    ])
    return tf.reshape(total, [-1, out_h * out_w, out_h * out_w])


def _unordered_conv_patches(
    layer: keras.layers.Conv2D, x: tf.Tensor, out_hw: tuple[int, int]
) -> tuple[tf.Tensor, np.ndarray | None]:
    """The patches of `_conv_patches` with their K values possibly in another fixed order,
    and `order` such that patches[..., order] is in kernel order (None: already in order).

    With stride s dividing the kernel size k, a k×k stride-s window is (k/s)² adjacent
    blocks of space_to_depth(x, s), so the patches are (k/s)² contiguous slices.
    """
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    if layer.dilation_rate != (1, 1) or sh != sw or sh < 2 or kh % sh or kw % sw:
        return _conv_patches(layer, x), None
    (out_h, out_w), channels = out_hw, x.shape[-1]
    need_h, need_w = (out_h - 1) * sh + kh, (out_w - 1) * sw + kw
    x = _same_padding(layer, x, (need_h, need_w))
    blocks = tf.nn.space_to_depth(x[:, :need_h, :need_w, :], sh)
    parts = [blocks[:, a : a + out_h, b : b + out_w, :] for a in range(kh // sh) for b in range(kw // sw)]
    patches = tf.reshape(tf.concat(parts, -1), [tf.shape(x)[0], out_h * out_w, kh * kw * channels])
    # unordered position (a, b, di, dj, c) holds kernel entry (a·s + di, b·s + dj, c)
    a, b, di, dj, c = np.meshgrid(range(kh // sh), range(kw // sw), range(sh), range(sw), range(channels),
                                  indexing="ij")
    kernel_index = (((a * sh + di) * kw + (b * sw + dj)) * channels + c).ravel()
    return patches, np.argsort(kernel_index).astype(np.int32)


def tapped_call(layer: keras.layers.Layer, x: tf.Tensor, taps: list) -> tf.Tensor:
    """Run a Dense/Conv2D exactly as Keras does, recording what its per-example gradients need.

    The input's Keras mask (e.g. from Masking) is passed on as Keras passes it (Dense keeps
    it, Conv2D drops it), so that mask-aware layers downstream (pooling, RNNs) see it."""
    tap = DenseTap(layer, x) if isinstance(layer, keras.layers.Dense) else Conv2DTap(layer, x)
    z = tap.z + layer.bias if layer.use_bias else tap.z
    tap.z = z
    taps.append(tap)
    out = layer.activation(z) if layer.activation is not None else z
    previous_mask = get_keras_mask(x)
    if previous_mask is not None and layer.supports_masking:
        set_keras_mask(out, layer.compute_mask(x, previous_mask))
    return out
