"""Class labels: turning a label column into class indices, and the stratified split.

Class names come from the labels' values (sorted: numerically when they are numbers);
the split is stratified and depends only on the labels and the seed.
"""

from __future__ import annotations

import numbers

import numpy as np

from dptune.errors import DataError

MAX_CLASSES = 100
"""Most classes a label may have (more usually means a continuous value or an identifier)."""


def is_missing(values: np.ndarray) -> np.ndarray:
    """Boolean mask of missing entries (None, NaN, pandas NA) in a 1-D array of any dtype."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind in "biuUS":
        return np.zeros(len(values), dtype=bool)
    import pandas as pd

    return np.asarray(pd.isna(values), dtype=bool)


def encode_labels(
    values: np.ndarray, *, max_classes: int = MAX_CLASSES, column: str = "label"
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map label values to class indices 0..k-1; returns (indices int32, class names).

    `values` must hold no missing entries (drop those rows first). Raises DataError when
    there is only one class, more than `max_classes` classes, or the labels are
    non-integer numbers (a regression target, not classes).
    """
    values = np.asarray(values)
    if values.ndim != 1:
        raise DataError(f"the {column} must be one value per example, got an array of shape {values.shape}")
    if len(values) == 0:
        raise DataError(f"the {column} has no values; the file holds no labelled examples")
    keys = _normalise(values, column)
    unique = sorted(set(keys), key=_sort_key)
    if len(unique) > max_classes:
        raise DataError(
            f"the {column} has {len(unique):,} different values, more than the limit of {max_classes} classes; "
            "dptune trains classifiers: pick the column that holds the class, or group the values into fewer "
            "classes (or raise the class limit)"
        )
    if len(unique) < 2:
        only = unique[0] if unique else "none"
        raise DataError(
            f"the {column} has only one class ({only!r}); a classifier needs examples of at least two classes: "
            "check that you picked the right label column and that the file holds every class"
        )
    index = {key: i for i, key in enumerate(unique)}
    codes = np.fromiter((index[key] for key in keys), dtype=np.int32, count=len(keys))
    return codes, tuple(_name(key) for key in unique)


def encode_with_classes(values: np.ndarray, class_names: tuple[str, ...], *, column: str, where: str) -> np.ndarray:
    """Map labels of a second file (a test set) onto already known class names."""
    keys = _normalise(np.asarray(values), column)
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({_name(key) for key in keys} - set(index))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise DataError(
            f"the {column} in {where} has classes that the training data does not have ({shown}); "
            "both files must use the same class values"
        )
    return np.fromiter((index[_name(key)] for key in keys), dtype=np.int32, count=len(keys))


def _normalise(values: np.ndarray, column: str) -> list:
    """Labels as hashable Python values: integral numbers become int, everything else str."""
    if values.dtype.kind == "b":
        return [bool(v) for v in values]
    if values.dtype.kind in "iu":
        return [int(v) for v in values]
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)):
            raise DataError(f"the {column} contains missing or infinite values; remove those rows")
        if not np.all(values == np.round(values)):
            example = values[values != np.round(values)][0]
            raise DataError(
                f"the {column} holds non-integer numbers (e.g. {example:g}); dptune trains classifiers, so the "
                "label must name classes: pick the class column, or bin the values into classes first"
            )
        return [int(v) for v in values]
    out = []
    for value in values:
        if isinstance(value, (bool, np.bool_)):
            out.append(bool(value))
        elif isinstance(value, numbers.Integral):
            out.append(int(value))
        elif isinstance(value, numbers.Real) and float(value).is_integer():
            out.append(int(value))
        else:
            out.append(str(value).strip())
    return out


def _sort_key(key) -> tuple:
    if isinstance(key, bool):
        return (0, int(key), "")
    if isinstance(key, int):
        return (0, key, "")
    return (1, 0, str(key))


def _name(key) -> str:
    return str(key)


def stratified_split(
    labels: np.ndarray, validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), each sorted, stratified by class, fixed by `seed`.

    Every class with n examples puts round(n * validation_fraction) of them in validation,
    but always keeps at least one in training. Depends only on the labels and the seed.
    """
    if not 0 < validation_fraction < 1:
        raise DataError(f"the validation fraction must be between 0 and 1 (exclusive), got {validation_fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train_parts, val_parts = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(len(members))]
        n_val = min(int(round(len(members) * validation_fraction)), len(members) - 1)
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    train = np.sort(np.concatenate(train_parts))
    val = np.sort(np.concatenate(val_parts))
    if len(val) == 0:
        raise DataError(
            f"with {len(labels)} examples and a validation fraction of {validation_fraction}, the validation "
            "split would be empty; use more examples, a larger validation fraction, or a separate test file"
        )
    return train, val
