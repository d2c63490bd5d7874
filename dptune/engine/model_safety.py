"""Whether a Keras model computes each example's gradient from that example alone.

Per-example clipping bounds one example's influence on a DP-SGD step by C (2C with
microbatches) only if adding or removing that example leaves every other example's
gradient unchanged. dptune checks a user's model for this in two ways when it is loaded
(dptune.engine.user_models):

* `layer_problem`: every layer must be a built-in Keras layer whose type is on
  PER_EXAMPLE_LAYERS, the types known to compute each example's output from that example
  alone, and must not be configured to reach across the batch axis: an `axis`/`axes`
  argument that resolves to axis 0, an EinsumDense equation that contracts or moves the
  batch axis, MultiHeadAttention over axis 0.
* `removal_test`: the engine's own per-example machinery (the path the trainer takes for
  this model, dptune.engine.per_example) computes the clipped sum of a random batch shaped like
  the model's input; a few examples are then removed one at a time (the row becomes a
  padding row, as the sampler pads) and the sum recomputed. It must move by at most C with
  per-example clipping and at most 2C with microbatches. `removal_problems` turns a failure
  into a sentence naming the layers whose outputs for other examples change when one
  example changes (`mixing_layers`), when they can be found.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from keras.src.backend import get_keras_mask, set_keras_mask

from dptune.engine.per_example import (
    chunk_gradients,
    clip_weights,
    microbatch_clip_weights,
    run_graph,
    supports_layerwise,
)

PER_EXAMPLE_LAYERS = frozenset({
    # core, activations
    "InputLayer", "Dense", "EinsumDense", "Embedding", "Identity", "Masking", "Activation",
    "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    # convolutions
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D", "SeparableConv2D",
    # pooling
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalMaxPooling3D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalAveragePooling3D",
    "AdaptiveMaxPooling1D", "AdaptiveMaxPooling2D", "AdaptiveMaxPooling3D",
    "AdaptiveAveragePooling1D", "AdaptiveAveragePooling2D", "AdaptiveAveragePooling3D",
    # normalization over the features of one example (fixed statistics for Normalization)
    "LayerNormalization", "GroupNormalization", "UnitNormalization", "RMSNormalization", "Normalization",
    # training noise, drawn for each example separately
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise",
    "AlphaDropout", "ActivityRegularization",
    # reshaping within one example
    "Flatten", "Reshape", "Permute", "RepeatVector", "Cropping1D", "Cropping2D", "Cropping3D",
    "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "UpSampling1D", "UpSampling2D", "UpSampling3D",
    "Rescaling", "Resizing", "CenterCrop",
    # merging the branches of one example
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
    # recurrent layers (stateless: `stateful=True` is refused separately) and their cells
    "SimpleRNN", "GRU", "LSTM", "RNN", "SimpleRNNCell", "GRUCell", "LSTMCell", "StackedRNNCells",
    "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "ConvLSTMCell", "Bidirectional", "TimeDistributed",
    # attention within one example
    "MultiHeadAttention", "GroupQueryAttention", "Attention", "AdditiveAttention",
})
"""Class names of the built-in Keras layers known to compute each example's output (and
gradient) from that example alone, given a configuration that `layer_problem` accepts."""

CONTAINERS = frozenset({"Sequential", "Functional", "Model"})
"""Built-in model classes: containers whose layers are checked one by one."""

AXIS_ARGUMENTS = {
    "Softmax": "axis", "UnitNormalization": "axis", "LayerNormalization": "axis", "RMSNormalization": "axis",
    "GroupNormalization": "axis", "Normalization": "axis", "Concatenate": "axis", "Dot": "axes",
    "MultiHeadAttention": "attention_axes",
}
"""Layers whose argument names axes of their input (batch axis = 0) that they reduce, join or attend over."""

REMOVAL_EXAMPLES = 8
"""Real rows in the removal test's batch."""
REMOVAL_PADDING_ROWS = 2
"""Padding rows (mask 0) after the real rows, as the sampler pads a chunk."""
REMOVAL_POSITIONS = (0, 3, 7)
"""Rows removed one at a time in the removal test."""
REMOVAL_OUTLIER_SCALE = 10.0
"""The last removed row is an outlier: a random example times this (float inputs only); one
extreme example moves what a batch-mixing layer computes for the others the most."""
REMOVAL_MICROBATCHES = 3
"""Microbatches of the removal test's microbatched check (row r goes to microbatch r mod 3)."""
REMOVAL_TOLERANCE = 1e-3
"""Float32 slack: relative on the bounds C and 2C, and the most (in units of C) the other
examples' clipped gradients may move together."""
_MIXING_TOLERANCE = 1e-5
"""Relative change of another row's output that counts as mixing in `mixing_layers`."""


# --------------------------------------------------------------------------- layer types


def layer_problem(layer: keras.layers.Layer, input_ranks: Collection[int] = ()) -> str | None:
    """Why `layer` may mix examples of the batch (a sentence naming it), or None.

    input_ranks: the ranks (batch axis included) of the layer's first input in the calls
    the model makes, used to resolve negative axes; without them only a literal axis 0 is
    recognised (the removal test covers the rest). Assumes a built-in Keras layer (custom
    code and BatchNormalization are refused by dptune.engine.user_models with their own reasons).
    """
    class_name = type(layer).__name__
    label = f"layer {layer.name!r} ({class_name})"
    if class_name in CONTAINERS:
        return None
    if class_name not in PER_EXAMPLE_LAYERS:
        return (
            f"{label} is not on dptune's list of layers known to compute each example's output from that example "
            "alone (only such layers keep one example's influence on a step within the clip norm): rebuild it "
            "from Dense, convolution, pooling, recurrent, attention, normalization (not BatchNormalization) and "
            "reshaping layers"
        )
    argument = AXIS_ARGUMENTS.get(class_name)
    if argument is not None:
        axes = _as_tuple(getattr(layer, argument, None))
        if any(_is_batch_axis(axis, input_ranks) for axis in axes):
            return (
                f"{label} has {argument}={_show(getattr(layer, argument))}, which includes axis 0, the batch axis: "
                "each example's output would depend on the other examples of the batch; use feature axes only "
                "(e.g. axis=-1)"
            )
    if class_name == "EinsumDense" and not einsum_keeps_batch(layer.equation):
        return (
            f"{label} has equation {layer.equation!r}, which does not keep the first (batch) axis of its input as "
            "the first axis of its output, untouched: write the equation with the batch axis first on both sides "
            "and absent from the kernel, e.g. 'ab,bc->ac' or '...b,bc->...c'"
        )
    return None


def einsum_keeps_batch(equation: str) -> bool:
    """True when an EinsumDense equation 'input,kernel->output' maps the input's first axis
    (or leading '...') to the output's first axis, without contracting or repeating it."""
    equation = equation.replace(" ", "")
    if "->" not in equation or equation.count(",") != 1:
        return False
    operands, output = equation.split("->")
    source, kernel = operands.split(",")
    if source.startswith("..."):
        return output.startswith("...") and "..." not in kernel
    if not source or not source[0].isalpha():
        return False
    batch = source[0]
    return source.count(batch) == 1 and batch not in kernel and output[:1] == batch and output.count(batch) == 1


def input_ranks(model: keras.Model) -> dict[int, set[int]]:
    """Ranks of each layer's first input (by layer id) in every graph of `model` (nested
    models and a Sequential's own graph included); layers called only inside other layers
    (RNN cells, attention internals) and layers of an unbuilt model have none."""
    ranks: dict[int, set[int]] = {}
    graphs = [model, *model._flatten_layers(include_self=False, recursive=True)]
    graphs += [graph._functional for graph in graphs if getattr(graph, "_functional", None) is not None]
    for graph in graphs:
        for nodes in getattr(graph, "_nodes_by_depth", {}).values():
            for node in nodes:
                if node.operation is not None and not node.is_input and node.input_tensors:
                    ranks.setdefault(id(node.operation), set()).add(len(node.input_tensors[0].shape))
    return ranks


def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def _is_batch_axis(axis, ranks: Collection[int]) -> bool:
    if not isinstance(axis, (int, np.integer)):
        return False
    return axis == 0 or any(axis + rank == 0 for rank in ranks)


def _show(value) -> str:
    return str(list(value)) if isinstance(value, (list, tuple)) else repr(value)


# --------------------------------------------------------------------------- removal test


@dataclass(frozen=True)
class RemovalResult:
    """How far the clipped gradient sum moves when one example is removed from a batch, in
    units of the clip norm C, the largest over the removed positions and the clip norms tried.

    per_example: ‖S(D) − S(D′)‖/C with per-example clipping (allowed: ≤ 1).
    microbatched: the same with REMOVAL_MICROBATCHES microbatches, each microbatch's mean
        gradient clipped (allowed: ≤ 2).
    others_moved: ‖S(D) − S(D′) − ĝ_i‖/C, where ĝ_i is the removed example's own clipped
        gradient in D: how far all the other examples' clipped gradients moved together
        (allowed: float32 round-off). It catches mixing at first order, where the move itself
        may still look like C.
    gradient_path: "layerwise" or "generic", the per-example machinery the trainer uses.
    """

    per_example: float
    microbatched: float
    others_moved: float
    gradient_path: str

    @property
    def passed(self) -> bool:
        return (
            self.per_example <= 1 + REMOVAL_TOLERANCE
            and self.microbatched <= 2 * (1 + REMOVAL_TOLERANCE)
            and self.others_moved <= REMOVAL_TOLERANCE
        )


def removal_test(model: keras.Model, *, seed: int = 0) -> RemovalResult:
    """Remove each of REMOVAL_POSITIONS from a random batch and measure how far the clipped
    sum moves, with dptune's per-example machinery on the path the trainer takes.

    The batch has REMOVAL_EXAMPLES random examples of the model's input shape (integer ids
    below the smallest vocabulary when the model has an Embedding; otherwise the last
    removed row is an outlier) and REMOVAL_PADDING_ROWS padding rows (mask 0) holding one more example, as the
    sampler pads with a fixed training example. A removed example's row becomes such a
    padding row, so every other row keeps its position and its training-mode randomness
    (dropout masks: the model's non-trainable state, seed generators included, is restored
    before each pass and at the end). Two clip norms are tried: the median per-example
    gradient norm, and a tenth of the smallest (every example clipped, the usual DP-SGD
    regime). The model needs one input and an output of class logits (batch, classes).
    """
    layerwise = supports_layerwise(model)
    rng = np.random.default_rng(seed)
    rows = REMOVAL_EXAMPLES + REMOVAL_PADDING_ROWS
    x = random_inputs(model, rows + 1, rng)
    padding = x[-1]
    x = x[:rows]
    x[REMOVAL_EXAMPLES:] = padding
    if not _vocabularies(model) and np.issubdtype(x.dtype, np.floating):
        x[REMOVAL_POSITIONS[-1]] *= REMOVAL_OUTLIER_SCALE
    labels = tf.constant(rng.integers(0, model.outputs[0].shape[-1], rows), tf.int32)
    mask = np.r_[np.ones(REMOVAL_EXAMPLES), np.zeros(REMOVAL_PADDING_ROWS)].astype(np.float32)
    microbatch = tf.constant(np.arange(rows) % REMOVAL_MICROBATCHES, tf.int32)
    removed = tf.one_hot(REMOVAL_POSITIONS, rows)  # [positions, rows]
    state = [variable.numpy() for variable in model.non_trainable_variables]

    def restore_state():
        for variable, value in zip(model.non_trainable_variables, state):
            variable.assign(value)

    @tf.function
    def clipped_sums(inputs, row_mask, clip_norms):
        """For each clip norm k: the per-example clipped sum [k, D], the microbatched one
        [k, D] and the clipped gradients of the REMOVAL_POSITIONS rows [k, positions, D]
        (D: all trainable parameters, flattened); and the squared norms [rows]."""
        grads = chunk_gradients(model, inputs, labels, row_mask, layerwise)
        squared_norms = grads.squared_norms()
        microbatch_norms = grads.microbatch_squared_norms(microbatch, REMOVAL_MICROBATCHES)  # as training does
        counts = tf.math.unsorted_segment_sum(row_mask, microbatch, REMOVAL_MICROBATCHES)
        per_example, microbatched, own = [], [], []
        for k in range(2):
            weights = clip_weights(squared_norms, clip_norms[k], row_mask)
            per_example.append(_flat(grads.weighted_sum(weights)))
            own.append(tf.stack([_flat(grads.weighted_sum(weights * one)) for one in tf.unstack(removed)]))
            batch_weights = microbatch_clip_weights(microbatch_norms, counts, clip_norms[k])
            microbatched.append(_flat(grads.weighted_sum(tf.gather(batch_weights, microbatch) * row_mask)))
        return tf.stack(per_example), tf.stack(microbatched), tf.stack(own), squared_norms

    try:
        restore_state()
        norms = np.sqrt(np.maximum(clipped_sums(x, mask, tf.ones(2))[3].numpy()[:REMOVAL_EXAMPLES], 0.0))
        positive = norms[norms > 0]
        median = float(np.median(positive)) if positive.size else 1.0
        clip_norms = np.array([median, positive.min() / 10 if positive.size else 0.1], np.float32)
        restore_state()
        base_sum, base_microbatched, own, _ = (t.numpy() for t in clipped_sums(x, mask, tf.constant(clip_norms)))
        worst = np.zeros(3)  # per-example move, microbatched move, others' move
        for index, position in enumerate(REMOVAL_POSITIONS):
            neighbour, neighbour_mask = x.copy(), mask.copy()
            neighbour[position], neighbour_mask[position] = padding, 0.0
            restore_state()
            other_sum, other_microbatched, _, _ = (
                t.numpy() for t in clipped_sums(neighbour, neighbour_mask, tf.constant(clip_norms))
            )
            moves = [base_sum - other_sum, base_microbatched - other_microbatched, base_sum - other_sum - own[:, index]]
            worst = np.maximum(worst, [np.max(np.linalg.norm(move, axis=1) / clip_norms) for move in moves])
    finally:
        restore_state()
    return RemovalResult(*(float(value) for value in worst), "layerwise" if layerwise else "generic")


def removal_problems(model: keras.Model) -> list[str]:
    """[] when `model` passes the removal test, else one sentence with the measured change and
    the layers found to mix examples."""
    if len(model.inputs) != 1:
        return [f"it has {len(model.inputs)} inputs; dptune feeds each example as one array: give it one Input"]
    result = removal_test(model)
    if result.passed:
        return []
    layers = mixing_layers(model, random_inputs(model, REMOVAL_EXAMPLES, np.random.default_rng(0)))
    where = (
        "in " + ", ".join(f"layer {layer.name!r} ({type(layer).__name__})" for layer in layers)
        if layers else "somewhere dptune could not locate (a layer that mixes examples only while training?)"
    )
    return [
        f"it mixes examples across the batch {where}: removing one example from a random batch moved the clipped "
        f"sum by {result.per_example:.2f}·C (at most 1·C is allowed; {result.microbatched:.2f}·C with "
        f"{REMOVAL_MICROBATCHES} microbatches, at most 2·C) and the other examples' clipped gradients by "
        f"{result.others_moved:.2g}·C (they must not move), so C does not bound one example's influence; build it "
        "from layers that treat each example on its own"
    ]


def random_inputs(model: keras.Model, rows: int, rng: np.random.Generator) -> np.ndarray:
    """`rows` random examples shaped like the model's (single) input: integer ids below the
    smallest Embedding vocabulary when the model has an Embedding, else standard normal."""
    spec = model.inputs[0]
    shape = (rows, *(dimension or 1 for dimension in spec.shape[1:]))
    vocabularies = _vocabularies(model)
    values = rng.integers(0, min(vocabularies), shape) if vocabularies else rng.normal(size=shape)
    return values.astype(spec.dtype)


def _vocabularies(model: keras.Model) -> list[int]:
    return [
        layer.input_dim for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.Embedding)
    ]


def _flat(tensors: list[tf.Tensor]) -> tf.Tensor:
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)


# --------------------------------------------------------------------------- locating a mixing layer


def mixing_layers(model: keras.Model, x: np.ndarray, position: int = 0) -> list[keras.layers.Layer]:
    """The layers (innermost, in call order) whose output for some example changes when only
    another example of the batch changes, in inference mode.

    Each layer call of the forward pass on `x` is repeated with the row `position` of every
    batch-shaped input (and of its Keras mask) replaced by the next row; a layer mixes when
    any other row of its output moves. A nested model that mixes is searched in turn and
    named itself only when none of its layers is found.
    """
    found: list[keras.layers.Layer] = []
    _trace(model, tf.constant(x), position, found)
    return list(dict.fromkeys(found))


def _trace(model: keras.Model, inputs, position: int, found: list) -> None:
    def operation_fn(layer):
        def call(*args, **kwargs):
            outputs = layer(*args, **kwargs)
            batch = _batch_size(args)
            if batch is None or batch < 2:
                return outputs
            changed = layer(*_replace_row(args, position, batch), **_replace_row(kwargs, position, batch))
            if _other_rows_moved(outputs, changed, position, batch):
                before = len(found)
                if type(layer).__name__ in CONTAINERS:
                    _trace(layer, args[0], position, found)
                if len(found) == before:
                    found.append(layer)
            return outputs

        return call

    run_graph(model, inputs, operation_fn)


def _batch_size(structure) -> int | None:
    tensors = [t for t in tf.nest.flatten(structure) if isinstance(t, tf.Tensor) and t.shape.rank]
    return int(tensors[0].shape[0]) if tensors else None


def _replace_row(structure, position: int, batch: int):
    """The structure with row `position` of each batch-shaped tensor replaced by the next row."""
    source = (position + 1) % batch

    def replace(value):
        if not (isinstance(value, tf.Tensor) and value.shape.rank and value.shape[0] == batch):
            return value
        replaced = tf.tensor_scatter_nd_update(value, [[position]], value[source : source + 1])
        mask = get_keras_mask(value)
        if mask is not None:
            set_keras_mask(replaced, replace(mask))
        return replaced

    return tf.nest.map_structure(replace, structure)


def _other_rows_moved(outputs, changed, position: int, batch: int) -> bool:
    keep = [row for row in range(batch) if row != position]
    for before, after in zip(tf.nest.flatten(outputs), tf.nest.flatten(changed)):
        if not (isinstance(before, tf.Tensor) and before.shape.rank and before.shape[0] == batch):
            continue
        before = tf.gather(tf.cast(before, tf.float32), keep).numpy()
        after = tf.gather(tf.cast(after, tf.float32), keep).numpy()
        if np.max(np.abs(before - after), initial=0.0) > _MIXING_TOLERANCE * (1 + np.max(np.abs(before), initial=0.0)):
            return True
    return False
