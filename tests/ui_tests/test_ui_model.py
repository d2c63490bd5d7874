"""Model page (AppTest): suggested model, a chosen architecture, a .keras upload, errors."""

import json

import pytest
from ui_testing import messages, open_page


def metric(at, label):
    return next(m.value for m in at.main.metric if m.label == label)


def test_suggested_model_with_parameter_count(workspace):
    at = open_page(workspace, "model")
    assert not at.exception and not at.error, messages(at)
    assert at.radio(key="model-source").value == "suggested"
    assert metric(at, "trainable parameters") == "4,810"  # 64*64+64 + 64*10+10 for the digits MLP
    assert any("8x8 images" in info for info in messages(at)["info"])


def test_choosing_an_architecture_changes_the_model_spec(workspace):
    at = open_page(workspace, "model")
    at.radio(key="model-source").set_value("custom").run()
    at.selectbox(key="model-kind").set_value("mlp").run()
    at.text_input(key="model-hidden").set_value("32, 16").run()
    assert not at.error, messages(at)
    assert metric(at, "trainable parameters") == f"{64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10:,}"
    spec = json.loads((workspace / "ui_state.json").read_text())["model"]
    assert spec["source"] == "custom" and spec["spec"]["hidden_units"] == [32, 16]
    at.selectbox(key="model-kind").set_value("logreg").run()
    assert metric(at, "trainable parameters") == "650"


def test_a_cnn_shows_its_real_layers_and_no_unused_hidden_size(workspace):
    """The seed CNN's page showed a disabled 64, hidden_units [128] in the spec and Dense(32) in the model."""
    at = open_page(workspace, "model")
    at.radio(key="model-source").set_value("custom").run()
    at.selectbox(key="model-kind").set_value("seed_cnn").run()
    assert not at.text_input  # no hidden-size input for a fixed architecture
    assert any("Dense(32)" in c.value for c in at.caption)
    spec = json.loads((workspace / "ui_state.json").read_text())["model"]["spec"]
    assert spec["kind"] == "seed_cnn" and spec["hidden_units"] == []


@pytest.mark.parametrize("text", ["32, x", "0", ""])
def test_bad_hidden_layer_sizes_are_explained(workspace, text):
    at = open_page(workspace, "model")
    at.radio(key="model-source").set_value("custom").run()
    at.selectbox(key="model-kind").set_value("mlp").run()
    at.text_input(key="model-hidden").set_value(text).run()
    assert not at.exception
    assert any("hidden layer size" in e for e in messages(at)["error"]), messages(at)


def test_a_cnn_on_8x8_digits_is_refused_with_what_to_use(workspace):
    at = open_page(workspace, "model")
    at.radio(key="model-source").set_value("custom").run()
    at.selectbox(key="model-kind").set_value("seed_cnn").run()
    assert not at.exception
    assert any("at least 10x10" in e and "MLP" in e for e in messages(at)["error"]), messages(at)


def keras_bytes(batch_norm=False):
    import tempfile
    from pathlib import Path

    import keras

    layers = [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16, activation="relu")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    layers.append(keras.layers.Dense(10))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "net.keras"
        keras.Sequential(layers).save(path)
        return path.read_bytes()


def test_uploading_a_keras_model(workspace):
    at = open_page(workspace, "model")
    at.radio(key="model-source").set_value("uploaded").run()
    at.file_uploader(key="model-file").set_value(("net.keras", keras_bytes(), "application/octet-stream")).run()
    assert not at.exception and not at.error, messages(at)
    assert metric(at, "trainable parameters") == f"{64 * 16 + 16 + 16 * 10 + 10:,}"
    state = json.loads((workspace / "ui_state.json").read_text())["model"]
    assert state["spec"]["kind"] == "keras_file"
    assert state["spec"]["path"].startswith(str(workspace))  # stored in the workspace


@pytest.mark.parametrize("case", ["batch norm", "not a model"])
def test_bad_keras_uploads_are_explained(workspace, case):
    content = keras_bytes(batch_norm=True) if case == "batch norm" else b"not a zip at all"
    at = open_page(workspace, "model")
    at.radio(key="model-source").set_value("uploaded").run()
    at.file_uploader(key="model-file").set_value(("net.keras", content, "application/octet-stream")).run()
    assert not at.exception
    errors = messages(at)["error"]
    assert errors and "Traceback" not in " ".join(errors)
    if case == "batch norm":
        assert any("BatchNormalization" in e for e in errors), errors
