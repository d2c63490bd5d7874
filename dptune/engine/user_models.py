"""The model side of an upload: a suggested ModelSpec for a dataset, and a user's `.keras` file.

A user's architecture is loaded with `safe_mode=True` and no custom objects, and refused,
with the reason and what to use instead, when DP-SGD cannot train it privately:
- layers whose output for one example depends on other examples of the batch
  (BatchNormalization: its batch statistics break per-example clipping and leak
  information through the moving averages), or that keep state across batches (stateful RNNs);
- Lambda layers and anything that is not a built-in Keras object (arbitrary code);
- any layer type not on dptune.engine.model_safety's allow-list of layers known to act on each
  example separately, or configured to reach across the batch axis (Softmax(axis=0), ...);
- a model that fails the removal test on the real engine: removing one example from a
  random batch must move the clipped gradient sum by at most C (2C microbatched) and leave
  the other examples' clipped gradients where they were (dptune.engine.model_safety);
- a model whose output is not one vector of class logits per example.
Every problem found is reported in one message. Keras (and TensorFlow, with the model
checks) is imported only when a model file is loaded, so the suggestion helpers stay light.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dptune.data.dataset import DEFAULT_WORKSPACE, Dataset
from dptune.data.sources import Limits, MiB, RawFile, Source, open_zip, read_member, read_source
from dptune.engine.keras_limits import check_config_depth
from dptune.errors import DataError, ModelError
from dptune.spec.config import ModelSpec
from dptune.workspace import Workspace, write_once

if TYPE_CHECKING:
    import keras

MAX_MODEL_BYTES = 100 * MiB
"""Largest `.keras` file accepted."""
MAX_MODEL_UNCOMPRESSED_BYTES = 512 * MiB
"""Largest total uncompressed size of a `.keras` archive."""
MAX_MODEL_FILES = 1_000
"""Most members a `.keras` archive may hold."""
SEED_CNN_MIN_SIDE = 16
"""Smallest image height/width for which the seed CNN is suggested (its strides need room)."""
SMALL_TABULAR = 1_000
"""Tabular datasets with fewer training examples get logistic regression (fewer parameters, less noise)."""

CROSS_EXAMPLE_LAYERS = {
    "BatchNormalization": "normalises with statistics of the whole batch, so one example's output (and "
    "gradient) depends on the others and per-example clipping no longer bounds its influence; its moving "
    "averages also store unprotected statistics of the data. Use GroupNormalization or LayerNormalization",
    "SyncBatchNormalization": "normalises with statistics of the whole batch (across devices). Use "
    "GroupNormalization or LayerNormalization",
}
CODE_LAYERS = {
    "Lambda": "runs arbitrary Python code and cannot be loaded safely. Replace it with built-in layers "
    "(e.g. Rescaling, Reshape, Activation) or keras.ops-based layers from keras.layers",
    "TFSMLayer": "wraps a TensorFlow SavedModel whose code cannot be inspected. Rebuild it from Keras layers",
    "TorchModuleWrapper": "wraps foreign (PyTorch) code. Rebuild it from Keras layers",
    "JaxLayer": "wraps foreign (JAX) code. Rebuild it from Keras layers",
    "FlaxLayer": "wraps foreign (Flax) code. Rebuild it from Keras layers",
}
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")

_MODEL_LIMITS = Limits(
    max_upload_bytes=MAX_MODEL_BYTES,
    max_zip_uncompressed_bytes=MAX_MODEL_UNCOMPRESSED_BYTES,
    max_zip_files=MAX_MODEL_FILES,
)


# --------------------------------------------------------------------------- suggestion


def suggest_model_spec(dataset: Dataset) -> ModelSpec:
    """A sensible first model for the data (what a DP-SGD practitioner would start with).

    Images at least SEED_CNN_MIN_SIDE pixels per side -> "seed_cnn" (TF Privacy's MNIST CNN;
    "tanh_cnn" is the usual stronger DP baseline). Smaller images (digits' 8x8) are too
    small for its strides -> an MLP with one hidden layer of 64. Tables: fewer than
    SMALL_TABULAR training examples -> "logreg" (fewest parameters, so the least noise per
    parameter), otherwise an MLP with one hidden layer of 64.
    """
    return _suggest(dataset)[0]


def suggestion_reason(dataset: Dataset) -> str:
    """One sentence saying why `suggest_model_spec` chose its model."""
    return _suggest(dataset)[1]


def _suggest(dataset: Dataset) -> tuple[ModelSpec, str]:
    shape = dataset.input_shape
    if dataset.is_image:
        height, width = shape[0], shape[1]
        if min(height, width) >= SEED_CNN_MIN_SIDE:
            return ModelSpec(kind="seed_cnn"), (
                f"{height}x{width} images: the CNN of TF Privacy's tutorial (try tanh_cnn too, the usual DP baseline)"
            )
        return ModelSpec(kind="mlp", hidden_units=(64,)), (
            f"{height}x{width} images are too small for the CNN's strides: a one-hidden-layer MLP"
        )
    if dataset.n_train < SMALL_TABULAR:
        return ModelSpec(kind="logreg"), (
            f"a table with {dataset.n_train:,} training examples: logistic regression (fewest parameters, least noise)"
        )
    return ModelSpec(kind="mlp", hidden_units=(64,)), (
        f"a table with {dataset.n_train:,} training examples: a one-hidden-layer MLP"
    )


# --------------------------------------------------------------------------- user file


def load_user_model(source: Source, input_shape: tuple[int, ...] | None = None) -> keras.Model:
    """Load a `.keras` architecture safely and check it can be trained privately.

    source: a path or (file name, bytes). Loaded with safe_mode=True, custom_objects=None
    and compile=False, so the model is returned uncompiled (its weights are those saved).
    input_shape: the shape of one example; a model saved without an Input is built for it
    first, so that the removal test can run (a model without either is checked without it).
    Raises ModelError saying what is wrong and what to use instead.
    """
    raw = _read_model_file(source)
    config = _read_config(raw)
    problems = scan_config(config)
    if problems:
        raise ModelError(_problems_message(raw.name, problems))
    model = _keras_load(raw)
    if not model.built and input_shape is not None:
        try:
            model.build((None, *input_shape))
        except Exception as error:  # Keras raises ValueError/TypeError for shapes a layer cannot take
            detail = " ".join(str(error).split())[:300]
            raise ModelError(
                f"the model {raw.name!r} cannot take inputs of shape {tuple(input_shape)} ({detail})"
            ) from None
    check_trainable_privately(model, name=raw.name)
    return model


def store_user_model(source: Source, workspace: str | os.PathLike = DEFAULT_WORKSPACE,
                     input_shape: tuple[int, ...] | None = None) -> Path:
    """Check a `.keras` upload and save it as `<workspace>/models/<sha256>.keras` (never overwriting).

    input_shape: the data's example shape, so that a model saved without an Input is built
    and removal-tested now rather than when a trial builds it (see `load_user_model`).
    Returns the path to put in `ModelSpec(kind="keras_file", path=...)`; workers on other
    machines need the same file at that path (or the same workspace).
    """
    raw = _read_model_file(source)
    load_user_model((raw.name, raw.content), input_shape)
    target = Workspace.at(workspace).model_path(hashlib.sha256(raw.content).hexdigest())
    try:
        return write_once(target, lambda handle: handle.write(raw.content))
    except OSError as error:
        raise ModelError(f"cannot save the model into {target.parent}: {error.strerror or error}") from None


def _read_model_file(source: Source) -> RawFile:
    try:
        raw = read_source(source, _MODEL_LIMITS, what="model file")
    except DataError as error:
        raise ModelError(str(error)) from None
    head = raw.content[:8]
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        raise ModelError(
            f"{raw.name!r} is a legacy HDF5 (.h5) model; dptune reads Keras 3 `.keras` files: load it in Keras "
            "and save it again with model.save('model.keras')"
        )
    if not head.startswith(b"PK\x03\x04"):
        raise ModelError(
            f"{raw.name!r} is not a Keras 3 `.keras` file (a .keras file is a ZIP archive); save your model "
            "with model.save('model.keras') and upload that file"
        )
    return raw


def _read_config(raw: RawFile) -> dict:
    try:
        archive = open_zip(raw, _MODEL_LIMITS)
        names = archive.namelist()
        if "config.json" not in names:
            raise ModelError(
                f"{raw.name!r} is a ZIP but not a Keras 3 `.keras` file (it has no config.json); save your model "
                "with model.save('model.keras')"
            )
        text = read_member(archive, archive.getinfo("config.json"), raw.name)
    except DataError as error:
        raise ModelError(str(error)) from None
    check_config_depth(text, raw.name)  # json.loads and scan_config recurse once per level
    try:
        config = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ModelError(f"the config.json in {raw.name!r} is not valid JSON ({str(error)[:200]}); "
                         "save the model again") from None
    if not isinstance(config, dict):
        raise ModelError(f"the config.json in {raw.name!r} does not describe a model; save the model again")
    return config


def scan_config(config: object) -> list[str]:
    """Problems found in a `.keras` config before anything is deserialised (each a sentence)."""
    problems: list[str] = []

    def visit(node: object) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        class_name = node.get("class_name")
        if isinstance(class_name, str):
            layer_name = ""
            if isinstance(node.get("config"), dict) and isinstance(node["config"].get("name"), str):
                layer_name = f" {node['config']['name']!r}"
            module = node.get("module")
            if class_name in CROSS_EXAMPLE_LAYERS:
                problems.append(f"layer{layer_name} is {class_name}, which {CROSS_EXAMPLE_LAYERS[class_name]}")
            elif class_name in CODE_LAYERS:
                problems.append(f"layer{layer_name} is a {class_name} layer, which {CODE_LAYERS[class_name]}")
                return  # what it wraps is its own problem, already named
            elif class_name == "__lambda__":
                problems.append("the model contains a Python lambda, which cannot be loaded safely")
            elif (module is not None and not (module == "keras" or str(module).startswith("keras."))) or (
                module is None and not (class_name.startswith("__") and class_name.endswith("__"))
            ):
                registered = node.get("registered_name") or class_name
                origin = f" from the Python module {module!r}" if module else ""
                problems.append(
                    f"{class_name}{layer_name} is a custom object ({registered!r}{origin}); only built-in Keras "
                    "layers are accepted (custom code cannot be loaded safely): rebuild it from built-in layers"
                )
            config_value = node.get("config")
            if isinstance(config_value, dict) and config_value.get("stateful") is True:
                problems.append(
                    f"layer{layer_name} is stateful (it carries state from one batch to the next, across "
                    "examples); set stateful=False"
                )
        for value in node.values():
            visit(value)

    visit(config)
    return list(dict.fromkeys(problems))


def _problems_message(name: str, problems: list[str]) -> str:
    listed = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    return f"the model {name!r} cannot be trained privately with DP-SGD: {listed}."


def _keras_load(raw: RawFile) -> keras.Model:
    import keras

    try:
        from keras.src.saving.serialization_lib import SafeModeScope
    except ImportError:  # pragma: no cover - keras moved it
        SafeModeScope = None
    with tempfile.TemporaryDirectory(prefix="dptune-model-") as folder:
        path = Path(folder) / "model.keras"
        path.write_bytes(raw.content)
        try:
            if SafeModeScope is not None:
                with SafeModeScope(True):  # even if unsafe deserialisation was enabled globally
                    model = keras.saving.load_model(path, custom_objects=None, compile=False, safe_mode=True)
            else:
                model = keras.saving.load_model(path, custom_objects=None, compile=False, safe_mode=True)
        except Exception as error:  # Keras raises TypeError/ValueError/KeyError/OSError for bad files
            detail = " ".join(str(error).split())[:300]
            raise ModelError(
                f"Keras could not load {raw.name!r} safely ({type(error).__name__}: {detail}); use only built-in "
                "Keras layers (no Lambda, no custom classes) and save it with model.save('model.keras')"
            ) from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{raw.name!r} holds a {type(model).__name__}, not a Keras model; save a keras.Model")
    return model


def check_trainable_privately(model: keras.Model, *, name: str | None = None) -> None:
    """ModelError if DP-SGD cannot train `model` privately; the message lists every problem.

    Refused: BatchNormalization (cross-example batch statistics), Lambda and non-Keras
    (custom) layers, layer types not on dptune.engine.model_safety.PER_EXAMPLE_LAYERS or configured
    across the batch axis, stateful recurrent layers, no trainable weights, and an output
    that is not one vector of at least two class logits per example (several outputs, a
    single unit, or a softmax/sigmoid already applied). A built model with none of these
    problems must then pass dptune.engine.model_safety's removal test (an unbuilt one, which has
    no input shape yet, is tested when dptune.engine.models builds it for the data). `name` is
    used in the message (e.g. the file name).
    """
    import keras

    from dptune.engine import model_safety

    if not isinstance(model, keras.Model):
        raise ModelError(f"expected a keras.Model, got {type(model).__name__}")
    problems: list[str] = []
    layers = model._flatten_layers(include_self=False, recursive=True)
    ranks = model_safety.input_ranks(model)
    for layer in layers:
        class_name = type(layer).__name__
        label = f"layer {layer.name!r}"
        if isinstance(layer, keras.layers.BatchNormalization) or class_name in CROSS_EXAMPLE_LAYERS:
            problems.append(f"{label} is {class_name}, which {CROSS_EXAMPLE_LAYERS.get(class_name, CROSS_EXAMPLE_LAYERS['BatchNormalization'])}")
        elif isinstance(layer, keras.layers.Lambda) or class_name in CODE_LAYERS:
            problems.append(f"{label} is a {class_name} layer, which {CODE_LAYERS.get(class_name, CODE_LAYERS['Lambda'])}")
        elif not type(layer).__module__.startswith("keras."):
            problems.append(
                f"{label} is a custom layer ({type(layer).__module__}.{class_name}); only built-in Keras layers are "
                "accepted: rebuild it from built-in layers"
            )
        else:
            problem = model_safety.layer_problem(layer, ranks.get(id(layer), set()))
            if problem:
                problems.append(problem)
        if getattr(layer, "stateful", False) is True:
            problems.append(f"{label} is stateful (state carried across batches and examples); set stateful=False")
    problems += _output_problems(model, layers)
    if not problems and not model.trainable_weights and model.built:
        problems.append("it has no trainable weights")
    if not problems and model.built and _has_inputs(model):
        problems += model_safety.removal_problems(model)
    if problems:
        raise ModelError(_problems_message(name or model.name, problems))


def _has_inputs(model: keras.Model) -> bool:
    try:
        return bool(model.inputs)
    except (AttributeError, ValueError):
        return False  # a subclassed or unbuilt model has no symbolic inputs


def _output_problems(model: keras.Model, layers: list) -> list[str]:
    import keras

    problems = []
    outputs = None
    try:
        outputs = model.outputs
    except (AttributeError, ValueError):
        outputs = None  # an unbuilt Sequential (no Input): the builder gives it the data's shape
    if outputs:
        if len(outputs) != 1:
            return [f"it has {len(outputs)} outputs; it must have one output, the class logits"]
        shape = tuple(outputs[0].shape)
        if len(shape) != 2:
            return [
                f"its output has shape {shape}; it must be one vector of class logits per example, shape "
                "(batch, classes): add Flatten/GlobalAveragePooling and a final Dense(num_classes)"
            ]
        if shape[-1] is not None and shape[-1] < 2:
            problems.append(
                "its output has a single unit; give it one logit per class, e.g. Dense(2) for two classes "
                "(no sigmoid)"
            )
    last = _innermost_output_layer(model)
    if last is not None:
        activation = getattr(last, "activation", None)
        activation_name = getattr(activation, "__name__", str(activation) if activation is not None else "")
        if isinstance(last, keras.layers.Softmax) or activation_name in PROBABILITY_ACTIVATIONS:
            which = "softmax" if isinstance(last, keras.layers.Softmax) else activation_name
            problems.append(
                f"its last layer {last.name!r} applies {which}, so the model outputs probabilities; dptune needs "
                "logits: remove the final activation (Dense(num_classes) with no activation), the loss applies softmax"
            )
    return problems


def _output_layer(model):
    try:
        outputs = model.outputs
        history = outputs[0]._keras_history
        return history.operation if hasattr(history, "operation") else history[0]
    except (AttributeError, ValueError, IndexError, TypeError):
        pass
    layers = getattr(model, "layers", [])
    return layers[-1] if layers else None


def _innermost_output_layer(model):
    import keras

    layer = _output_layer(model)
    for _ in range(100):  # a nested model's own output layer decides
        if not isinstance(layer, keras.Model):
            break
        layer = _output_layer(layer)
    return layer
