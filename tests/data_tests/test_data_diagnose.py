"""Real-world uploads: the separator and the header row detected and said, every problem at once, warnings."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from data_files import MESSY_ROWS, aligned_table, cancer_frame, digits_frame, messy_csv, write_parquet

from dptune.data import ColumnWarning, TableProblems, column_warnings, describe_upload, load_dataset
from dptune.data.diagnose import MANY_CLASSES, class_count, many_classes_question
from dptune.data.text import WHITESPACE, sniff_separator
from dptune.errors import DataError

SMALL = cancer_frame().iloc[:200, [0, 1, 30]].set_axis(["radius", "texture", "diagnosis"], axis=1)


def _text(frame: pd.DataFrame, sep: str, **kwargs) -> bytes:
    return frame.to_csv(index=False, sep=sep, **kwargs).encode()


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (_text(SMALL, ","), "comma"),
        (_text(SMALL, ";", decimal=","), "semicolon"),
        (_text(SMALL, "\t"), "tab"),
        (_text(SMALL, "|"), "pipe"),
        (aligned_table(SMALL, header=True), "whitespace"),
    ],
    ids=["comma", "semicolon", "tab", "pipe", "whitespace"],
)
def test_the_separator_is_sniffed_and_said(content, name):
    summary = describe_upload(("small.txt", content))
    assert summary.separator == name and summary.header is True
    assert summary.columns == ("radius", "texture", "diagnosis")
    prepared = load_dataset(("small.txt", content), label_column="diagnosis")
    assert prepared.report.rows_read == 200 and prepared.dataset.input_shape == (2,)
    assert any(note.startswith(f"read as {name}-separated text in UTF-8; header row detected")
               for note in prepared.report.notes)
    np.testing.assert_allclose(prepared.dataset.x_train, load_dataset(
        ("small.csv", _text(SMALL, ",")), label_column="diagnosis").dataset.x_train, rtol=1e-6)  # same numbers


def test_a_space_separated_uci_data_file_without_header():
    """german.data-like: single spaces between codes and numbers, no header, the class last (1 or 2)."""
    rng = np.random.default_rng(0)
    lines = [f"A1{rng.integers(1, 5)} {rng.integers(4, 72)} A3{rng.integers(0, 5)} {rng.integers(250, 18000)} "
             f"{rng.integers(1, 3)}" for _ in range(120)]
    content = ("\n".join(lines) + "\n").encode()
    assert sniff_separator(content.decode(), ".data") == WHITESPACE
    summary = describe_upload(("german.data", content))
    assert (summary.separator, summary.header, summary.n_rows) == ("whitespace", False, 120)
    assert summary.columns == ("col_1", "col_2", "col_3", "col_4", "col_5")
    assert "it holds numbers in all 3 numeric columns and values that recur below it in 2 text columns" in (
        summary.header_note)
    prepared = load_dataset(("german.data", content), label_column="col_5")
    assert prepared.report.rows_read == 120 and prepared.dataset.class_names == ("1", "2")


def test_semicolons_with_decimal_commas_win_over_commas_without_a_header():
    text = "\n".join(f"{i},5;{i + 1},25;{i % 2}" for i in range(30))
    assert sniff_separator(text) == ";"


@pytest.mark.parametrize(
    ("frame", "header"),
    [
        (digits_frame(), True),
        (pd.DataFrame({"colour": ["red", "blue"] * 20, "size": ["big", "small"] * 20, "label": ["a", "b"] * 20}), True),
    ],
)
def test_header_detection(frame, header):
    with_header = describe_upload(("t.csv", frame.to_csv(index=False).encode()))
    assert with_header.header is header and with_header.columns == tuple(frame.columns)
    without = describe_upload(("t.csv", frame.to_csv(index=False, header=False).encode()))
    assert without.header is False and without.header_detected is False
    assert without.n_rows == len(frame)  # the first record is data, not lost
    assert without.columns == tuple(f"col_{i}" for i in range(1, frame.shape[1] + 1))
    assert without.header_note.startswith("no header row detected (the first row looks like data")


def test_the_header_row_can_be_chosen_and_the_columns_named(tmp_path):
    headerless = SMALL.to_csv(index=False, header=False).encode()
    forced = describe_upload(("s.csv", headerless), header=True)
    assert forced.header is True and forced.header_detected is False and forced.n_rows == 199
    assert forced.columns == tuple(SMALL.astype(str).iloc[0].str.strip())
    assert forced.header_note == "header row (as chosen)"
    named = load_dataset(("s.csv", headerless), header=False, column_names=["r", "t", "diagnosis"],
                         label_column="diagnosis")
    assert named.report.rows_read == 200 and named.dataset.feature_names == ("r", "t")
    with pytest.raises(DataError, match="'s.csv' has 3 columns: give 3 different, non-empty column names, got 2"):
        load_dataset(("s.csv", headerless), header=False, column_names=["r", "t"])
    with pytest.raises(DataError, match="column_names are for a file without a header row"):
        load_dataset(("s.csv", headerless), column_names=["r", "t", "d"])
    with pytest.raises(DataError, match="header must be True"):
        load_dataset(("s.csv", headerless), header="no")
    parquet = write_parquet(SMALL, tmp_path / "s.parquet")
    with pytest.raises(DataError, match="is a Parquet file, which names its columns"):
        load_dataset(parquet, header=False, label_column="diagnosis")
    data = describe_upload(("s.data", _text(SMALL, ",")), header=False)
    assert data.n_rows == 201 and data.header_note == "no header row (as chosen); columns named col_1 … col_3"


def test_the_messy_csv_gives_every_problem_in_one_error():
    summary = describe_upload(("loans.csv", messy_csv()))
    assert (summary.separator, summary.header, summary.n_rows, len(summary.columns)) == ("semicolon", True, 300, 9)
    assert [p.column for p in summary.problems] == ["score.1", "name"]
    assert summary.columns_to_drop == ("name",) and summary.columns_to_rename == ("score.1",)
    with pytest.raises(TableProblems) as info:
        load_dataset(("loans.csv", messy_csv()), label_column="approved")
    error = info.value
    assert isinstance(error, DataError) and len(error.problems) == 2 and error.columns_to_drop == ("name",)
    message = str(error)
    assert message.startswith("'loans.csv' has 2 problems:\n- more than one column is named 'score' (columns 4, 5")
    assert "- the column 'name' is not numeric and has 300 different values" in message
    assert "Drop the column 'name'" in message and "fix_column_names=True" in message
    prepared = load_dataset(("loans.csv", messy_csv()), label_column="approved", sensitive_column="sex",
                            fix_column_names=True, drop_columns=["name"])
    assert prepared.report.rows_read == MESSY_ROWS
    assert prepared.dataset.feature_names[:5] == ("id", "age", "income", "score", "score.1")
    notes = prepared.report.notes
    assert any("renamed the columns without a name or with a repeated name: now 'score.1'" in n for n in notes)
    assert [n.split("'")[1] for n in notes if n.startswith("warning: ")] == ["id", "decision_code"]


def test_three_unusable_columns_in_one_error():
    frame = cancer_frame().iloc[:150, [0, 30]].copy()
    frame["notes"] = np.nan
    frame["patient"] = [f"P{i:04d}" for i in range(150)]
    frame["tags"] = ["a"] * 150
    content = frame.to_csv(index=False).encode().replace(b",tags", b",")  # an unnamed column too
    with pytest.raises(TableProblems) as info:
        load_dataset(("c.csv", content), label_column="diagnosis")
    assert str(info.value).startswith("'c.csv' has 3 problems:")
    assert [p.column for p in info.value.problems] == ["col_5", "notes", "patient"]
    assert info.value.columns_to_drop == ("notes", "patient")
    fixed = load_dataset(("c.csv", content), label_column="diagnosis", fix_column_names=True,
                         drop_columns=["notes", "patient"])
    assert "col_5=#0" in fixed.dataset.feature_names


def test_identifier_and_leak_warnings():
    frame = describe_upload(("loans.csv", messy_csv())).table
    found = column_warnings(frame, "approved", ignore=["sex"])
    assert [(w.column, w.kind) for w in found] == [("id", "identifier"), ("name", "identifier"),
                                                   ("decision_code", "leak")]
    assert "99.7% of the rows (the most common class alone: 67.3%)" in found[2].detail
    assert column_warnings(frame, "approved", ignore=["sex", "name", "id", "decision_code"]) == []
    assert column_warnings(cancer_frame(), "diagnosis") == []  # strong features, none near-perfect alone
    assert column_warnings(digits_frame(), "label") == []


def test_a_copy_of_a_numeric_label_is_found_by_correlation():
    rng = np.random.default_rng(3)
    age = rng.integers(18, 91, size=400)
    frame = pd.DataFrame({"x": rng.normal(size=400), "birth_year": 2024 - age + rng.integers(0, 2, size=400),
                          "age": age})
    found = column_warnings(frame, "age")
    assert [(w.column, w.kind) for w in found] == [("birth_year", "leak")]
    assert "correlation r = -1.000" in found[0].detail
    assert isinstance(found[0], ColumnWarning)


def test_many_classes_are_counted_and_asked_about():
    assert class_count(pd.Series([3, 3.0, "3", 4, None])) == 2
    ages = pd.Series(np.resize(np.arange(18, 91), 400))
    assert class_count(ages) == 73 > MANY_CLASSES
    assert many_classes_question("age", 73).startswith("Treat 73 distinct values of `age` as classes?")


@pytest.mark.parametrize(
    ("name", "content", "hint"),
    [
        ("book.xlsx", b"PK\x03\x04" + bytes(60), "save the sheet as CSV"),
        ("book.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(60), "save the sheet as CSV"),
        ("rows.json", b'[{"a": 1}]', "save it as CSV"),
        ("rows.jsonl", b'{"a": 1}\n', "save it as CSV"),
        ("frame.pkl", b"\x80\x04\x95" + bytes(60), "dptune never opens pickles"),
    ],
)
def test_unsupported_types_say_what_to_do(name, content, hint):
    with pytest.raises(DataError, match="which dptune cannot read as data") as info:
        describe_upload((name, content))
    assert hint in str(info.value)


def test_describe_upload_names_the_arrays_of_an_npz():
    buffer = io.BytesIO()
    np.savez(buffer, x=np.zeros((10, 2)), y=np.arange(10) % 2, group=np.arange(10) % 3)
    assert describe_upload(("a.npz", buffer.getvalue())).columns == ("x", "y", "group")


def test_a_first_row_that_does_not_fit_the_rows_below():
    spaced = aligned_table(cancer_frame().iloc[:50, [0, 1, 30]], header=True)  # "mean radius  mean texture diagnosis"
    with pytest.raises(DataError, match="the first row of 'c.data' has 5 fields but the rows below it have 3 "
                                        r"\(whitespace-separated\); with whitespace as the separator a column name "
                                        "cannot contain a space"):
        load_dataset(("c.data", spaced), label_column="diagnosis")
    r_table = SMALL.to_csv(sep=" ", index=True).encode()  # R's write.table: a row name first, no name above it
    summary = describe_upload(("r.txt", r_table))
    assert summary.columns == ("radius", "texture", "diagnosis") and summary.n_rows == 200
    assert summary.header_note == ("header row detected (the first row has one field fewer than the rows below it: "
                                   "their first field is a row name, not used)")
    with pytest.raises(DataError, match="so the first row can only be a header row"):
        load_dataset(("r.txt", r_table), header=False)
