"""Every bad input raises DataError with a message that names the problem (never a traceback)."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from data_files import cancer_frame, digits_frame, tiny_png, write_csv, write_digits_zip, write_parquet, zip_of

from dptune.data import Limits, builtin_dataset, check_enough_examples, load_dataset
from dptune.errors import DataError, DPTuneError


def fails(match: str, *args, **kwargs) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        load_dataset(*args, **kwargs)
    assert isinstance(info.value, DPTuneError)
    return info.value


# ------------------------------------------------------------------ files


def test_empty_file(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    fails(r"'empty.csv' is empty \(0 bytes\)", tmp_path / "empty.csv")
    fails("is empty", ("upload.csv", b""))


def test_blank_text_file(tmp_path):
    (tmp_path / "blank.csv").write_text("\n\n  \n")
    fails("holds no data", tmp_path / "blank.csv")


def test_missing_path(tmp_path):
    fails("does not exist", tmp_path / "nope.csv")


def test_header_only(tmp_path):
    (tmp_path / "h.csv").write_text("a,b,label\n")
    fails("has column names but no rows", tmp_path / "h.csv", label_column="label")


def test_no_header_is_detected_and_the_label_named_by_position(tmp_path):
    path = write_csv(digits_frame(), tmp_path / "digits.csv", header=False)
    error = fails("the label column 'label' is not a column", path, label_column="label")
    assert "read without a header row, so its columns are named col_1 … col_65 by position" in str(error)
    prepared = load_dataset(path, label_column="col_65")
    assert prepared.report.rows_read == 1797  # the first record is data, not lost as column names
    assert any("no header row detected (the first row looks like data: it holds numbers in all 65 numeric columns)"
               in note for note in prepared.report.notes)


def test_label_column_missing_or_misnamed(tmp_path):
    path = write_csv(digits_frame(), tmp_path / "digits.csv")
    error = fails(r"the label column 'lable' is not a column of 'digits.csv'; did you mean 'label'\?", path, label_column="lable")
    assert "'pixel0'" in str(error)
    fails("did you mean 'label'", path, label_column="Label")
    frame = cancer_frame()
    fails("name the label column", write_csv(frame, tmp_path / "c.csv"))  # no label/target/class/y column


def test_label_with_one_class(tmp_path):
    frame = cancer_frame()
    frame["diagnosis"] = "benign"
    fails(r"only one class \('benign'\)", write_csv(frame, tmp_path / "c.csv"), label_column="diagnosis")


def test_label_with_too_many_classes(tmp_path):
    path = write_csv(digits_frame(), tmp_path / "digits.csv")
    fails("10 different values, more than the limit of 5 classes", path, label_column="label", max_classes=5)
    frame = cancer_frame()
    fails("has 569 different values|non-integer numbers", write_csv(frame, tmp_path / "c.csv"), label_column="mean area")


def test_label_that_is_a_continuous_number(tmp_path):
    frame = cancer_frame()
    fails("holds non-integer numbers", write_csv(frame, tmp_path / "c.csv"), label_column="mean radius")


def test_feature_column_all_missing(tmp_path):
    frame = cancer_frame()
    frame["notes"] = np.nan
    for missing in ("impute", "drop"):
        fails("'c.csv' has 1 problem:\n- the column 'notes' has no values at all", write_csv(frame, tmp_path / "c.csv"),
              label_column="diagnosis", missing=missing)  # fmt: skip


def test_categorical_column_with_thousands_of_categories(tmp_path):
    frame = digits_frame()
    frame["patient_id"] = [f"P{i:05d}" for i in range(len(frame))]
    path = write_csv(frame, tmp_path / "d.csv")
    error = fails("'patient_id' is not numeric and has 1,797 different values", path, label_column="label")
    assert "Drop the column 'patient_id'" in str(error)
    assert load_dataset(path, label_column="label", drop_columns=["patient_id"]).dataset.input_shape == (64,)
    small = cancer_frame()
    small["colour"] = np.resize(["red", "green", "blue", "black"], len(small))
    fails("'colour' .* 4 different values, more than the limit of 3", write_csv(small, tmp_path / "s.csv"),
          label_column="diagnosis", max_categories=3)  # fmt: skip


def test_malformed_rows_and_duplicate_columns(tmp_path):
    (tmp_path / "bad.csv").write_text("a,b,label\n1,2,0\n1,2,3,4,5\n")
    fails("not a well-formed table", tmp_path / "bad.csv", label_column="label")
    (tmp_path / "dup.csv").write_text("a,a,label\n1,2,0\n1,2,1\n")
    fails(r"more than one column is named 'a' \(columns 1, 2; read as 'a.1'\)", tmp_path / "dup.csv", label_column="label")
    (tmp_path / "unnamed.csv").write_text("a,,label\n1,2,0\n1,2,1\n")
    fails("column 2 has no name", tmp_path / "unnamed.csv", label_column="label")


def test_bad_options(tmp_path):
    path = write_csv(cancer_frame(), tmp_path / "c.csv")
    fails("missing must be one of", path, label_column="diagnosis", missing="zero")
    fails("validation_fraction must be", path, label_column="diagnosis", validation_fraction=1.5)
    fails("seed must be an integer", path, label_column="diagnosis", seed=-1)
    fails("sensitive-attribute column 'gender' is not a column", path, label_column="diagnosis", sensitive_column="gender")
    fails("the sensitive attribute and the label are the same column", path, label_column="diagnosis",
          sensitive_column="diagnosis")  # fmt: skip
    fails("column to drop 'ids' is not a column", path, label_column="diagnosis", drop_columns=["ids"])
    fails("image_size must be between", write_digits_zip(tmp_path / "d.zip", per_class=2), image_size=(0, 8))


def test_test_file_problems(tmp_path):
    frame = cancer_frame()
    train = write_csv(frame.iloc[:400], tmp_path / "train.csv")
    fails("lacks the column\\(s\\) 'mean radius'", train, label_column="diagnosis",
          test_source=write_csv(frame.iloc[400:].drop(columns=["mean radius"]), tmp_path / "t.csv"))  # fmt: skip
    other = frame.iloc[400:].copy()
    other["diagnosis"] = "unknown"
    fails("classes that the training data does not have \\('unknown'\\)", train, label_column="diagnosis",
          test_source=write_csv(other, tmp_path / "t2.csv"))  # fmt: skip
    fails("the test file 't.parquet' is parquet but the training file 'train.csv' is csv", train,
          label_column="diagnosis", test_source=write_parquet(frame.iloc[400:], tmp_path / "t.parquet"))  # fmt: skip


# ------------------------------------------------------------------ NPZ


def test_npz_arrays_of_different_lengths(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((10, 3)), y=np.arange(9) % 2)
    fails("'x' has 10 examples but 'y' has 9 labels", tmp_path / "a.npz")


def test_npz_with_pickled_objects(tmp_path):
    np.savez(tmp_path / "p.npz", x=np.zeros((4, 2)), y=np.array([{"a": 1}, 2, 3, "b"], dtype=object))
    error = fails("'y' in 'p.npz' holds Python objects.*unpickling", tmp_path / "p.npz")
    assert "refused" in str(error)


def test_npz_with_a_forged_array_header(tmp_path):
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(4))
    original = buffer.getvalue()
    huge = b"(4000000000000,)"  # 32 TB of float64: same header length, the padding absorbs it
    forged = original.replace(b"(4,), }" + b" " * (len(huge) - 4), b"(4000000000000,), }")
    assert len(forged) == len(original) and forged != original
    path = zip_of(tmp_path / "f.npz", {"x.npy": forged, "y.npy": _npy_bytes()})
    fails("'x' in 'f.npz' declares shape \\(4000000000000,\\) but holds less data", path)


def test_npz_wrong_keys_and_types(tmp_path):
    np.savez(tmp_path / "k.npz", features=np.zeros((4, 2)), labels=np.arange(4))
    fails(r"holds the arrays \['features', 'labels'\]; dptune needs 'x' and 'y'", tmp_path / "k.npz")
    np.savez(tmp_path / "s.npz", x=np.array([["a"], ["b"]]), y=np.arange(2))
    fails("must be numbers", tmp_path / "s.npz")
    np.savez(tmp_path / "n.npz", x=np.full((20, 4, 4), np.nan, dtype=np.float32), y=np.arange(20) % 2)
    fails("contain NaN", tmp_path / "n.npz")
    np.savez(tmp_path / "c.npz", x=np.zeros((20, 3, 8, 8)), y=np.arange(20) % 2)
    fails("looks channels-first", tmp_path / "c.npz")
    np.savez(tmp_path / "y.npz", x=np.zeros((20, 2)), y=np.zeros((20, 3)))
    fails("one-hot rows", tmp_path / "y.npz")


def test_npz_with_non_npy_member_is_not_an_npz(tmp_path):
    zip_of(tmp_path / "x.npz", {"x.npy": b"...", "notes.txt": b"hello"})
    fails("named like a NumPy .npz archive .* but its content is a ZIP of images", tmp_path / "x.npz")


# ------------------------------------------------------------------ ZIP


def test_zip_with_parent_paths_writes_nothing(tmp_path):
    folder = tmp_path / "work"
    folder.mkdir()
    path = zip_of(folder / "evil.zip", {"a/1.png": tiny_png(), "b/2.png": tiny_png(), "../../evil.png": tiny_png()})
    fails("unsafe path '../../evil.png'", path)
    fails("unsafe path '/etc/x.png'", zip_of(folder / "abs.zip", {"a/1.png": tiny_png(), "/etc/x.png": tiny_png()}))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["abs.zip", "evil.zip", "work"]


def test_zip_with_symlink(tmp_path):
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("a/link.png")
        info.external_attr = (0o120777 << 16)
        archive.writestr(info, "/etc/passwd")
        archive.writestr("b/1.png", tiny_png())
    fails("symbolic link", path)


def test_zip_over_uncompressed_cap(tmp_path):
    bomb = zip_of(tmp_path / "bomb.zip", {"a/1.png": tiny_png(), "b/big.png": b"\0" * (8 * 1024 * 1024)})
    assert bomb.stat().st_size < 100_000
    fails(r"expands to 8.0 MiB, over the limit of 1.0 MiB uncompressed", bomb,
          limits=Limits(max_zip_uncompressed_bytes=1024 * 1024))  # fmt: skip
    fails("holds 3 entries, over the limit of 2", zip_of(tmp_path / "many.zip", {f"{c}/{i}.png": tiny_png() for c, i in
          [("a", 1), ("a", 2), ("b", 1)]}), limits=Limits(max_zip_files=2))  # fmt: skip


def test_zip_with_non_image_or_corrupt_image(tmp_path):
    members = {"a/1.png": tiny_png(), "b/1.png": tiny_png(), "b/readme.txt": b"hello"}
    fails("'b/readme.txt' in the ZIP 'x.zip' is not a PNG or JPEG image; remove it", zip_of(tmp_path / "x.zip", members))
    corrupt = {"a/1.png": tiny_png(), "b/1.png": tiny_png()[:30], "b/2.png": tiny_png()}
    fails("'b/1.png' in the ZIP 'y.zip' is not a readable image", zip_of(tmp_path / "y.zip", corrupt))
    garbage = {"a/1.png": tiny_png(), "b/1.jpg": b"not an image at all"}
    fails("'b/1.jpg' in the ZIP 'z.zip' is not a readable image", zip_of(tmp_path / "z.zip", garbage))
    from PIL import Image

    gif = io.BytesIO()
    Image.new("L", (4, 4)).save(gif, format="GIF")
    fails("is a GIF image; only PNG and JPEG", zip_of(tmp_path / "g.zip", {"a/1.png": tiny_png(), "b/1.png": gif.getvalue()}))


def test_zip_layout_problems(tmp_path):
    fails("directly in the top of the archive", zip_of(tmp_path / "flat.zip", {"1.png": tiny_png(), "2.png": tiny_png()}))
    fails("in a nested folder", zip_of(tmp_path / "deep.zip", {"a/x/1.png": tiny_png(), "b/2.png": tiny_png()}))
    fails("has only one class folder \\('a'\\)", zip_of(tmp_path / "one.zip", {"a/1.png": tiny_png(), "a/2.png": tiny_png()}))
    fails("holds no images", zip_of(tmp_path / "none.zip", {"__MACOSX/._a": b"x"}))
    fails("over the limit of 100 pixels per image",
          zip_of(tmp_path / "big.zip", {"a/1.png": tiny_png(size=20), "b/1.png": tiny_png()}),
          limits=Limits(max_image_pixels=100))  # fmt: skip
    fails("would need .* of memory, over the limit", write_digits_zip(tmp_path / "d.zip", per_class=2),
          limits=Limits(max_array_bytes=1000))  # fmt: skip


# ------------------------------------------------------------------ size, type, batch


def test_over_size_file(tmp_path):
    path = write_csv(digits_frame(), tmp_path / "digits.csv")
    error = fails(r"'digits.csv' is .* KiB, over the upload limit of 1.0 KiB", path, limits=Limits(max_upload_bytes=1024))
    assert "use a smaller file" in str(error)
    fails("over the upload limit", ("digits.csv", path.read_bytes()), limits=Limits(max_upload_bytes=1024))


def test_file_not_what_its_extension_says(tmp_path):
    frame = cancer_frame()
    parquet = write_parquet(frame, tmp_path / "c.parquet")
    (tmp_path / "c.csv").write_bytes(parquet.read_bytes())
    fails(r"'c.csv' is named like a CSV/TSV text table \(.csv\) but its content is a Parquet file", tmp_path / "c.csv")
    (tmp_path / "t.parquet").write_text("a,b,label\n1,2,0\n")
    fails("named like a Parquet file .* but its content is a CSV/TSV text table", tmp_path / "t.parquet")
    np.savez(tmp_path / "a.npz", x=np.zeros((4, 2)), y=np.arange(4) % 2)
    (tmp_path / "a.zip").write_bytes((tmp_path / "a.npz").read_bytes())
    fails("named like a ZIP of images .* but its content is a NumPy .npz archive", tmp_path / "a.zip")
    fails("named like a CSV/TSV text table .* content is a single image.*ZIP of the folders", ("img.csv", tiny_png()))
    fails("is a single image", ("img.png", tiny_png()))
    fails("single NumPy .npy array.*np.savez", ("a.npy", _npy_bytes()))
    fails("content is a binary file of unknown type", ("x.csv", bytes(range(256)) * 4))
    fails("an Excel workbook.*save the sheet as CSV", ("book.xlsx", _fake_xlsx()))


def _npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


def _fake_xlsx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


def test_corrupt_or_oversized_parquet(tmp_path):
    path = write_parquet(cancer_frame(), tmp_path / "c.parquet")
    (tmp_path / "broken.parquet").write_bytes(path.read_bytes()[:2000])
    fails("is not a readable Parquet file", tmp_path / "broken.parquet", label_column="diagnosis")
    fails("expands to .* when decompressed, over the limit", path, label_column="diagnosis",
          limits=Limits(max_array_bytes=10_000))  # fmt: skip


def test_fewer_examples_than_one_batch():
    digits = builtin_dataset("digits")
    n = digits.n_train
    check_enough_examples(digits, n)
    with pytest.raises(DataError, match=rf"{n:,} training examples, fewer than one batch of 2,000; use a batch size of at most {n:,}"):
        check_enough_examples(digits, 2000)
    with pytest.raises(DataError, match="batch_size must be an integer"):
        check_enough_examples(digits, 0)


def test_too_few_examples_for_a_validation_split(tmp_path):
    (tmp_path / "t.csv").write_text("a,label\n1,0\n2,1\n")
    fails("the validation split would be empty", tmp_path / "t.csv", label_column="label")


def test_builtin_errors():
    with pytest.raises(DataError, match="no built-in dataset 'mnist'; choose one of digits, breast_cancer, synthetic"):
        builtin_dataset("mnist")
    with pytest.raises(DataError, match="takes no parameters"):
        builtin_dataset("digits", n_examples=5)
    with pytest.raises(DataError, match="unknown parameter"):
        builtin_dataset("synthetic", rows=5)
    with pytest.raises(DataError, match="n_classes must be an integer between 2"):
        builtin_dataset("synthetic", n_classes=1)
    with pytest.raises(DataError, match="separability must be a number > 0"):
        builtin_dataset("synthetic", separability=0)
    with pytest.raises(DataError, match=r"minority_share must be a number in \(0, 0.5\), got 0.7"):
        builtin_dataset("synthetic", minority_share=0.7)
    with pytest.raises(DataError, match="minority_share needs at most 1,024 features"):
        builtin_dataset("synthetic", n_features=5000, n_examples=100, minority_share=0.1)


def test_every_problem_is_a_value_error_subclass_not_a_crash(tmp_path):
    """A sweep of random junk never escapes as anything but DataError."""
    rng = np.random.default_rng(0)
    for i, extension in enumerate([".csv", ".tsv", ".parquet", ".npz", ".zip", ".dat", ""] * 3):
        content = rng.integers(0, 256, size=int(rng.integers(1, 300)), dtype=np.uint8).tobytes()
        if i % 3 == 0:
            content = b"PK\x03\x04" + content
        elif i % 3 == 1:
            content = b"PAR1" + content
        with pytest.raises(DataError):
            load_dataset((f"junk{extension}", content), label_column="label")
    text_junk = pd.DataFrame({"label": ["a", "b"] * 3, "v": ["x", "y", "z"] * 2}).to_csv(index=False).encode()
    load_dataset(("ok.dat", text_junk), label_column="label", validation_fraction=0.34)  # content decides
