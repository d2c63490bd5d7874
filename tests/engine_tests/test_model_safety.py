"""Only per-example-safe models train: the allow-list of layer types, and the removal test
run on the real engine when a user's model is loaded."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from dptune.engine import model_safety
from dptune.engine.model_safety import (
    einsum_keeps_batch,
    layer_problem,
    mixing_layers,
    random_inputs,
    removal_problems,
    removal_test,
)
from dptune.engine.models import build_model
from dptune.engine.user_models import check_trainable_privately, load_user_model
from dptune.errors import ModelError
from dptune.spec.config import ModelSpec

L = keras.layers


def dense_around(*middle, input_shape=(6,)):
    """Input -> Dense(8) -> middle -> Dense(3) logits (a Flatten first when the middle keeps sequences)."""
    keras.utils.set_random_seed(0)
    tail = [L.Flatten()] if len(input_shape) > 1 else []
    return keras.Sequential([keras.Input(input_shape), L.Dense(8), *middle, *tail, L.Dense(3)])


def saved(tmp_path, model, name="model.keras"):
    path = tmp_path / name
    model.save(path)
    return path


class BatchCentering(keras.layers.Layer):
    """A deliberately batch-mixing layer: subtracts the batch mean (what BatchNormalization does)."""

    def call(self, inputs):
        return inputs - keras.ops.mean(inputs, axis=0, keepdims=True)


# ------------------------------------------------------------------ the allow-list


@pytest.mark.parametrize("layer", [L.Softmax(axis=0), L.UnitNormalization(axis=0)], ids=lambda layer: type(layer).__name__)
def test_layers_over_the_batch_axis_are_refused_naming_the_layer(tmp_path, layer):
    model = dense_around(layer)
    pattern = f"layer '{layer.name}' \\({type(layer).__name__}\\) has axis=0, which includes axis 0, the batch axis"
    with pytest.raises(ModelError, match=pattern):
        load_user_model(saved(tmp_path, model))
    # the engine agrees: one example moves the other examples' clipped gradients, and the sum by more than C
    result = removal_test(model)
    assert result.gradient_path == "layerwise"
    assert not result.passed and result.per_example > 1.01 and result.others_moved > 0.05


def test_every_problem_is_reported_at_once():
    inputs = keras.Input((4, 6))
    x = L.Dense(8)(inputs)
    x = L.Softmax(axis=-3)(x)  # resolves to axis 0 on a rank-3 input
    x = L.UnitNormalization(axis=[0, 2])(x)
    x = L.MultiHeadAttention(num_heads=2, key_dim=2, attention_axes=(0,))(x, x)
    x = L.Concatenate(axis=0)([x, x])
    x = L.MixUp()(L.Flatten()(x))
    model = keras.Model(inputs, L.Dense(3)(x))
    with pytest.raises(ModelError) as caught:
        check_trainable_privately(model, name="many.keras")
    message = str(caught.value)
    assert message.startswith("the model 'many.keras' cannot be trained privately with DP-SGD")
    for fragment in ("(Softmax) has axis=-3", "(UnitNormalization) has axis=[0, 2]",
                     "(MultiHeadAttention) has attention_axes=[0]", "(Concatenate) has axis=0",
                     "(MixUp) is not on dptune's list of layers known to compute each example's output"):
        assert fragment in message, message


def test_feature_axes_and_listed_layers_pass():
    rank_three = {3}
    for layer in (L.Softmax(axis=-1), L.Softmax(axis=(1, 2)), L.UnitNormalization(axis=[1, 2]),
                  L.LayerNormalization(axis=-1), L.GroupNormalization(2), L.Concatenate(axis=-2),
                  L.MultiHeadAttention(2, 2), L.EinsumDense("abc,cd->abd", output_shape=(4, 3)), L.Dense(3)):
        assert layer_problem(layer, rank_three) is None, layer
    assert "not on dptune's list" in layer_problem(L.RandomFlip(), rank_three)


@pytest.mark.parametrize("equation, keeps", [
    ("ab,bc->ac", True), ("abc,cd->abd", True), ("...b,bc->...c", True), ("abc,cde->abde", True),
    ("ab,bc->ca", False), ("ab,ac->bc", False), ("ab,bc->c", False), ("...b,bc->c...", False), ("aab,bc->ac", False),
])
def test_einsum_dense_must_keep_the_batch_axis_its_own(equation, keeps):
    assert einsum_keeps_batch(equation) is keeps


# ------------------------------------------------------------------ the removal test


def test_a_mix_of_allowed_layers_is_caught_by_the_removal_test(tmp_path):
    """TimeDistributed applies its layer to [batch, features] slices, where axis -2 is the
    batch axis: no static check sees it, the removal test does and names the layer."""
    model = dense_around(L.TimeDistributed(L.Softmax(axis=-2)), input_shape=(4, 6))
    result = removal_test(model)
    assert not result.passed and result.per_example > 1.01
    with pytest.raises(ModelError, match="it mixes examples across the batch in layer 'time_distributed' "
                                         "\\(TimeDistributed\\): removing one example from a random batch moved "
                                         "the clipped sum by [0-9.]+·C \\(at most 1·C is allowed"):
        load_user_model(saved(tmp_path, model))


def test_a_model_saved_without_input_is_tested_once_built_for_the_data(tmp_path):
    keras.utils.set_random_seed(0)
    with pytest.warns(UserWarning):
        path = saved(tmp_path, keras.Sequential([L.Dense(8), L.TimeDistributed(L.Softmax(axis=-2)), L.Flatten(),
                                                 L.Dense(3)]))
    load_user_model(path)  # no input shape yet: only the static checks can run
    with pytest.raises(ModelError, match="mixes examples across the batch"):
        build_model(ModelSpec(kind="keras_file", path=str(path)), (4, 6), 3)


def test_the_removal_test_names_a_mixing_layer_even_inside_a_nested_model():
    keras.utils.set_random_seed(0)
    block = keras.Sequential([keras.Input((8,)), L.Activation("tanh"), BatchCentering(name="centering")],
                             name="block")
    inputs = keras.Input((6,))
    model = keras.Model(inputs, L.Dense(3)(block(L.Dense(8)(inputs))))
    result = removal_test(model)
    assert not result.passed and result.gradient_path == "layerwise"
    assert [layer.name for layer in mixing_layers(model, random_inputs(model, 8, np.random.default_rng(0)))] == [
        "centering"]
    (problem,) = removal_problems(model)
    assert "in layer 'centering' (BatchCentering)" in problem


def test_the_generic_path_runs_each_example_alone():
    """With a trainable nested model the generic path computes every example's gradient on
    a batch of one, so even a batch-mixing layer cannot move another example's gradient."""
    keras.utils.set_random_seed(0)
    block = keras.Sequential([keras.Input((8,)), L.Dense(8), BatchCentering()], name="block")
    inputs = keras.Input((6,))
    result = removal_test(keras.Model(inputs, L.Dense(3)(block(L.Dense(8)(inputs)))))
    assert result.gradient_path == "generic" and result.passed, result


def test_a_mixing_layer_on_the_layerwise_path_is_caught():
    model = dense_around(BatchCentering(name="centering"))
    result = removal_test(model)
    assert result.gradient_path == "layerwise" and not result.passed
    assert result.per_example > 1.01 and result.others_moved > 0.05


@pytest.mark.parametrize("kind, input_shape", [
    ("logreg", (8, 8, 1)), ("mlp", (8, 8, 1)), ("seed_cnn", (16, 16, 1)), ("tanh_cnn", (16, 16, 1)),
])
def test_the_built_in_models_pass(kind, input_shape):
    result = removal_test(build_model(ModelSpec(kind=kind), input_shape, 10))
    assert result.passed, result
    assert result.per_example == pytest.approx(1.0, abs=1e-3)  # with every example clipped, one moves it by C
    assert result.microbatched <= 2.002 and result.others_moved < 1e-4


def test_user_models_that_act_per_example_pass(tmp_path):
    keras.utils.set_random_seed(0)
    cnn = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Dropout(0.3),
                            L.MaxPooling2D(), L.Flatten(), L.Dense(16, activation="relu"), L.Dense(3)])
    loaded = load_user_model(saved(tmp_path, cnn, "cnn.keras"))
    result = removal_test(loaded)
    assert result.passed and result.gradient_path == "layerwise", result
    text = keras.Sequential([keras.Input((5,)), L.Embedding(9, 4, mask_zero=True), L.GlobalAveragePooling1D(),
                             L.LayerNormalization(), L.Dense(3)])
    assert random_inputs(text, 4, np.random.default_rng(0)).max() < 9
    result = removal_test(load_user_model(saved(tmp_path, text, "text.keras")))
    assert result.passed and result.gradient_path == "generic", result


def test_the_removal_test_leaves_the_model_as_it_was():
    model = dense_around(L.Dropout(0.5))
    before = [v.numpy().copy() for v in model.variables]  # weights and the dropout seed state
    assert removal_test(model).passed  # same dropout masks for the rows that stay
    for value, variable in zip(before, model.variables):
        np.testing.assert_array_equal(value, variable.numpy())


def test_the_removal_test_fails_for_an_engine_without_clipping(monkeypatch):
    model = build_model(ModelSpec(kind="mlp", hidden_units=(16,)), (6,), 3)
    monkeypatch.setattr(model_safety, "clip_weights", lambda squared_norms, clip_norm, mask: mask)
    monkeypatch.setattr(model_safety, "microbatch_clip_weights",
                        lambda squared_sum_norms, counts, clip_norm: tf.math.divide_no_nan(1.0, counts))
    result = removal_test(model)
    assert not result.passed and result.per_example > 5 and result.microbatched > 5
