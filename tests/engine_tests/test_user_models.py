"""Suggested models, and a user's .keras file: loaded safely, refused with the reason when not DP-trainable."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dptune.data import builtin_dataset  # noqa: E402
from dptune.engine import user_models  # noqa: E402
from dptune.engine.user_models import (  # noqa: E402
    check_trainable_privately,
    load_user_model,
    store_user_model,
    suggest_model_spec,
    suggestion_reason,
)
from dptune.errors import ModelError  # noqa: E402
from dptune.spec.config import ModelSpec  # noqa: E402

L = keras.layers


def saved(tmp_path, model, name="model.keras"):
    path = tmp_path / name
    model.save(path)
    return path


def small_cnn(*middle):
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3), *middle, L.Flatten(), L.Dense(10)])


# ------------------------------------------------------------------ suggestions


def test_suggestions_follow_the_data():
    digits = builtin_dataset("digits")
    assert suggest_model_spec(digits) == ModelSpec(kind="mlp", hidden_units=(64,))
    assert "too small" in suggestion_reason(digits)
    mnist_like = builtin_dataset("synthetic", n_examples=60, image_shape=(28, 28, 1))
    assert suggest_model_spec(mnist_like) == ModelSpec(kind="seed_cnn")
    assert suggest_model_spec(builtin_dataset("breast_cancer")) == ModelSpec(kind="logreg")
    big_table = builtin_dataset("synthetic", n_examples=3000)
    assert suggest_model_spec(big_table) == ModelSpec(kind="mlp", hidden_units=(64,))


# ------------------------------------------------------------------ accepted


def test_valid_model_loads_uncompiled_with_its_weights(tmp_path):
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu")(inputs)
    x = L.GroupNormalization(4)(x)
    x = L.Dropout(0.1)(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.LayerNormalization()(x)
    model = keras.Model(inputs, L.Dense(10)(x))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    path = saved(tmp_path, model)
    loaded = load_user_model(path)
    assert isinstance(loaded, keras.Model) and not loaded.compiled
    x_test = np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x_test, verbose=0), model.predict(x_test, verbose=0), atol=1e-5)
    from_bytes = load_user_model(("upload.keras", path.read_bytes()))
    assert isinstance(from_bytes, keras.Model)


def test_sequential_without_input_is_accepted(tmp_path):
    with pytest.warns(UserWarning):
        path = saved(tmp_path, keras.Sequential([L.Dense(16, activation="relu"), L.Dense(3)]))
    assert isinstance(load_user_model(path), keras.Model)
    built = load_user_model(path, (64,))  # built for the data first, then checked (the removal test included)
    assert built.built and tuple(built.inputs[0].shape) == (None, 64)


def test_a_model_that_cannot_take_the_data_shape_is_explained(tmp_path):
    with pytest.warns(UserWarning):
        path = saved(tmp_path, keras.Sequential([L.Conv2D(4, 3), L.Flatten(), L.Dense(3)]), "conv.keras")
    with pytest.raises(ModelError, match="'conv.keras' cannot take inputs of shape \\(5,\\)"):
        load_user_model(path, (5,))


# ------------------------------------------------------------------ refused


def test_batch_normalization_is_refused_with_the_alternative(tmp_path):
    with pytest.raises(ModelError, match="'bn.keras' cannot be trained privately.*BatchNormalization.*"
                                         "Use GroupNormalization or LayerNormalization"):  # fmt: skip
        load_user_model(saved(tmp_path, small_cnn(L.BatchNormalization()), "bn.keras"))
    with pytest.raises(ModelError, match="BatchNormalization"):
        check_trainable_privately(small_cnn(L.BatchNormalization()))


def test_batch_normalization_inside_a_nested_model_is_refused(tmp_path):
    block = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3), L.BatchNormalization()], name="block")
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, L.Dense(10)(L.Flatten()(block(inputs))))
    with pytest.raises(ModelError, match="BatchNormalization"):
        load_user_model(saved(tmp_path, model))
    with pytest.raises(ModelError, match="BatchNormalization"):
        check_trainable_privately(model)


def test_lambda_layers_are_refused(tmp_path):
    python_lambda = keras.Sequential([keras.Input((4,)), L.Lambda(lambda z: z * 2), L.Dense(3)])
    with pytest.raises(ModelError, match="a Lambda layer, which runs arbitrary Python code.*Replace it with built-in"):
        load_user_model(saved(tmp_path, python_lambda, "lambda.keras"))
    # a Lambda of a Keras function loads under safe_mode, and is still refused
    keras_function = keras.Sequential([keras.Input((4,)), L.Lambda(keras.ops.relu), L.Dense(3)])
    with pytest.raises(ModelError, match="Lambda"):
        load_user_model(saved(tmp_path, keras_function, "lambda2.keras"))
    with pytest.raises(ModelError, match="Lambda"):
        check_trainable_privately(python_lambda)


@keras.saving.register_keras_serializable(package="dptune_test")
class Doubler(keras.layers.Layer):
    def call(self, inputs):
        return inputs * 2


def test_custom_objects_are_refused_even_when_registered(tmp_path):
    model = keras.Sequential([keras.Input((4,)), Doubler(), L.Dense(3)])
    with pytest.raises(ModelError, match="Doubler.*custom object \\('dptune_test>Doubler'.*built-in Keras layers"):
        load_user_model(saved(tmp_path, model))
    with pytest.raises(ModelError, match="custom layer"):
        check_trainable_privately(model)


def test_outputs_must_be_class_logits(tmp_path):
    softmax = keras.Sequential([keras.Input((4,)), L.Dense(3, activation="softmax")])
    with pytest.raises(ModelError, match="applies softmax, so the model outputs probabilities; dptune needs logits"):
        load_user_model(saved(tmp_path, softmax, "a.keras"))
    softmax_layer = keras.Sequential([keras.Input((4,)), L.Dense(3), L.Softmax()])
    with pytest.raises(ModelError, match="applies softmax"):
        load_user_model(saved(tmp_path, softmax_layer, "b.keras"))
    with pytest.raises(ModelError, match="single unit"):
        load_user_model(saved(tmp_path, keras.Sequential([keras.Input((4,)), L.Dense(1, activation="sigmoid")]), "c.keras"))
    inputs = keras.Input((4,))
    with pytest.raises(ModelError, match="it has 2 outputs"):
        load_user_model(saved(tmp_path, keras.Model(inputs, [L.Dense(3)(inputs), L.Dense(2)(inputs)]), "d.keras"))
    with pytest.raises(ModelError, match="one vector of class logits per example"):
        load_user_model(saved(tmp_path, keras.Sequential([keras.Input((5, 4)), L.Dense(3)]), "e.keras"))


def test_stateful_recurrent_layers_are_refused(tmp_path):
    model = keras.Sequential([keras.Input((5, 4), batch_size=2), L.LSTM(4, stateful=True), L.Dense(3)])
    with pytest.raises(ModelError, match="stateful"):
        load_user_model(saved(tmp_path, model))


def test_files_that_are_not_keras_models(tmp_path):
    with pytest.raises(ModelError, match="legacy HDF5 .* save it again with model.save\\('model.keras'\\)"):
        load_user_model(("old.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 100))
    with pytest.raises(ModelError, match="is not a Keras 3 `.keras` file"):
        load_user_model(("model.keras", b"just some text"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights.bin", b"123")
    with pytest.raises(ModelError, match="has no config.json"):
        load_user_model(("model.keras", buffer.getvalue()))
    with pytest.raises(ModelError, match="is empty"):
        load_user_model(("model.keras", b""))
    with pytest.raises(ModelError, match="does not exist"):
        load_user_model(tmp_path / "missing.keras")


def test_unknown_class_in_config_becomes_a_model_error(tmp_path):
    path = saved(tmp_path, keras.Sequential([keras.Input((4,)), L.Dense(3)]))
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["class_name"] = "NoSuchLayer"
    members["config.json"] = json.dumps(config).encode()
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ModelError, match="Keras could not load 'x.keras' safely"):
        load_user_model(("x.keras", tampered.getvalue()))


def test_over_size_model_file(tmp_path, monkeypatch):
    path = saved(tmp_path, keras.Sequential([keras.Input((4,)), L.Dense(3)]))
    monkeypatch.setattr(user_models, "_MODEL_LIMITS", user_models.Limits(max_upload_bytes=1000))
    with pytest.raises(ModelError, match="over the upload limit"):
        load_user_model(path)


# ------------------------------------------------------------------ storing an upload


def test_store_user_model_is_content_addressed_and_safe(tmp_path):
    workspace = tmp_path / "ws"
    good = saved(tmp_path, keras.Sequential([keras.Input((4,)), L.Dense(3)]))
    stored = store_user_model(("mine.keras", good.read_bytes()), workspace)
    assert stored.parent == workspace / "models" and stored.suffix == ".keras"
    assert stored.read_bytes() == good.read_bytes()
    assert store_user_model(good, workspace) == stored
    spec = ModelSpec(kind="keras_file", path=str(stored))
    assert isinstance(load_user_model(spec.path), keras.Model)
    before = sorted(p.name for p in workspace.rglob("*"))
    with pytest.raises(ModelError, match="BatchNormalization"):
        store_user_model(saved(tmp_path, small_cnn(L.BatchNormalization()), "bn.keras"), workspace)
    assert sorted(p.name for p in workspace.rglob("*")) == before
