"""Per-example gradient geometry: norms, clipped sums and per-example gradients, vectorized.

Fast ("layerwise") path, used when every trainable layer is a Dense or Conv2D called once
in the model's own graph (a layer called twice shares its weights across calls, and nested
models with trainable weights are not unpacked, so both take the generic path): one forward
pass records each layer's input activations A (conv: image patches) and one backward pass
gives the per-example loss gradients D with respect to each layer's pre-activation output.
A layer's per-example weight gradient is then A_iᵀ D_i (summed over positions), so
  * per-example squared norms come from A and D alone, either by materializing A_iᵀ D_i or,
    when cheaper, from Gram matrices ("ghost norms", Li et al. 2022), and
  * the clipped sum Σ_i w_i ∇L_i is Aᵀ (w ⊙ D): no second backward pass ("book-keeping",
    Bu et al. 2023).
Those per-layer rules (what a Dense or Conv2D call records, and its products; on a CPU, a
Conv2D's per-example gradients from dptune's compiled kernel, dptune.engine.native_ops) live in
dptune.engine.layer_taps; this module runs the model through them and adds the generic path
and the clipping weights.
Any other trainable layer sends the whole model down the generic path: per-example
gradients of the whole model, each example a batch of one, with `tf.vectorized_map`, or a
`tf.map_fn` loop for the few models vectorized_map gets wrong (`vectorizes_safely`).

All functions here are traced inside the trainer's `tf.function`. Shapes: a chunk holds P
examples (padded rows have mask 0 and contribute exactly nothing).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import keras
import tensorflow as tf

from dptune.engine.layer_taps import has_tap, sum_by_microbatch, tapped_call

_TINY = 1e-12


def per_example_losses(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of each example, shape [P]."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def _model_layers(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _calls_in_graph(model: keras.Model) -> Counter:
    """How often each layer (by id) is called in the model's own graph. Counted from the
    graph, not from `layer._inbound_nodes`: a deserialized layer keeps stale nodes of the
    calls Keras made while rebuilding it."""
    if isinstance(model, keras.Sequential):
        return Counter(id(layer) for layer in _model_layers(model))
    return Counter(
        id(node.operation) for nodes in model._nodes_by_depth.values() for node in nodes if not node.is_input
    )


def supports_layerwise(model: keras.Model) -> bool:
    """True when every layer with trainable weights has a fast per-example rule and is called
    once (a shared layer's per-call products would miss the cross terms between its calls)."""
    if not isinstance(model, keras.Sequential) and not hasattr(model, "_run_through_graph"):
        return False
    calls = _calls_in_graph(model)
    for layer in _model_layers(model):
        if layer.trainable_weights and (not has_tap(layer) or calls[id(layer)] != 1):
            return False
    return True


def run_graph(model: keras.Model, x, operation_fn: Callable[[keras.layers.Layer], Callable]):
    """The model's forward pass with each layer call `layer(*args, **kwargs)` replaced by
    `operation_fn(layer)(*args, **kwargs)`; returns the model's outputs. A Sequential's
    layers are called in order, a functional model's in its graph order (nested models are
    single operations)."""
    if isinstance(model, keras.Sequential):
        out = x
        for layer in _model_layers(model):
            out = operation_fn(layer)(out)
        return out
    return model._run_through_graph(x, operation_fn=operation_fn)


def forward_with_taps(model: keras.Model, x: tf.Tensor) -> tuple[tf.Tensor, list]:
    """Training-mode forward pass of a layerwise-supported model; returns logits and the taps."""
    taps: list = []

    def run(layer):
        if layer.trainable_weights:
            return lambda inputs, **_: tapped_call(layer, inputs, taps)
        return lambda *args, **kwargs: layer(*args, **{**kwargs, "training": True})

    return run_graph(model, x, run), taps


class LayerwiseGradients:
    """Layer inputs and output gradients D for one chunk, and what follows from them."""

    def __init__(self, model: keras.Model, x: tf.Tensor, labels: tf.Tensor, mask: tf.Tensor):
        with tf.GradientTape() as tape:
            logits, self.taps = forward_with_taps(model, x)
            self.loss_sum = tf.reduce_sum(per_example_losses(logits, labels) * mask)
        dzs = tape.gradient(self.loss_sum, [tap.z for tap in self.taps])
        self.deltas = [tf.reshape(dz, [tf.shape(dz)[0], -1, dz.shape[-1]]) for dz in dzs]
        self.bias_grads = [tf.reduce_sum(delta, 1) for delta in self.deltas]  # per example, [P, C]
        self.variables = model.trainable_variables

    def squared_norms(self) -> tf.Tensor:
        """‖∇L_i‖² over all trainable parameters, shape [P]."""
        total = 0.0
        for tap, delta, bias in zip(self.taps, self.deltas, self.bias_grads):
            total += tap.kernel_squared_norms(delta)
            if tap.layer.use_bias:
                total += tf.reduce_sum(tf.square(bias), 1)
        return total

    def _by_variable(self, kernels, biases, leading: list) -> list[tf.Tensor]:
        by_id = {}
        for tap, kernel, bias in zip(self.taps, kernels, biases):
            by_id[id(tap.layer.kernel)] = tf.reshape(kernel, leading + list(tap.layer.kernel.shape))
            if tap.layer.use_bias:
                by_id[id(tap.layer.bias)] = bias
        return [by_id[id(v)] for v in self.variables]

    def weighted_sum(self, weights: tf.Tensor) -> list[tf.Tensor]:
        """Σ_i weights_i ∇L_i for every trainable variable (in model.trainable_variables order)."""
        kernels = [tap.weighted_kernel(weights, delta) for tap, delta in zip(self.taps, self.deltas)]
        biases = [tf.tensordot(weights, bias, axes=1) for bias in self.bias_grads]
        return self._by_variable(kernels, biases, [])

    def per_example(self) -> list[tf.Tensor]:
        """∇L_i for every example and variable: tensors of shape [P, *variable.shape]."""
        kernels = [tap.per_example_kernel(delta) for tap, delta in zip(self.taps, self.deltas)]
        return self._by_variable(kernels, self.bias_grads, [-1])

    def microbatch_squared_norms(self, microbatch: tf.Tensor, count: int) -> tf.Tensor:
        """‖Σ_{i in microbatch j} ∇L_i‖² over all trainable parameters for j < count, [count],
        where possible without the sums themselves (`DenseTap.microbatch_kernel_squared_norms`)."""
        total = 0.0
        for tap, delta, bias in zip(self.taps, self.deltas, self.bias_grads):
            total += tap.microbatch_kernel_squared_norms(delta, microbatch, count)
            if tap.layer.use_bias:
                total += tf.reduce_sum(tf.square(sum_by_microbatch(bias, microbatch, count)), 1)
        return total

    def microbatch_sums(self, microbatch: tf.Tensor, count: int) -> list[tf.Tensor]:
        """Σ_{i in microbatch j} ∇L_i for j < count: tensors of shape [count, *variable.shape]."""
        kernels = [tap.microbatch_kernels(delta, microbatch, count) for tap, delta in zip(self.taps, self.deltas)]
        biases = [sum_by_microbatch(bias, microbatch, count) for bias in self.bias_grads]
        return self._by_variable(kernels, biases, [-1])


def vectorizes_safely(model: keras.Model) -> bool:
    """False for models whose per-example gradients `tf.vectorized_map` gets wrong in
    TensorFlow 2.21 (measured against a per-example GradientTape loop): EinsumDense, also
    inside MultiHeadAttention and GroupQueryAttention (its [1, T, K] x [K, N] matmul becomes
    a broadcast [P, 1, T, K] x [K, N] batch matmul that oneDNN computes wrongly or crashes
    on), and an Embedding together with a recurrent layer (the vectorized while loop fails
    to trace)."""
    layers = model._flatten_layers(include_self=False, recursive=True)
    if any(isinstance(layer, keras.layers.EinsumDense) for layer in layers):
        return False
    has_embedding = any(isinstance(layer, keras.layers.Embedding) for layer in layers)
    return not (has_embedding and any(isinstance(layer, keras.layers.RNN) for layer in layers))


class GenericGradients:
    """Per-example gradients of the whole model, each example run as a batch of one (any
    layer): vectorized with tf.vectorized_map, or with tf.map_fn (a loop, slower) for the
    models that `vectorizes_safely` rejects."""

    def __init__(self, model: keras.Model, x: tf.Tensor, labels: tf.Tensor, mask: tf.Tensor):
        self.variables = model.trainable_variables

        def one_example(args):
            xi, yi, mi = args
            with tf.GradientTape() as tape:
                logits = model(xi[None], training=True)
                loss = per_example_losses(logits, yi[None])[0] * mi
            grads = tape.gradient(loss, self.variables)
            return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
                    for g, v in zip(grads, self.variables)], loss

        if vectorizes_safely(model):
            self._grads, losses = tf.vectorized_map(one_example, (x, labels, mask), fallback_to_while_loop=True)
        else:
            signature = ([tf.TensorSpec(v.shape, v.dtype) for v in self.variables], tf.TensorSpec([], tf.float32))
            self._grads, losses = tf.map_fn(one_example, (x, labels, mask), fn_output_signature=signature)
        self.loss_sum = tf.reduce_sum(losses)

    def squared_norms(self) -> tf.Tensor:
        return tf.add_n([tf.reduce_sum(tf.reshape(tf.square(g), [tf.shape(g)[0], -1]), 1) for g in self._grads])

    def weighted_sum(self, weights: tf.Tensor) -> list[tf.Tensor]:
        return [tf.tensordot(weights, g, axes=1) for g in self._grads]

    def per_example(self) -> list[tf.Tensor]:
        return list(self._grads)

    def microbatch_sums(self, microbatch: tf.Tensor, count: int) -> list[tf.Tensor]:
        return [sum_by_microbatch(g, microbatch, count) for g in self._grads]

    def microbatch_squared_norms(self, microbatch: tf.Tensor, count: int) -> tf.Tensor:
        return squared_norms_of_sums(self.microbatch_sums(microbatch, count))


def summed_gradients(model: keras.Model, x, labels, mask) -> tuple[list[tf.Tensor], tf.Tensor]:
    """(Σ_i mask_i ∇L_i, Σ_i mask_i L_i) by ordinary backpropagation (all m = 1 needs)."""
    with tf.GradientTape() as tape:
        loss_sum = tf.reduce_sum(per_example_losses(model(x, training=True), labels) * mask)
    return tape.gradient(loss_sum, model.trainable_variables), loss_sum


def chunk_gradients(model: keras.Model, x, labels, mask, layerwise: bool):
    """Per-example gradient machinery for one chunk: LayerwiseGradients or GenericGradients."""
    cls = LayerwiseGradients if layerwise else GenericGradients
    return cls(model, x, labels, mask)


def clip_weights(squared_norms: tf.Tensor, clip_norm: float, mask: tf.Tensor) -> tf.Tensor:
    """min(1, C/‖g‖) for each row (0 for padded rows)."""
    norms = tf.sqrt(tf.maximum(squared_norms, 0.0))
    return mask * tf.minimum(1.0, clip_norm / tf.maximum(norms, _TINY))


def squared_norms_of_sums(sums: list[tf.Tensor]) -> tf.Tensor:
    """‖sums_j‖² over all variables, [m], from per-microbatch sums [m, *variable.shape]."""
    return tf.add_n([tf.reduce_sum(tf.reshape(tf.square(s), [tf.shape(s)[0], -1]), 1) for s in sums])


def microbatch_clip_weights(squared_sum_norms: tf.Tensor, counts: tf.Tensor, clip_norm: float) -> tf.Tensor:
    """c_j / n_j with c_j = min(1, C/‖g_j‖), g_j = sums_j / n_j the mean gradient of
    microbatch j (0 for an empty one), so that the clipped terms are c_j g_j = weights_j · sums_j.

    squared_sum_norms: ‖sums_j‖² over all variables, [m] (`squared_norms_of_sums`, or
    `microbatch_squared_norms` without the sums); counts: [m]."""
    inverse_counts = tf.math.divide_no_nan(1.0, counts)
    return clip_weights(squared_sum_norms * tf.square(inverse_counts), clip_norm, tf.ones_like(counts)) * inverse_counts
