"""Determinism, the fixed (unfitted) encodings, the workspace, and the built-in datasets."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pandas as pd
import pytest
from data_files import cancer_frame, write_csv, write_digits_zip, zip_of

from dptune.data import (
    BUILTIN_DATASETS,
    HASH_BUCKETS,
    Dataset,
    builtin_dataset,
    load_dataset,
    prepare_builtin,
    store,
)
from dptune.data.dataset import LEGACY_PREPROCESSING_NOTE
from dptune.data.encoding import hash_bucket, signed_log
from dptune.data.labels import in_validation, table_row_digests
from dptune.errors import DataError


def _cancer_with_mess(tmp_path, frame=None):
    """Breast cancer with a categorical column and missing values, written as CSV."""
    frame = cancer_frame() if frame is None else frame
    frame = frame.drop(columns=["size_group"])
    frame["clinic"] = np.resize(["north", "south", "east"], len(frame))
    frame.loc[::7, "mean radius"] = np.nan
    frame.loc[::11, "clinic"] = None
    return write_csv(frame, tmp_path / "cancer.csv"), frame


# ------------------------------------------------------------------ determinism


def test_split_and_transforms_are_deterministic_for_a_seed(tmp_path):
    path, _ = _cancer_with_mess(tmp_path)
    a = load_dataset(path, label_column="diagnosis", seed=3)
    b = load_dataset(path, label_column="diagnosis", seed=3)
    assert a.dataset.fingerprint == b.dataset.fingerprint
    np.testing.assert_array_equal(a.train_rows, b.train_rows)
    assert a.encoder == b.encoder
    other = load_dataset(path, label_column="diagnosis", seed=4)
    assert not np.array_equal(other.train_rows, a.train_rows)
    assert other.dataset.fingerprint != a.dataset.fingerprint
    assert other.encoder == a.encoder  # the seed keys the split only


def test_split_is_disjoint_and_about_the_fraction_in_every_class(tmp_path):
    path, frame = _cancer_with_mess(tmp_path)
    prepared = load_dataset(path, label_column="diagnosis", validation_fraction=0.25)
    train, val = prepared.train_rows, prepared.val_rows
    assert not set(train) & set(val) and len(train) + len(val) == len(frame)
    malignant = (frame["diagnosis"] == "malignant").to_numpy()
    assert abs(malignant[val].mean() - malignant.mean()) < 0.06  # each row independently: stratified in expectation
    assert len(val) == pytest.approx(0.25 * len(frame), abs=31)  # within 3 standard deviations of Binomial(569, 0.25)
    assert prepared.report.class_counts_val == {"benign": int((~malignant[val]).sum()), "malignant": int(malignant[val].sum())}


def test_a_rare_class_whose_rows_all_fall_in_validation_is_reported(tmp_path):
    rows = [f"{i},{i % 2}" for i in range(60)]
    rare = next(f"{v},rare" for v in range(1000) if in_validation(table_row_digests(_frame_of(f"{v},rare")), 0.2, 0)[0])
    (tmp_path / "r.csv").write_text("a,label\n" + "\n".join(rows + [rare]) + "\n")
    prepared = load_dataset(tmp_path / "r.csv", label_column="label")
    assert "rare" in prepared.dataset.class_names and prepared.report.class_counts_train["rare"] == 0
    assert any("'rare'" in note and "no training example" in note for note in prepared.report.notes)


def _frame_of(row: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO("a,label\n" + row + "\n"))


def test_builtins_are_deterministic():
    for name in BUILTIN_DATASETS:
        params = {"n_examples": 300} if name == "synthetic" else {}
        assert builtin_dataset(name, **params).fingerprint == builtin_dataset(name, **params).fingerprint
    assert builtin_dataset("digits", seed=1).fingerprint != builtin_dataset("digits").fingerprint


# ------------------------------------------------------------------ nothing fitted


def test_features_are_a_fixed_encoding_of_each_row(tmp_path):
    path, frame = _cancer_with_mess(tmp_path)
    prepared = load_dataset(path, label_column="diagnosis")
    data, train, val = prepared.dataset, prepared.train_rows, prepared.val_rows
    assert data.feature_names[:30] == tuple(frame.columns[:30])
    numbers = frame.iloc[:, :30].to_numpy()
    expected = signed_log(np.nan_to_num(numbers, nan=0.0))  # a missing value is 0
    np.testing.assert_allclose(data.x_train[:, :30], expected[train], rtol=1e-6)
    np.testing.assert_allclose(data.x_val[:, :30], expected[val], rtol=1e-6)
    assert data.feature_names[30:] == tuple(f"clinic=#{b}" for b in range(HASH_BUCKETS))
    clinics = frame["clinic"].to_numpy()
    for x, rows in ((data.x_train, train), (data.x_val, val)):
        for features, clinic in zip(x[:, 30:], clinics[rows]):
            if clinic is None or clinic != clinic:
                assert not features.any()  # a missing category sets no bucket
            else:
                assert features.sum() == 1 and features[hash_bucket("clinic", clinic, HASH_BUCKETS)] == 1
    assert data.preprocessing_epsilon == 0.0 and data.preprocessing_delta == 0.0
    assert "hashed into 16 buckets" in data.preprocessing_note and "read from the data" in data.preprocessing_note


def test_declared_schema_ranges_categories_and_classes(tmp_path):
    path, frame = _cancer_with_mess(tmp_path)
    schema = {
        "numeric": {"mean radius": [0, 40], **{c: None for c in frame.columns[1:30]}},
        "categorical": {"clinic": ["north", "south"]},
        "classes": ["malignant", "benign"],
    }
    prepared = load_dataset(path, label_column="diagnosis", schema=schema)
    data = prepared.dataset
    assert data.class_names == ("malignant", "benign")  # the declared order
    radius = frame["mean radius"].to_numpy()
    expected = np.where(np.isnan(radius), 0.0, np.clip(radius, 0, 40) / 20 - 1)
    np.testing.assert_allclose(data.x_train[:, 0], expected[prepared.train_rows], rtol=1e-6, atol=1e-7)
    assert data.feature_names[30:] == ("clinic=north", "clinic=south", "clinic=(other)")
    east = frame["clinic"].to_numpy()[prepared.train_rows] == "east"
    assert (data.x_train[east, 32] == 1).all() and not data.x_train[east, 30:32].any()
    assert data.preprocessing_note.endswith("the schema was declared (public)")
    with pytest.raises(DataError, match="classes that the declared class list does not have"):
        load_dataset(path, label_column="diagnosis", schema={"classes": ["benign", "other"]})
    with pytest.raises(DataError, match="declares the column 'mean radios'.*did you mean 'mean radius'"):
        load_dataset(path, label_column="diagnosis", schema={"numeric": {"mean radios": None}})
    with pytest.raises(DataError, match="lower < upper"):
        load_dataset(path, label_column="diagnosis", schema={"numeric": {"mean radius": [5, 5]}})


def test_changing_some_rows_changes_nothing_else(tmp_path):
    path, frame = _cancer_with_mess(tmp_path)
    base = load_dataset(path, label_column="diagnosis")
    changed = frame.copy()
    touched = base.val_rows[::2]
    changed.loc[touched, "mean radius"] = 1e6  # absurd values
    changed.loc[touched, "mean texture"] = np.nan  # more missing values
    changed.loc[touched, "clinic"] = "brand-new clinic"  # a category nobody else has
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = load_dataset(write_csv(changed, other_dir / "cancer.csv"), label_column="diagnosis")
    assert other.dataset.feature_names == base.dataset.feature_names
    assert other.encoder == base.encoder
    for prepared in (base, other):  # the untouched rows: same side, same features
        assert set(prepared.train_rows) - set(touched) == set(base.train_rows) - set(touched)
    keep_base, keep_other = ~np.isin(base.train_rows, touched), ~np.isin(other.train_rows, touched)
    np.testing.assert_array_equal(other.dataset.x_train[keep_other], base.dataset.x_train[keep_base])


def test_drop_missing_happens_per_row_without_statistics(tmp_path):
    path, frame = _cancer_with_mess(tmp_path)
    prepared = load_dataset(path, label_column="diagnosis", missing="drop")
    complete = frame[["mean radius", "clinic"]].notna().all(axis=1).to_numpy()
    assert prepared.report.rows_dropped_missing_features == int((~complete).sum())
    assert set(prepared.train_rows) | set(prepared.val_rows) == set(np.flatnonzero(complete))
    assert prepared.report.imputed_values == {}
    assert prepared.report.missing_values == {"mean radius": 82, "clinic": 52}


def test_images_are_not_fitted_at_all(tmp_path):
    prepared = load_dataset(write_digits_zip(tmp_path / "d.zip", per_class=6), image_size=(8, 8))
    assert prepared.encoder is None
    assert prepared.dataset.preprocessing_epsilon == 0.0
    assert "divided by 255" in prepared.dataset.preprocessing_note
    assert "the channel count and the class list" in prepared.dataset.preprocessing_note


# ------------------------------------------------------------------ workspace


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_store_saves_once_and_loads_back(tmp_path):
    workspace = tmp_path / "dptune-data"
    digits = builtin_dataset("digits")
    path = store(digits, workspace)
    assert path == workspace / f"{digits.fingerprint}.npz"
    before = _snapshot(workspace)
    assert store(builtin_dataset("digits"), workspace) == path  # same content: kept as is
    assert _snapshot(workspace) == before
    loaded = Dataset.load(digits.fingerprint, workspace)
    np.testing.assert_array_equal(loaded.x_train, digits.x_train)
    assert loaded.class_names == digits.class_names
    assert (loaded.preprocessing_epsilon, loaded.preprocessing_delta, loaded.preprocessing_note) == (
        0.0, 0.0, digits.preprocessing_note)  # fmt: skip
    with_sensitive = load_dataset(write_csv(cancer_frame(), tmp_path / "c.csv"), label_column="diagnosis",
                                  sensitive_column="size_group").dataset  # fmt: skip
    back = Dataset.load(store(with_sensitive, workspace).stem, workspace)
    assert back.fingerprint == with_sensitive.fingerprint
    np.testing.assert_array_equal(back.sensitive_val, with_sensitive.sensitive_val)


def test_a_file_stored_before_the_preprocessing_record_loads_with_infinite_epsilon(tmp_path):
    digits = builtin_dataset("digits")
    old_metadata = {"name": digits.name, "class_names": list(digits.class_names),
                    "feature_names": list(digits.feature_names), "sensitive_name": None}  # fmt: skip
    meta = np.frombuffer(json.dumps(old_metadata).encode(), dtype=np.uint8)
    np.savez(tmp_path / f"{digits.fingerprint}.npz", metadata=meta, x_train=digits.x_train, y_train=digits.y_train,
             x_val=digits.x_val, y_val=digits.y_val)  # fmt: skip
    old = Dataset.load(digits.fingerprint, tmp_path)
    assert old.fingerprint == digits.fingerprint  # the record is not fingerprinted: old files keep their name
    assert old.preprocessing_epsilon == float("inf") and old.preprocessing_note == LEGACY_PREPROCESSING_NOTE
    assert "older version" in old.preprocessing_note and "again" in old.preprocessing_note


def test_failed_uploads_leave_the_workspace_untouched(tmp_path):
    workspace = tmp_path / "dptune-data"
    store(builtin_dataset("digits"), workspace)
    store(builtin_dataset("breast_cancer"), workspace)
    (workspace / "notes.txt").write_text("the user's own file")
    before = _snapshot(workspace)
    bad_uploads = [
        ("empty.csv", b""),
        ("digits.csv", b"0,1,2\n3,4,5\n"),
        ("x.npz", b"PK\x03\x04garbage"),
        ("evil.zip", zip_of(tmp_path / "evil.zip", {"a/1.png": b"x", "../../dptune-data/notes.txt": b"overwritten"}).read_bytes()),
    ]
    for upload in bad_uploads:
        with pytest.raises(DataError):
            load_dataset(upload, label_column="label")
    with pytest.raises(DataError):
        load_dataset(workspace / "notes.txt")
    assert _snapshot(workspace) == before


def test_failed_save_keeps_existing_files_and_leaves_no_temporary(tmp_path, monkeypatch):
    workspace = tmp_path / "ws"
    store(builtin_dataset("digits"), workspace)
    before = _snapshot(workspace)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(DataError, match="cannot save the dataset into the workspace .* No space left on device"):
        store(builtin_dataset("breast_cancer"), workspace)
    assert _snapshot(workspace) == before  # no partial or temporary file


def test_load_refuses_a_bad_fingerprint_or_a_tampered_file(tmp_path):
    workspace = tmp_path / "ws"
    digits = builtin_dataset("digits")
    path = store(digits, workspace)
    with pytest.raises(DataError, match="not a dataset fingerprint"):
        Dataset.load("../../etc/passwd", workspace)
    with pytest.raises(DataError, match="is not in the workspace"):
        Dataset.load("0" * 64, workspace)
    other = builtin_dataset("digits", seed=1)
    os.replace(store(other, workspace), path)  # content no longer matches the name
    with pytest.raises(DataError, match="no longer matches its fingerprint"):
        Dataset.load(digits.fingerprint, workspace)
    path.write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot be read"):
        Dataset.load(digits.fingerprint, workspace)


# ------------------------------------------------------------------ built-ins


def test_builtin_digits_are_8x8x1_images_in_unit_range():
    prepared = prepare_builtin("digits")
    digits = prepared.dataset
    assert digits.name == "digits" and digits.is_image and digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10 and digits.n_train + len(digits.y_val) == 1797
    assert digits.x_train.min() == 0.0 and digits.x_train.max() == 1.0
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int32
    assert len(prepared.report.summary()) >= 2


def test_builtin_breast_cancer_is_a_signed_log_binary_table():
    prepared = prepare_builtin("breast_cancer")
    cancer = prepared.dataset
    assert cancer.input_shape == (30,) and cancer.class_names == ("benign", "malignant")
    raw = cancer_frame().iloc[:, :30].to_numpy()
    np.testing.assert_allclose(cancer.x_train, signed_log(raw[prepared.train_rows]), rtol=1e-6)
    assert cancer.preprocessing_epsilon == 0.0 and "declared" in cancer.preprocessing_note


def test_builtin_synthetic_parameters():
    data = builtin_dataset("synthetic", n_examples=500, n_features=12, n_classes=4, separability=2.0, seed=1)
    assert data.input_shape == (12,) and data.num_classes == 4 and data.n_train == pytest.approx(400, abs=27)
    images = builtin_dataset("synthetic", n_examples=200, image_shape=(6, 6, 1), n_classes=3)
    assert images.is_image and images.input_shape == (6, 6, 1)
    easy = builtin_dataset("synthetic", n_examples=400, separability=5.0)
    from sklearn.linear_model import LogisticRegression

    score = LogisticRegression().fit(easy.x_train, easy.y_train).score(easy.x_val, easy.y_val)
    assert score > 0.95


def test_builtin_synthetic_with_a_minority_that_a_majority_model_serves_worse():
    """minority_share adds the sensitive attribute `group` (about that share of the rows, in
    both splits) and a real disparate impact: a model fitted on the data serves the rotated
    minority worse. Without it the dataset (and its fingerprint) is unchanged."""
    from sklearn.linear_model import LogisticRegression

    data = builtin_dataset("synthetic", n_examples=4000, minority_share=0.1)
    assert data.sensitive_name == "group" and set(data.sensitive_val) == {"majority", "minority"}
    share = np.mean(np.concatenate([data.sensitive_train, data.sensitive_val]) == "minority")
    assert share == pytest.approx(0.1, abs=0.02)
    model = LogisticRegression().fit(data.x_train, data.y_train)
    correct = model.predict(data.x_val) == data.y_val
    minority = data.sensitive_val == "minority"
    assert correct[~minority].mean() - correct[minority].mean() > 0.05
    plain = builtin_dataset("synthetic", n_examples=4000)
    assert plain.sensitive_val is None and plain.fingerprint != data.fingerprint
    assert builtin_dataset("synthetic", n_examples=4000).fingerprint == plain.fingerprint


def test_a_stored_dataset_loads_without_hashing_again_and_a_damaged_one_is_refused(tmp_path, monkeypatch):
    """The SHA-256 is computed when the dataset is prepared and stored in the file; loading
    compares it with the name, and the zip's CRC-32 still refuses a damaged array."""
    workspace = tmp_path / "ws"
    digits = builtin_dataset("digits")
    path = store(digits, workspace)

    def no_hashing(self):
        raise AssertionError("the fingerprint was computed again")

    monkeypatch.setattr(Dataset, "_compute_fingerprint", no_hashing)
    loaded = Dataset.load(digits.fingerprint, workspace)
    assert loaded.fingerprint == digits.fingerprint
    np.testing.assert_array_equal(loaded.x_train, digits.x_train)
    monkeypatch.undo()
    # the stored value is the one a fresh hash of the loaded arrays gives
    assert loaded._compute_fingerprint() == digits.fingerprint
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # inside x_train's bytes
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match="cannot be read .*CRC"):
        Dataset.load(digits.fingerprint, workspace)
