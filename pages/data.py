"""Data: the built-in digits or an upload; preview, class balance, sensitive attribute."""

import json

import pandas as pd
import streamlit as st

from dptune.data import BUILTIN_DATASETS
from dptune.report import plots
from dptune.ui import core, datasets, shell

shell.frame("Data")
st.title("Data")
st.caption(
    "The examples DP-SGD trains on. N, the number of training examples, sets the sampling rate q = B/N that "
    "the accountant charges; the validation split is only used to measure accuracy."
)

state = core.load_state()
section = state["dataset"]
SOURCES = ["Built-in dataset", "Upload a file"]
CHANNEL_CHOICES = {"from the images": None, "1 (grayscale)": 1, "3 (colour)": 3}
choice = st.radio("Source", SOURCES, index=1 if section.get("source") == "upload" else 0, horizontal=True,
                  key="data-source")

if choice == SOURCES[0]:
    names = list(BUILTIN_DATASETS)
    current = section.get("builtin") if section.get("builtin") in names else "digits"
    name = st.selectbox("Built-in dataset", names, index=names.index(current),
                        format_func=lambda n: f"{n} — {BUILTIN_DATASETS[n]}", key="data-builtin")
    if section.get("source") != "builtin" or name != section.get("builtin"):
        state = core.update_state("dataset", source="builtin", builtin=name, upload=None, options={})
        core.update_state("model", source="suggested", spec=None)
        core.update_state("clip", l2_norm_clip=None, selection=None)
else:
    st.markdown(
        "A text table (CSV, TSV, UCI `.data`: the separator and the header row are detected) or Parquet, with a "
        "label column; NPZ with `x` and `y` (or `x_train`, `y_train`, `x_test`, `y_test`); or a ZIP of PNG/JPEG "
        "images in one folder per class. The file is checked in memory and stored in the workspace only once it is "
        "usable."
    )
    uploaded = st.file_uploader("Data file", key="data-file")  # any type: dptune says what to do with the wrong one
    if uploaded is not None:
        content = uploaded.getvalue()
        digest = datasets.digest_of(content)
        datasets.forget_choices_of_other_files(digest)
        with core.guard(f"Cannot use {uploaded.name}"):
            info, reading = datasets.read_choice(digest, uploaded.name, content)
            options: dict | None = {}
            if info.format in ("csv", "parquet"):
                options = datasets.table_choices(digest, info, reading)
            elif info.format == "npz":
                arrays = [k for k in info.columns if not k.startswith(("x", "y"))]
                if arrays:
                    sensitive = st.selectbox("Sensitive attribute array (optional)", ["(none)"] + sorted(
                        {k.removesuffix("_train").removesuffix("_test") for k in arrays}), key="data-npz-sensitive")
                    if sensitive != "(none)":
                        options["sensitive_column"] = sensitive
            elif info.format == "image_zip":
                left, mid, right = st.columns(3)
                height = left.number_input("Image height (px)", 8, 256, 28, key="data-height")
                width = mid.number_input("Image width (px)", 8, 256, 28, key="data-width")
                options["image_size"] = [int(height), int(width)]
                channels = right.selectbox(
                    "Channels", CHANNEL_CHOICES, key="data-channels",
                    help="Declare grayscale or colour, or read it from the images (then one colour image changes "
                         "every image's shape, and the choice counts as part of the schema read from the data).",
                )
                if CHANNEL_CHOICES[channels] is not None:
                    options["channels"] = CHANNEL_CHOICES[channels]
            if options is not None:
                options["validation_fraction"] = st.slider(
                    "Validation fraction", 0.05, 0.5, 0.2, 0.05, key="data-val",
                    help="Each row goes to validation by a hash of its own content, with this probability: its side "
                         "never depends on the other rows.",
                )
                prepared = core.prepare_upload(digest, uploaded.name, json.dumps(options, sort_keys=True), content)
                saved = section.get("upload") or {}
                if (saved.get("sha256") != digest or section.get("options") != options
                        or section.get("source") != "upload"):
                    datasets.commit_upload(uploaded.name, content, options, prepared)
                    st.rerun()  # the sidebar (drawn before this page) then shows the new dataset's N
                st.success(f"Using {uploaded.name}: {prepared.dataset.n_train:,} training examples.",
                           icon=":material/check_circle:")
            if info.preview is not None:
                with st.expander("File preview (first rows as read)"):
                    st.dataframe(info.preview, height=240)
    elif section.get("source") == "upload" and section.get("upload"):
        st.info(f"Using the file uploaded earlier: **{section['upload']['name']}** (stored in the workspace). "
                "Upload another file to replace it.", icon=":material/attach_file:")
    else:
        st.info("No file uploaded yet: the pages use the built-in digits until you upload one.",
                icon=":material/info:")

st.divider()
with core.guard("The current dataset cannot be loaded"):
    data = core.loaded_data(core.load_state())
    dataset = data.dataset
    st.subheader(f"Current dataset: {dataset.name}")
    cols = st.columns(5)
    cols[0].metric("N (training)", f"{dataset.n_train:,}")
    cols[1].metric("validation", f"{len(dataset.y_val):,}")
    cols[2].metric("classes", dataset.num_classes)
    cols[3].metric("input shape", "×".join(str(d) for d in dataset.input_shape))
    cols[4].metric("kind", "images" if dataset.is_image else "table")
    st.caption(f"Source: {data.source_label} · fingerprint `{dataset.fingerprint[:16]}…` (SHA-256 of the prepared "
               "arrays; workers check it)")
    st.caption(datasets.preprocessing_caption(dataset))
    if data.report is not None:
        with st.expander("What preparation did", expanded=False):
            for line in data.report.summary():
                st.markdown(f"- {line}")
    left, right = st.columns([3, 2])
    with left:
        st.markdown("**Class balance** (training examples per class)")
        st.plotly_chart(plots.class_balance_figure(dataset.y_train, dataset.class_names), key="data-balance")
    with right:
        st.markdown("**Preview**")
        if dataset.is_image:
            images, captions = datasets.sample_images(dataset.x_train, dataset.y_train, dataset.class_names)
            st.image(images, caption=captions, width=56, clamp=True)
        else:
            names = list(dataset.feature_names) or [f"x{i}" for i in range(dataset.input_shape[0])]
            preview = pd.DataFrame(dataset.x_train[:20], columns=names[: dataset.x_train.shape[1]])
            preview.insert(0, "label", [dataset.class_names[i] for i in dataset.y_train[:20]])
            st.dataframe(preview, height=260)
    st.markdown("**Sensitive attribute**")
    groups = datasets.group_counts(dataset.sensitive_train, dataset.y_train, dataset.class_names)
    if groups is None:
        st.caption("None chosen. For a table, pick one of its columns when you upload it (it is kept out of the features).")
    else:
        st.caption(f"`{dataset.sensitive_name}`: training examples per group and class")
        st.dataframe(groups)
