"""Data page (AppTest): built-in data, uploads, and every data error shown as st.error."""

import io
import json
import zipfile

import numpy as np
import pytest
from ui_testing import messages, open_page

from dptune.data import builtin_dataset, load_dataset

DIGITS_N = f"{builtin_dataset('digits').n_train:,}"
"""N of the built-in digits as the page shows it (the split is by each row's hash, about 80 %)."""


def saved_state(workspace):
    from dptune.ui.specs import merged_state

    path = workspace / "ui_state.json"
    return merged_state(json.loads(path.read_text()) if path.exists() else {})


def csv_bytes(rows, header="a,b,sex,label"):
    return (header + "\n" + "\n".join(rows) + "\n").encode()


def good_csv(n=120):
    rng = np.random.default_rng(0)
    rows = [f"{rng.normal():.3f},{rng.normal():.3f},{'f' if i % 3 else 'm'},{'yes' if i % 2 else 'no'}" for i in range(n)]
    return csv_bytes(rows)


def metric(at, label):
    return next(m.value for m in at.main.metric if m.label == label)


def test_opens_on_builtin_digits(workspace):
    at = open_page(workspace, "data")
    assert not at.exception and not at.error
    assert metric(at, "N (training)") == DIGITS_N
    assert metric(at, "classes") == "10"
    assert at.radio(key="data-source").value == "Built-in dataset"
    assert len(at.get("plotly_chart")) >= 1  # class balance
    assert any("Preparation costs ε = 0: " in c.value and "nothing fitted on the rows" in c.value for c in at.caption)
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1


def test_choosing_another_builtin_changes_the_dataset_spec(workspace):
    at = open_page(workspace, "data")
    at.selectbox(key="data-builtin").set_value("breast_cancer").run()
    assert not at.exception and not at.error
    assert metric(at, "classes") == "2"
    assert saved_state(workspace)["dataset"]["builtin"] == "breast_cancer"
    at.switch_page("app.py").run()
    assert next(m.value for m in at.main.metric if m.label == "Data") == "breast_cancer"


def test_upload_csv_with_label_and_sensitive_attribute(workspace):
    at = open_page(workspace, "data")
    at.radio(key="data-source").set_value("Upload a file").run()
    at.file_uploader(key="data-file").set_value(("people.csv", good_csv(), "text/csv")).run()
    assert not at.exception and not at.error, messages(at)
    assert at.selectbox(key="data-label").value == "label"
    at.selectbox(key="data-sensitive").set_value("sex").run()
    assert not at.exception and not at.error, messages(at)
    expected = load_dataset(("people.csv", good_csv()), label_column="label", sensitive_column="sex").dataset
    assert metric(at, "N (training)") == f"{expected.n_train:,}"
    state = saved_state(workspace)
    assert state["dataset"]["source"] == "upload"
    assert state["dataset"]["options"]["sensitive_column"] == "sex"
    stored = workspace / "uploads"
    assert [p.name.endswith("-people.csv") for p in stored.iterdir()] == [True]
    assert any(p.suffix == ".npz" for p in workspace.iterdir())
    assert any("sex" in c.value for c in at.caption)  # sensitive groups are shown
    assert any("2 numeric columns: signed log" in c.value and "read from the data" in c.value for c in at.caption)


def test_image_zip_with_declared_channels(workspace):
    from data_files import png_bytes

    members = {f"{cls}/{i}.png": png_bytes(np.full((8, 8), 40 * i, dtype=np.uint8)) for cls in "ab" for i in range(6)}
    at = open_page(workspace, "data")
    at.radio(key="data-source").set_value("Upload a file").run()
    at.file_uploader(key="data-file").set_value(("shapes.zip", zip_bytes(members), "application/zip")).run()
    at.selectbox(key="data-channels").set_value("3 (colour)").run()
    assert not at.exception and not at.error, messages(at)
    assert metric(at, "input shape") == "28×28×3"
    assert saved_state(workspace)["dataset"]["options"]["channels"] == 3


def npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def zip_bytes(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

BAD_UPLOADS = {
    "empty file": ("empty.csv", b"", "is empty"),
    "header only": ("header.csv", b"a,b,label\n", "no rows of data"),
    "label column missing": ("nolabel.csv", csv_bytes(["1,2,m,3"] * 20, header="a,b,sex,c"), "label"),
    "one class": ("oneclass.csv", csv_bytes(["1,2,m,yes"] * 20), "class"),
    "content is not what the extension says": ("picture.csv", PNG, "named like"),
    "pickled NPZ": ("objects.npz", npz_bytes(x=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4)), "unpickling"),
    "NPZ arrays of different lengths": ("lengths.npz", npz_bytes(x=np.zeros((10, 3)), y=np.zeros(7)), "10"),
    "ZIP escaping its folder": ("evil.zip", zip_bytes({"../evil/a.png": PNG, "b/b.png": PNG}), ".."),
    "ZIP that is not images": ("notes.zip", zip_bytes({"a/readme.txt": b"hello", "b/readme.txt": b"hi"}), "image"),
}


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_uploads_show_an_error_and_keep_the_current_dataset(workspace, case):
    name, content, expected = BAD_UPLOADS[case]
    at = open_page(workspace, "data")
    at.radio(key="data-source").set_value("Upload a file").run()
    at.file_uploader(key="data-file").set_value((name, content, "application/octet-stream")).run()
    assert not at.exception, at.exception
    errors = messages(at)["error"]
    assert errors, f"{case}: no st.error shown"
    assert any(expected.lower() in error.lower() for error in errors), errors
    assert "Traceback" not in " ".join(errors)
    # the current dataset is still digits, and nothing from the bad upload reached the workspace
    assert metric(at, "N (training)") == DIGITS_N
    assert saved_state(workspace)["dataset"]["source"] == "builtin"
    assert not list((workspace / "uploads").iterdir())


def test_preprocessing_caption_shows_infinity_as_no_privacy():
    from dptune.data.dataset import LEGACY_PREPROCESSING_NOTE, Dataset
    from dptune.ui.datasets import preprocessing_caption

    digits = builtin_dataset("digits")
    old = Dataset(name="old", x_train=digits.x_train, y_train=digits.y_train, x_val=digits.x_val, y_val=digits.y_val,
                  class_names=digits.class_names, preprocessing_epsilon=float("inf"),
                  preprocessing_note=LEGACY_PREPROCESSING_NOTE)  # fmt: skip
    assert preprocessing_caption(old).startswith("Preparation costs ε = ∞ (no privacy): prepared by an older version")
    assert preprocessing_caption(digits).startswith("Preparation costs ε = 0: ")
