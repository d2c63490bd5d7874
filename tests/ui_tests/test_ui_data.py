"""Data page (AppTest): built-in data, uploads, and every data error shown as st.error."""

import io
import json
import zipfile

import numpy as np
import pytest
from data_files import messy_csv
from ui_testing import messages, open_page

from dptune.data import builtin_dataset, load_dataset
from dptune.ui.datasets import HEADER_CHOICES

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
    assert at.number_input(key="calc-n").value == expected.n_train  # the sidebar calculator follows at once
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
    "Excel workbook": ("book.xlsx", zip_bytes({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"}),
                       "'book.xlsx' is an Excel workbook (.xlsx), which dptune cannot read as data (save the sheet as CSV"),
    "old Excel workbook": ("book.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "save the sheet as CSV"),
    "JSON": ("rows.json", b'[{"a": 1, "label": 0}, {"a": 2, "label": 1}]', "save it as CSV"),
    "pickle": ("frame.pkl", b"\x80\x04\x95" + bytes(64), "dptune never opens pickles"),
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


def upload(at, name, content):
    at.radio(key="data-source").set_value("Upload a file").run()
    at.file_uploader(key="data-file").set_value((name, content, "application/octet-stream")).run()
    return at


def test_messy_csv_every_problem_at_once_fixed_in_place(workspace):
    """Separator, header, both problems and both warnings of the messy loan table; fixed and dropped on the page."""
    at = upload(open_page(workspace, "data"), "loans.csv", messy_csv())
    assert not at.exception, at.exception
    shown = messages(at)
    assert not shown["error"], shown["error"]
    assert any("Read as **semicolon**-separated text (UTF-8): 300 rows, 9 columns; header row detected" in c.value
               for c in at.caption)
    assert at.radio(key="data-header").value.startswith("names the columns")
    problems = next(w for w in shown["warning"] if "problems that would stop it" in w)
    assert "**loans.csv** has 2 problems" in problems
    assert "more than one column is named 'score' (columns 4, 5; read as 'score.1')" in problems
    assert "the column 'name' is not numeric and has 300 different values" in problems
    assert at.checkbox(key="data-fix-names").value is True
    assert at.multiselect(key="data-drop").value == ["name"]  # prefilled with the flagged column
    assert at.selectbox(key="data-label").value == "approved"
    at.selectbox(key="data-sensitive").set_value("sex").run()
    flagged = next(w for w in messages(at)["warning"] if "to look at before training" in w)
    assert flagged.startswith("2 columns to look at before training on 'approved':")
    assert "'id' has a different value in each of the 300 rows" in flagged
    assert "'decision_code' predicts 'approved' on its own for 99.7% of the rows" in flagged
    assert "a choice made after looking at the data" in flagged and "what ε does not cover" in flagged
    at.button(key="data-drop-warned").click().run()
    assert not at.exception and not messages(at)["error"], messages(at)
    assert at.multiselect(key="data-drop").value == ["name", "id", "decision_code"]
    assert not any("to look at before training" in w for w in messages(at)["warning"])
    assert any(c.value.startswith("Ignored on this page's advice: 'id', 'name', 'decision_code'")
               for c in at.caption)
    options = dict(label_column="approved", sensitive_column="sex", drop_columns=["name", "id", "decision_code"],
                   fix_column_names=True, header=True)
    expected = load_dataset(("loans.csv", messy_csv()), **options).dataset
    assert metric(at, "N (training)") == f"{expected.n_train:,}"
    assert metric(at, "input shape") == "4"  # age, income, score, score.1
    saved = saved_state(workspace)["dataset"]["options"]
    assert {k: saved[k] for k in options} == options


def test_messy_csv_with_a_flagged_column_kept_is_refused_with_every_problem(workspace):
    at = upload(open_page(workspace, "data"), "loans.csv", messy_csv())
    n_train = metric(at, "N (training)")  # usable as offered (renamed, 'name' dropped): now the current dataset
    assert saved_state(workspace)["dataset"]["options"]["drop_columns"] == ["name"]
    at.checkbox(key="data-fix-names").uncheck().run()
    at.multiselect(key="data-drop").set_value([]).run()
    errors = messages(at)["error"]
    assert len(errors) == 1, errors
    assert "'loans.csv' has 2 problems:" in errors[0]
    assert "Drop the column 'name'" in errors[0] and "let dptune rename them" in errors[0]
    assert metric(at, "N (training)") == n_train  # nothing lost: the upload as it was stays current
    assert saved_state(workspace)["dataset"]["options"]["drop_columns"] == ["name"]


def test_headerless_whitespace_data_file(workspace):
    """A UCI-style .data file: runs of spaces, no header row: detected, said, and the first row kept as data."""
    from data_files import aligned_table, cancer_frame

    frame = cancer_frame().iloc[:, [0, 1, 2, 30]]
    at = upload(open_page(workspace, "data"), "cancer.data", aligned_table(frame))
    assert not at.exception and not messages(at)["error"], messages(at)
    assert any("Read as **whitespace**-separated text (UTF-8): 569 rows, 4 columns; no header row detected" in c.value
               for c in at.caption)
    assert at.radio(key="data-header").value.startswith("is data")
    assert at.selectbox(key="data-label").value == "col_4"
    content = aligned_table(frame)
    assert metric(at, "N (training)") == f"{load_dataset(('cancer.data', content), label_column='col_4').dataset.n_train:,}"
    assert metric(at, "classes") == "2"
    at.text_input(key="data-names").input("radius, texture, perimeter, diagnosis").run()
    assert at.selectbox(key="data-label").value == "diagnosis"
    assert not messages(at)["error"]
    at.text_input(key="data-names").input("radius, texture").run()
    assert any("has 4 columns: give 4 different, non-empty column names, got 2" in e for e in messages(at)["error"])
    assert saved_state(workspace)["dataset"]["options"]["column_names"] == ["radius", "texture", "perimeter",
                                                                            "diagnosis"]  # the last good choice stays
    at.text_input(key="data-names").input("").run()
    at.radio(key="data-header").set_value(HEADER_CHOICES[0]).run()  # the user overrides: the first row is a header
    assert not messages(at)["error"], messages(at)
    assert at.selectbox(key="data-label").value == "malignant"  # the first row's values became the names
    header = load_dataset(("cancer.data", content), header=True, label_column="malignant").dataset
    assert metric(at, "N (training)") == f"{header.n_train:,}"
    assert saved_state(workspace)["dataset"]["options"]["header"] is True


def test_many_classes_must_be_confirmed(workspace):
    rng = np.random.default_rng(1)
    ages = np.resize(np.arange(18, 91), 400)  # 73 distinct ages
    rows = [f"{rng.normal():.3f},{a / 10 + rng.normal():.3f},{a}" for a in ages]
    content = csv_bytes(rows, header="x1,x2,age")
    at = upload(open_page(workspace, "data"), "people.csv", content)
    assert not at.exception and not messages(at)["error"], messages(at)
    assert any(w.startswith("Treat 73 distinct values of `age` as classes?") for w in messages(at)["warning"])
    assert metric(at, "N (training)") == DIGITS_N and saved_state(workspace)["dataset"]["source"] == "builtin"
    at.checkbox(key="data-many-classes").check().run()
    assert not messages(at)["error"], messages(at)
    assert metric(at, "classes") == "73"
    assert saved_state(workspace)["dataset"]["options"]["label_column"] == "age"


def test_a_new_file_clears_the_previous_error(workspace):
    at = upload(open_page(workspace, "data"), "oneclass.csv", csv_bytes(["1,2,m,yes"] * 20))
    assert any("only one class" in e for e in messages(at)["error"])
    at.file_uploader(key="data-file").set_value(("book.xlsx", BAD_UPLOADS["Excel workbook"][1], "x")).run()
    errors = messages(at)["error"]
    assert len(errors) == 1 and "save the sheet as CSV" in errors[0] and "only one class" not in errors[0], errors
    at.file_uploader(key="data-file").set_value(("people.csv", good_csv(), "text/csv")).run()
    assert not messages(at)["error"], messages(at)


def test_a_bad_file_keeps_the_previous_upload_current(workspace):
    at = upload(open_page(workspace, "data"), "people.csv", good_csv())
    n_train = metric(at, "N (training)")
    assert n_train != DIGITS_N
    at.file_uploader(key="data-file").set_value(("rows.json", b"[]", "application/json")).run()
    assert any("save it as CSV" in e for e in messages(at)["error"])
    assert metric(at, "N (training)") == n_train
    assert saved_state(workspace)["dataset"]["upload"]["name"] == "people.csv"


def test_preprocessing_caption_shows_infinity_as_no_privacy():
    from dptune.data.dataset import LEGACY_PREPROCESSING_NOTE, Dataset
    from dptune.ui.datasets import preprocessing_caption

    digits = builtin_dataset("digits")
    old = Dataset(name="old", x_train=digits.x_train, y_train=digits.y_train, x_val=digits.x_val, y_val=digits.y_val,
                  class_names=digits.class_names, preprocessing_epsilon=float("inf"),
                  preprocessing_note=LEGACY_PREPROCESSING_NOTE)  # fmt: skip
    assert preprocessing_caption(old).startswith("Preparation costs ε = ∞ (no privacy): prepared by an older version")
    assert preprocessing_caption(digits).startswith("Preparation costs ε = 0: ")
