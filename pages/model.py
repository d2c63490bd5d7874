"""Model: the suggested network, another built-in one, or an uploaded `.keras` file."""

import streamlit as st
import yaml

from dptune.spec.config import ACTIVATIONS, ModelSpec
from dptune.ui import core, models_view, shell

shell.frame("Model")
st.title("Model")
st.caption(
    "DP-SGD adds noise of the same size to every parameter, so smaller models often do better under a tight "
    "budget. The model is built from this spec in every trial, with fixed initial weights (seed)."
)

KINDS = {
    "logreg": "logistic regression (no hidden layer)",
    "mlp": "MLP (dense hidden layers)",
    "seed_cnn": "TF Privacy tutorial CNN (images ≥ 10×10)",
    "tanh_cnn": "tanh CNN (Papernot et al. 2021; images ≥ 10×10)",
}
SOURCES = {"suggested": "Suggested for this data", "custom": "Choose an architecture", "uploaded": "Upload a .keras file"}

with core.guard("Model"):
    from dptune.engine.user_models import store_user_model, suggest_model_spec, suggestion_reason

    state = core.load_state()
    data = core.loaded_data(state)
    dataset = data.dataset
    suggested = suggest_model_spec(dataset)
    section = state["model"]
    keys = list(SOURCES)
    source = st.radio("Model", keys, index=keys.index(section.get("source", "suggested")),
                      format_func=SOURCES.get, horizontal=True, key="model-source")
    spec = suggested
    if source == "suggested":
        st.info(f"**{suggested.kind}** {list(suggested.hidden_units) or ''} — "
                f"{suggestion_reason(dataset)}", icon=":material/lightbulb:")
        if section.get("source") != "suggested":
            core.update_state("model", source="suggested", spec=None)
    elif source == "custom":
        saved = section.get("spec") or {}
        kinds = list(KINDS)
        kind = st.selectbox("Architecture", kinds, format_func=lambda k: f"{k} — {KINDS[k]}", key="model-kind",
                            index=kinds.index(saved["kind"]) if saved.get("kind") in kinds else kinds.index(
                                suggested.kind if suggested.kind in kinds else "mlp"))
        left, right = st.columns(2)
        if kind == "mlp":
            units = tuple(saved.get("hidden_units") or (64,))
            hidden = left.text_input("Hidden layer sizes", ", ".join(str(u) for u in units), key="model-hidden",
                                     help="Comma-separated, e.g. 128, 64")
            hidden_units = models_view.parse_hidden_units(hidden)
        else:  # a fixed architecture: show it instead of a size that would not be used
            left.caption(f"Fixed layers: {models_view.ARCHITECTURES[kind]}")
            hidden_units = ()
        activation = right.selectbox("Activation", ACTIVATIONS, key="model-activation",
                                     index=ACTIVATIONS.index(saved.get("activation", "relu")),
                                     disabled=kind == "tanh_cnn")
        spec = ModelSpec(kind=kind, hidden_units=hidden_units, activation=activation)
        if section.get("source") != "custom" or saved != spec.to_dict():
            core.update_state("model", source="custom", spec=spec.to_dict())
    else:
        st.markdown(
            "An architecture saved with `model.save('net.keras')`: built-in Keras layers only (no Lambda or custom "
            "layers, no BatchNormalization or other layer that mixes examples: only layers known to act on each example are accepted, and a removal test checks that one example moves the clipped sum by at most C), outputs one logit per class (no softmax). It is "
            "loaded with `safe_mode=True` and stored in the workspace."
        )
        uploaded = st.file_uploader("Keras model", type=["keras"], key="model-file")
        if uploaded is not None:
            path = store_user_model((uploaded.name, uploaded.getvalue()), core.workspace().root,
                                    input_shape=data.dataset.input_shape)
            spec = ModelSpec(kind="keras_file", path=str(path))
            if section.get("spec") != spec.to_dict():
                core.update_state("model", source="uploaded", spec=spec.to_dict(), upload=uploaded.name)
        elif section.get("source") == "uploaded" and section.get("spec"):
            spec = ModelSpec.from_dict(section["spec"])
            st.info(f"Using the model uploaded earlier: **{section.get('upload') or spec.path}**.",
                    icon=":material/attach_file:")
        else:
            st.info("No model uploaded yet: the suggested model is used until you upload one.",
                    icon=":material/info:")

    summary = models_view.summarize(models_view.spec_key(spec), dataset.input_shape, dataset.num_classes)
    st.divider()
    cols = st.columns(4)
    cols[0].metric("trainable parameters", f"{summary.parameters:,}")
    cols[1].metric("N (training)", f"{dataset.n_train:,}")
    cols[2].metric("parameters per example", f"{summary.parameters / dataset.n_train:.3g}")
    cols[3].metric("classes", dataset.num_classes)
    st.dataframe(summary.layers, hide_index=True)
    st.caption("Spec used by the search (YAML `model:`):")
    st.code(yaml.safe_dump({"model": spec.to_dict()}, sort_keys=False), language="yaml")
