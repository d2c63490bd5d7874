"""Every format loads from a real file (sklearn's datasets written out) and fingerprints stably."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from data_files import (
    cancer_frame,
    digits_frame,
    digits_images,
    png_bytes,
    write_csv,
    write_digits_zip,
    write_parquet,
    zip_of,
)

from dptune.data import HASH_BUCKETS, builtin_dataset, load_dataset
from dptune.data.encoding import signed_log


def _same(a, b):
    assert a.dataset.fingerprint == b.dataset.fingerprint
    np.testing.assert_array_equal(a.dataset.x_train, b.dataset.x_train)


def test_csv_digits_loads_and_fingerprints_stably(tmp_path):
    path = write_csv(digits_frame(), tmp_path / "digits.csv")
    first = load_dataset(path, label_column="label")
    second = load_dataset(path, label_column="label")
    _same(first, second)
    data = first.dataset
    assert data.input_shape == (64,) and data.num_classes == 10 and not data.is_image
    assert data.class_names == tuple(str(d) for d in range(10))
    assert data.n_train + len(data.x_val) == 1797
    assert data.feature_names[:2] == ("pixel0", "pixel1")
    assert len(data.fingerprint) == 64
    assert first.report.source_format == "csv" and first.report.n_train == data.n_train
    # an in-memory upload of the same bytes gives the same dataset
    upload = load_dataset(("digits.csv", path.read_bytes()), label_column="label")
    _same(first, upload)


def test_label_column_guessed_when_named_label(tmp_path):
    path = write_csv(digits_frame(), tmp_path / "digits.csv")
    prepared = load_dataset(path)
    assert prepared.report.label_column == "label"
    assert any("used the column 'label'" in note for note in prepared.report.notes)


def test_tsv_with_sensitive_column(tmp_path):
    path = write_csv(cancer_frame(), tmp_path / "cancer.tsv", sep="\t")
    first = load_dataset(path, label_column="diagnosis", sensitive_column="size_group")
    second = load_dataset(path, label_column="diagnosis", sensitive_column="size_group")
    _same(first, second)
    data = first.dataset
    assert data.input_shape == (30,)  # neither the label nor the sensitive column is a feature
    assert "size_group" not in " ".join(data.feature_names)
    assert data.class_names == ("benign", "malignant")
    assert data.sensitive_name == "size_group"
    assert set(data.sensitive_train) == {"large", "small"}
    assert len(data.sensitive_train) == data.n_train and len(data.sensitive_val) == len(data.y_val)
    assert any("tab" in note for note in first.report.notes)
    # and as a feature when asked (hashed into buckets)
    with_feature = load_dataset(path, label_column="diagnosis", sensitive_column="size_group", sensitive_as_feature=True)
    assert with_feature.dataset.input_shape == (30 + HASH_BUCKETS,)
    assert f"size_group=#{HASH_BUCKETS - 1}" in with_feature.dataset.feature_names


def test_parquet_matches_csv(tmp_path):
    frame = cancer_frame()
    from_parquet = load_dataset(write_parquet(frame, tmp_path / "cancer.parquet"), label_column="diagnosis")
    again = load_dataset(tmp_path / "cancer.parquet", label_column="diagnosis")
    _same(from_parquet, again)
    from_csv = load_dataset(write_csv(frame, tmp_path / "cancer.csv"), label_column="diagnosis")
    np.testing.assert_allclose(from_parquet.dataset.x_train, from_csv.dataset.x_train, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(from_parquet.dataset.y_val, from_csv.dataset.y_val)
    assert from_parquet.report.source_format == "parquet"


def test_npz_images_equal_the_builtin_digits(tmp_path):
    images, labels = digits_images()
    path = tmp_path / "digits.npz"
    np.savez(path, x=images, y=labels)
    first = load_dataset(path, name="digits")
    second = load_dataset(path, name="digits")
    _same(first, second)
    builtin = builtin_dataset("digits")
    assert first.dataset.input_shape == (8, 8, 1) and first.dataset.is_image
    assert first.dataset.fingerprint == builtin.fingerprint  # same data, same split, same name


def test_npz_train_test_form_uses_test_as_validation(tmp_path):
    images, labels = digits_images()
    path = tmp_path / "split.npz"
    np.savez(path, x_train=(images[:1500] * 16).astype(np.uint8), y_train=labels[:1500],
             x_test=(images[1500:] * 16).astype(np.uint8), y_test=labels[1500:])  # fmt: skip
    prepared = load_dataset(path)
    assert prepared.dataset.n_train == 1500 and len(prepared.dataset.y_val) == 297
    np.testing.assert_array_equal(prepared.dataset.y_val, labels[1500:])
    assert prepared.report.validation == "the separate test data"
    assert prepared.dataset.x_train.max() <= 1.0  # uint8 pixels scaled by 1/255
    assert load_dataset(path).dataset.fingerprint == prepared.dataset.fingerprint


def test_npz_table_is_signed_log_and_string_labels(tmp_path):
    frame = cancer_frame()
    path = tmp_path / "cancer.npz"
    np.savez(path, x=frame.iloc[:, :30].to_numpy(), y=frame["diagnosis"].to_numpy().astype(str),
             group=frame["size_group"].to_numpy().astype(str))  # fmt: skip
    prepared = load_dataset(path, sensitive_column="group")
    data = prepared.dataset
    assert data.input_shape == (30,) and data.class_names == ("benign", "malignant")
    raw = frame.iloc[:, :30].to_numpy()
    np.testing.assert_allclose(data.x_train, signed_log(raw[prepared.train_rows]), rtol=1e-6)
    np.testing.assert_allclose(data.x_val, signed_log(raw[prepared.val_rows]), rtol=1e-6)
    assert data.preprocessing_epsilon == 0.0 and "signed log" in data.preprocessing_note
    assert data.sensitive_name == "group" and set(data.sensitive_val) == {"large", "small"}
    assert load_dataset(path, sensitive_column="group").dataset.fingerprint == data.fingerprint


def test_image_zip_of_digits(tmp_path):
    path = write_digits_zip(tmp_path / "digits.zip", per_class=12)
    first = load_dataset(path, image_size=(8, 8))
    second = load_dataset(("digits.zip", path.read_bytes()), image_size=(8, 8))
    _same(first, second)
    data = first.dataset
    assert data.input_shape == (8, 8, 1) and data.class_names == tuple(str(d) for d in range(10))
    assert data.n_train + len(data.y_val) == 120
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    # pixel values survive the PNG round trip (0..16 -> 0..255 -> [0, 1])
    images, labels = digits_images()
    first_zero = np.round(images[np.flatnonzero(labels == 0)[0]] * 255) / 255
    all_zeros = np.concatenate([data.x_train[data.y_train == 0], data.x_val[data.y_val == 0]])
    assert any(np.allclose(image[..., 0], first_zero, atol=1e-6) for image in all_zeros)
    resized = load_dataset(path, image_size=(16, 12)).dataset
    assert resized.input_shape == (16, 12, 1)


def test_image_zip_colour_jpeg_and_no_top_folder(tmp_path):
    rng = np.random.default_rng(0)
    members = {}
    for cls in ("cat", "dog"):
        for i in range(5):
            pixels = rng.integers(0, 255, size=(10, 14, 3), dtype=np.uint8)
            members[f"{cls}/{i}.jpg"] = png_bytes(pixels, mode="RGB", fmt="JPEG")
    members["cat/gray.png"] = png_bytes(np.zeros((6, 6), dtype=np.uint8))
    members["__MACOSX/cat/._0.jpg"] = b"mac metadata"
    members["dog/.DS_Store"] = b"finder"
    prepared = load_dataset(zip_of(tmp_path / "pets.zip", members), image_size=(8, 8), validation_fraction=0.3)
    assert prepared.dataset.input_shape == (8, 8, 3)
    assert prepared.dataset.class_names == ("cat", "dog")
    assert prepared.dataset.n_train + len(prepared.dataset.y_val) == 11
    assert any("ignored 2 system file" in note for note in prepared.report.notes)


def test_csv_semicolon_cp1252_with_categories_and_missing(tmp_path):
    text = "Größe;Farbe;Klasse\n1,5;rot;ja\n2,5;grün;nein\n;blau;ja\n4;rot;nein\n5;grün;ja\n6;rot;nein\n7;blau;ja\n8;?;nein\n"
    path = tmp_path / "farben.csv"
    path.write_bytes(text.encode("cp1252"))
    prepared = load_dataset(path, label_column="Klasse", validation_fraction=0.4)
    data = prepared.dataset
    sizes = np.concatenate([data.x_train[:, 0], data.x_val[:, 0]])
    assert np.float32(np.log1p(1.5)) in sizes and np.float32(np.log1p(2.5)) in sizes  # decimal commas
    assert data.feature_names == ("Größe", *(f"Farbe=#{b}" for b in range(HASH_BUCKETS)))
    assert prepared.report.categorical_columns == {"Farbe": HASH_BUCKETS}
    assert prepared.report.missing_values == {"Größe": 1, "Farbe": 1}
    assert prepared.report.imputed_values == {"Größe": 1, "Farbe": 1}
    declared = load_dataset(path, label_column="Klasse", validation_fraction=0.4,
                            schema={"categorical": {"Farbe": ["blau", "grün", "rot"]}}).dataset  # fmt: skip
    assert declared.feature_names == ("Größe", "Farbe=blau", "Farbe=grün", "Farbe=rot", "Farbe=(other)")
    assert any("Windows-1252" in note and "semicolon" in note for note in prepared.report.notes)
    dropped = load_dataset(path, label_column="Klasse", missing="drop", validation_fraction=0.4)
    assert dropped.report.rows_dropped_missing_features == 2
    assert dropped.dataset.n_train + len(dropped.dataset.y_val) == 6


def test_utf16_csv_and_pandas_index_column(tmp_path):
    frame = cancer_frame().iloc[:100, [0, 1, 30]]
    path = tmp_path / "small.csv"
    path.write_bytes(frame.to_csv(index=True).encode("utf-16"))
    prepared = load_dataset(path, label_column="diagnosis")
    assert prepared.dataset.input_shape == (2,)
    assert any("row number" in note for note in prepared.report.notes)


def test_separate_test_file(tmp_path):
    frame = cancer_frame()
    train = write_csv(frame.iloc[:400], tmp_path / "train.csv")
    test = write_csv(frame.iloc[400:], tmp_path / "test.csv")
    prepared = load_dataset(train, label_column="diagnosis", test_source=test)
    assert prepared.dataset.n_train == 400 and len(prepared.dataset.y_val) == 169
    np.testing.assert_array_equal(prepared.val_rows, np.arange(400, 569))
    assert prepared.report.validation == "the separate test data"


def test_rows_without_label_are_dropped_and_counted(tmp_path):
    frame = cancer_frame()
    frame.loc[[3, 10, 20], "diagnosis"] = None
    prepared = load_dataset(write_csv(frame, tmp_path / "c.csv"), label_column="diagnosis")
    assert prepared.report.rows_dropped_missing_label == 3
    assert prepared.dataset.n_train + len(prepared.dataset.y_val) == 566
    assert not ({3, 10, 20} & set(prepared.train_rows.tolist() + prepared.val_rows.tolist()))


def test_report_summary_and_dict(tmp_path):
    prepared = load_dataset(write_csv(cancer_frame(), tmp_path / "c.csv"), label_column="diagnosis")
    lines = prepared.report.summary()
    assert lines[0].startswith("c.csv (csv): 569 rows read")
    assert isinstance(prepared.report.to_dict()["class_counts_train"], dict)
    assert pd.Series(prepared.report.class_counts_train).sum() == prepared.dataset.n_train


@pytest.mark.parametrize("labels", [np.array([0.0, 1.0] * 20), np.array([True, False] * 20)])
def test_numeric_labels_as_classes(tmp_path, labels):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.arange(40, dtype=np.float32).reshape(40, 1), y=labels)
    data = load_dataset(path).dataset
    assert data.num_classes == 2


def test_describe_upload_for_each_format(tmp_path):
    from dptune.data import describe_upload

    table = describe_upload(("cancer.csv", cancer_frame().to_csv(index=False).encode()))
    assert table.format == "csv" and table.n_rows == 569 and "diagnosis" in table.columns
    assert table.suggested_label is None and len(table.preview) == 5
    digits = describe_upload(write_parquet(digits_frame(), tmp_path / "d.parquet"))
    assert digits.suggested_label == "label" and digits.format == "parquet"
    images, labels = digits_images()
    np.savez(tmp_path / "d.npz", x=images, y=labels)
    assert describe_upload(tmp_path / "d.npz").arrays == {"x": (1797, 8, 8), "y": (1797,)}
    folders = describe_upload(write_digits_zip(tmp_path / "d.zip", per_class=3))
    assert folders.format == "image_zip" and folders.classes == {str(d): 3 for d in range(10)}
