"""Preparation reads no private row to encode or place another (issue 8, items 3 and 4).

The unit of privacy is one row of the uploaded file. For neighbouring files (one row
removed, or one row added: a brand-new category, a huge outlier) the input width, every
other row's features and every other row's train/validation side must stay the same.
Each check is also run on a deliberately broken variant (a standardiser fitted on the
rows, a category list read from the rows, the permutation split used before) to show
that it can fail.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from data_files import cancer_frame, digits_images, png_bytes, zip_of

from dptune.data import Dataset, builtin_dataset, load_dataset, prepare_builtin
from dptune.data.prepare import PreparedData
from dptune.errors import DataError

Encoded = tuple[tuple[int, ...], dict[int, bytes]]
"""(input shape, {row key: the row's features as bytes})."""
Sides = dict[int, str]
"""{row key: "train" or "val"}."""


# ------------------------------------------------------------------ the checks


def _by_row(prepared: PreparedData, keys: list[int]) -> tuple[dict[int, bytes], Sides]:
    """Each prepared row's features and side, by the key of the row it came from (`keys[position]`)."""
    features, sides = {}, {}
    data = prepared.dataset
    for side, rows, x in (("train", prepared.train_rows, data.x_train), ("val", prepared.val_rows, data.x_val)):
        for position, row in zip(rows, x):
            features[keys[int(position)]] = row.tobytes()
            sides[keys[int(position)]] = side
    return features, sides


def neighbour_changes(encode: Callable[[pd.DataFrame], Encoded], frame: pd.DataFrame, neighbour: pd.DataFrame) -> tuple[bool, int]:
    """(input shape changed, number of rows present in both whose features changed) between
    encoding `frame` and its neighbour (one row more or less; rows keyed by the frame index)."""
    shape, rows = encode(frame)
    neighbour_shape, neighbour_rows = encode(neighbour)
    shared = set(rows) & set(neighbour_rows)
    return shape != neighbour_shape, sum(rows[key] != neighbour_rows[key] for key in shared)


def moved_by_removal(sides: Callable[[list[int]], Sides], n: int, removed: int) -> int:
    """How many rows other than `removed` change side when it is removed; `sides(kept)`
    prepares the rows `kept` (keys 0..n-1) and returns each one's side."""
    full = sides(list(range(n)))
    kept = [i for i in range(n) if i != removed]
    reduced = sides(kept)
    return sum(full[key] != reduced[key] for key in kept)


# ------------------------------------------------------------------ tables


def _table() -> pd.DataFrame:
    frame = cancer_frame().drop(columns=["size_group"]).iloc[:200].copy()
    frame["clinic"] = np.resize(["north", "south", "east"], len(frame))
    return frame


def _csv(frame: pd.DataFrame) -> tuple[str, bytes]:
    return "table.csv", frame.to_csv(index=False).encode()


def encode_table(frame: pd.DataFrame) -> Encoded:
    """The real load path: the frame written as CSV, read by dptune.data.load_dataset."""
    prepared = load_dataset(_csv(frame), label_column="diagnosis")
    features, _ = _by_row(prepared, list(frame.index))
    return prepared.dataset.input_shape, features


def encode_table_standardised(frame: pd.DataFrame) -> Encoded:
    """Broken on purpose: the numeric columns standardised with the training rows' mean and std."""
    prepared = load_dataset(_csv(frame), label_column="diagnosis")
    x_train, x_val = prepared.dataset.x_train.copy(), prepared.dataset.x_val.copy()
    mean, std = x_train[:, :30].mean(axis=0), x_train[:, :30].std(axis=0) + 1e-12
    x_train[:, :30], x_val[:, :30] = (x_train[:, :30] - mean) / std, (x_val[:, :30] - mean) / std
    fitted = Dataset(name="fitted", x_train=x_train, y_train=prepared.dataset.y_train, x_val=x_val,
                     y_val=prepared.dataset.y_val, class_names=prepared.dataset.class_names)  # fmt: skip
    features, _ = _by_row(PreparedData(fitted, prepared.report, None, prepared.train_rows, prepared.val_rows),
                          list(frame.index))  # fmt: skip
    return fitted.input_shape, features


def encode_table_one_hot_from_rows(frame: pd.DataFrame) -> Encoded:
    """Broken on purpose: the clinic column one-hot encoded on the categories found in the rows."""
    one_hot = pd.get_dummies(frame["clinic"], dtype=float).to_numpy()
    return one_hot.shape[1:], {key: row.tobytes() for key, row in zip(frame.index, one_hot)}


def _with_row(frame: pd.DataFrame, **changes) -> pd.DataFrame:
    row = frame.iloc[[0]].copy()
    for column, value in changes.items():
        row[column] = value
    row.index = [frame.index.max() + 1]
    return pd.concat([frame, row])


NEIGHBOURS = {
    "one row removed": lambda frame: frame.drop(index=frame.index[17]),
    "a row with a brand-new category": lambda frame: _with_row(frame, clinic="a clinic only this person attends"),
    "a row with a huge outlier": lambda frame: _with_row(frame, **{"mean radius": 1e12, "mean area": -1e9}),
    "a row with missing values": lambda frame: _with_row(frame, **{"mean radius": np.nan, "clinic": None}),
}


@pytest.mark.parametrize("neighbour", sorted(NEIGHBOURS))
def test_one_row_changes_neither_the_width_nor_any_other_rows_features(neighbour):
    frame = _table()
    assert neighbour_changes(encode_table, frame, NEIGHBOURS[neighbour](frame)) == (False, 0)


def test_the_feature_check_fails_for_a_fitted_standardiser_and_a_category_list_from_the_rows():
    frame = _table()
    outlier = NEIGHBOURS["a row with a huge outlier"](frame)
    shape_changed, changed = neighbour_changes(encode_table_standardised, frame, outlier)
    assert changed > 0.9 * len(frame)  # one outlier moved (nearly) every other row's standardised values
    new_category = NEIGHBOURS["a row with a brand-new category"](frame)
    shape_changed, changed = neighbour_changes(encode_table_one_hot_from_rows, frame, new_category)
    assert shape_changed  # the new category added an input column: the model's shape reveals the row


def test_preprocessing_costs_nothing_and_is_recorded(tmp_path):
    prepared = load_dataset(_csv(_table()), label_column="diagnosis")
    data = prepared.dataset
    assert (data.preprocessing_epsilon, data.preprocessing_delta) == (0.0, 0.0)
    assert "nothing fitted on the rows (ε = 0)" in data.preprocessing_note
    assert "read from the data and is treated as public" in data.preprocessing_note  # the schema was inferred
    loaded = Dataset.load(data.save(tmp_path).stem, tmp_path)
    assert (loaded.preprocessing_epsilon, loaded.preprocessing_delta, loaded.preprocessing_note) == (
        0.0, 0.0, data.preprocessing_note)  # fmt: skip
    for name in ("digits", "breast_cancer", "synthetic"):
        builtin = builtin_dataset(name, **({"n_examples": 300} if name == "synthetic" else {}))
        assert builtin.preprocessing_epsilon == 0.0 and "the schema was declared (public)" in builtin.preprocessing_note


# ------------------------------------------------------------------ the split


def _table_sides(frame: pd.DataFrame) -> Callable[[list[int]], Sides]:
    def sides(kept: list[int]) -> Sides:
        prepared = load_dataset(_csv(frame.iloc[kept]), label_column="diagnosis")
        return _by_row(prepared, kept)[1]

    return sides


def _image_members(per_class: int = 8) -> list[tuple[str, bytes]]:
    images, labels = digits_images()
    members = []
    for digit in range(10):
        for i, index in enumerate(np.flatnonzero(labels == digit)[:per_class]):
            members.append((f"digits/{digit}/{i:03d}.png", png_bytes(np.round(images[index] * 255).astype(np.uint8))))
    return sorted(members)


def _image_sides(tmp_path, members: list[tuple[str, bytes]]) -> Callable[[list[int]], Sides]:
    def sides(kept: list[int]) -> Sides:
        path = zip_of(tmp_path / "digits.zip", dict(members[i] for i in kept))  # members sorted: position = order kept
        return _by_row(load_dataset(path, image_size=(8, 8)), kept)[1]

    return sides


def permutation_split_sides(labels: np.ndarray) -> Callable[[list[int]], Sides]:
    """Broken on purpose: the split before issue 8, a seeded permutation of each class's rows."""

    def sides(kept: list[int]) -> Sides:
        codes = labels[kept]
        rng = np.random.default_rng(0)
        validation = set()
        for cls in np.unique(codes):
            members = np.flatnonzero(codes == cls)
            members = members[rng.permutation(len(members))]
            validation |= set(members[: min(int(round(len(members) * 0.2)), len(members) - 1)].tolist())
        return {key: "val" if position in validation else "train" for position, key in enumerate(kept)}

    return sides


REMOVED = (0, 3, 17, 42, 99, 150, 199)


def test_removing_a_row_moves_no_other_row_across_the_split_csv():
    frame = _table()
    sides = _table_sides(frame)
    assert [moved_by_removal(sides, len(frame), removed) for removed in REMOVED] == [0] * len(REMOVED)


def test_removing_an_image_moves_no_other_image_across_the_split(tmp_path):
    members = _image_members()
    sides = _image_sides(tmp_path, members)
    assert [moved_by_removal(sides, len(members), removed) for removed in (0, 11, 40, 79)] == [0] * 4


def test_the_split_check_fails_for_the_old_permutation_split():
    labels = _table()["diagnosis"].to_numpy()
    moved = [moved_by_removal(permutation_split_sides(labels), len(labels), removed) for removed in REMOVED]
    assert max(moved) > 5  # one removed row moved many others across the split


def test_identical_rows_share_a_side_and_the_seed_keys_the_split():
    frame = _table()
    doubled = pd.concat([frame, frame], ignore_index=True)
    sides = _by_row(load_dataset(_csv(doubled), label_column="diagnosis"), list(doubled.index))[1]
    assert all(sides[i] == sides[i + len(frame)] for i in range(len(frame)))
    first = load_dataset(_csv(frame), label_column="diagnosis", seed=0)
    second = load_dataset(_csv(frame), label_column="diagnosis", seed=1)
    assert not np.array_equal(first.val_rows, second.val_rows)


# ------------------------------------------------------------------ images and arrays


def test_a_colour_image_does_not_change_the_others_with_declared_channels(tmp_path):
    members = dict(_image_members(per_class=4))
    colour = dict(members)
    colour["digits/3/zzz.png"] = png_bytes(np.full((8, 8, 3), (200, 30, 30), dtype=np.uint8), mode="RGB")
    gray = load_dataset(zip_of(tmp_path / "g.zip", members), image_size=(8, 8), channels=1)
    mixed = load_dataset(zip_of(tmp_path / "c.zip", colour), image_size=(8, 8), channels=1)
    assert gray.dataset.input_shape == mixed.dataset.input_shape == (8, 8, 1)
    keys = sorted(members)
    gray_rows = _by_row(gray, keys)
    mixed_rows = _by_row(mixed, sorted(colour))
    assert all(mixed_rows[0][k] == gray_rows[0][k] and mixed_rows[1][k] == gray_rows[1][k] for k in keys)
    assert "channel count" not in gray.dataset.preprocessing_note
    inferred = load_dataset(zip_of(tmp_path / "c.zip", colour), image_size=(8, 8))
    assert inferred.dataset.input_shape == (8, 8, 3)  # undeclared, the channel count is read from the data
    assert "the channel count" in inferred.dataset.preprocessing_note


def test_integer_images_are_scaled_by_their_type_never_by_their_values():
    images = (digits_images()[0][:60] * 16).astype(np.int64)  # 0..16 as int64
    labels = np.arange(60) % 3
    buffer = io.BytesIO()
    np.savez(buffer, x=images, y=labels)
    prepared = load_dataset(("small.npz", buffer.getvalue()))
    np.testing.assert_allclose(prepared.dataset.x_train[..., 0], images[prepared.train_rows] / 255.0, rtol=1e-6)
    bright = images.copy()
    bright[0, 0, 0] = 300  # one row outside 0..255 would have changed every row's scale: refused instead
    buffer = io.BytesIO()
    np.savez(buffer, x=bright, y=labels)
    with pytest.raises(DataError, match="outside 0-255"):
        load_dataset(("bright.npz", buffer.getvalue()))


def test_builtin_digits_still_prepared_the_same_way():
    prepared = prepare_builtin("digits")
    assert prepared.dataset.x_train.max() == 1.0 and prepared.dataset.preprocessing_epsilon == 0.0
    assert prepared.report.validation.startswith("20% expected")
