"""Determinism, no leakage from the validation split, the workspace, and the built-in datasets."""

from __future__ import annotations

import os

import numpy as np
import pytest
from data_files import cancer_frame, write_csv, write_digits_zip, zip_of

from dptune.data import (
    BUILTIN_DATASETS,
    Dataset,
    builtin_dataset,
    load_dataset,
    prepare_builtin,
    store,
)
from dptune.errors import DataError
from dptune.labels import stratified_split


def _cancer_with_mess(tmp_path, frame=None):
    """Breast cancer with a categorical column and missing values, written as CSV."""
    frame = cancer_frame() if frame is None else frame
    frame = frame.copy()
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
    assert a.encoder.means == b.encoder.means and a.encoder.scales == b.encoder.scales
    assert a.encoder.fill_values == b.encoder.fill_values and a.encoder.categories == b.encoder.categories
    other = load_dataset(path, label_column="diagnosis", seed=4)
    assert not np.array_equal(other.train_rows, a.train_rows)
    assert other.dataset.fingerprint != a.dataset.fingerprint


def test_split_is_stratified_and_disjoint(tmp_path):
    path, frame = _cancer_with_mess(tmp_path)
    prepared = load_dataset(path, label_column="diagnosis", validation_fraction=0.25)
    train, val = prepared.train_rows, prepared.val_rows
    assert not set(train) & set(val) and len(train) + len(val) == len(frame)
    malignant = (frame["diagnosis"] == "malignant").to_numpy()
    assert abs(malignant[val].mean() - malignant.mean()) < 0.01
    assert len(val) == pytest.approx(0.25 * len(frame), abs=2)
    assert prepared.report.class_counts_val == {"benign": int((~malignant[val]).sum()), "malignant": int(malignant[val].sum())}


def test_stratified_split_keeps_a_rare_class_in_training():
    labels = np.array([0] * 50 + [1] * 50 + [2])
    train, val = stratified_split(labels, 0.2, seed=0)
    assert 100 in train and len(val) == 20
    np.testing.assert_array_equal(stratified_split(labels, 0.2, seed=0)[1], val)


def test_builtins_are_deterministic():
    for name in BUILTIN_DATASETS:
        params = {"n_examples": 300} if name == "synthetic" else {}
        assert builtin_dataset(name, **params).fingerprint == builtin_dataset(name, **params).fingerprint
    assert builtin_dataset("digits", seed=1).fingerprint != builtin_dataset("digits").fingerprint


# ------------------------------------------------------------------ no leakage


def test_fitted_statistics_come_from_training_rows_only(tmp_path):
    path, frame = _cancer_with_mess(tmp_path)
    prepared = load_dataset(path, label_column="diagnosis")
    encoder, train = prepared.encoder, prepared.train_rows
    radius = frame["mean radius"].to_numpy()[train]
    median = np.nanmedian(radius)
    assert encoder.fill_values["mean radius"] == pytest.approx(median)
    filled = np.where(np.isnan(radius), median, radius)
    assert encoder.means["mean radius"] == pytest.approx(filled.mean())
    assert encoder.scales["mean radius"] == pytest.approx(filled.std())
    texture = frame["mean texture"].to_numpy()[train]
    assert encoder.means["mean texture"] == pytest.approx(texture.mean())
    clinics = frame["clinic"].iloc[train].value_counts()
    assert encoder.fill_values["clinic"] == min(clinics[clinics == clinics.max()].index)  # ties: first by name
    # the transformed training features are exactly standardised on the training rows
    np.testing.assert_allclose(prepared.dataset.x_train[:, :30].mean(axis=0), 0, atol=1e-5)
    assert abs(prepared.dataset.x_val[:, 0].mean()) > 1e-4  # the validation rows were not used


def test_changing_validation_rows_changes_nothing_fitted(tmp_path):
    path, frame = _cancer_with_mess(tmp_path)
    base = load_dataset(path, label_column="diagnosis")
    changed = frame.copy()
    val = base.val_rows
    changed.loc[val, "mean radius"] = 1e6  # absurd values
    changed.loc[val[::2], "mean texture"] = np.nan  # more missing values
    changed.loc[val, "clinic"] = "brand-new clinic"  # a category only validation has
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = load_dataset(write_csv(changed, other_dir / "cancer.csv"), label_column="diagnosis")
    np.testing.assert_array_equal(other.train_rows, base.train_rows)
    np.testing.assert_array_equal(other.dataset.x_train, base.dataset.x_train)
    assert other.encoder.means == base.encoder.means and other.encoder.scales == base.encoder.scales
    assert other.encoder.fill_values == base.encoder.fill_values
    assert other.encoder.categories == base.encoder.categories
    assert other.dataset.feature_names == base.dataset.feature_names
    # the unseen category encodes as all zeros in validation
    clinic_columns = [i for i, n in enumerate(other.dataset.feature_names) if n.startswith("clinic=")]
    assert not other.dataset.x_val[:, clinic_columns].any()


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
    with_sensitive = load_dataset(write_csv(cancer_frame(), tmp_path / "c.csv"), label_column="diagnosis",
                                  sensitive_column="size_group").dataset  # fmt: skip
    back = Dataset.load(store(with_sensitive, workspace).stem, workspace)
    assert back.fingerprint == with_sensitive.fingerprint
    np.testing.assert_array_equal(back.sensitive_val, with_sensitive.sensitive_val)


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


def test_builtin_breast_cancer_is_standardised_binary_table():
    cancer = builtin_dataset("breast_cancer")
    assert cancer.input_shape == (30,) and cancer.class_names == ("benign", "malignant")
    np.testing.assert_allclose(cancer.x_train.mean(axis=0), 0, atol=1e-5)


def test_builtin_synthetic_parameters():
    data = builtin_dataset("synthetic", n_examples=500, n_features=12, n_classes=4, separability=2.0, seed=1)
    assert data.input_shape == (12,) and data.num_classes == 4 and data.n_train == 400
    images = builtin_dataset("synthetic", n_examples=200, image_shape=(6, 6, 1), n_classes=3)
    assert images.is_image and images.input_shape == (6, 6, 1)
    easy = builtin_dataset("synthetic", n_examples=400, separability=5.0)
    from sklearn.linear_model import LogisticRegression

    score = LogisticRegression().fit(easy.x_train, easy.y_train).score(easy.x_val, easy.y_val)
    assert score > 0.95
