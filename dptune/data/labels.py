"""Class labels and the train/validation split.

Class names come from the labels' values (sorted: numerically when they are numbers), or
from a class list the user declares publicly.

The unit of privacy is one row of the uploaded file (one example). Whether a row goes to
the training or the validation split is decided by a keyed hash of that row's own content
(every value of the row, its label included) compared with the validation fraction, so it
depends on that row alone: adding, removing or changing any other row never moves it.
Identical rows land on the same side. The key is the public seed.
"""

from __future__ import annotations

import hashlib
import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dptune.errors import DataError

MAX_CLASSES = 100
"""Most classes a label may have (more usually means a continuous value or an identifier)."""

SPLIT_HASH_TAG = b"dptune-split-v1\x00"
"""Prefix of every split hash input (domain separation from other hashes of the same bytes)."""
MISSING_CELL = "\x00"
"""How a missing value appears in a table row's canonical text."""
CELL_SEPARATOR = "\x1f"


def is_missing(values: np.ndarray) -> np.ndarray:
    """Boolean mask of missing entries (None, NaN, pandas NA) in a 1-D array of any dtype."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind in "biuUS":
        return np.zeros(len(values), dtype=bool)
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


def encode_with_classes(
    values: np.ndarray, class_names: tuple[str, ...], *, column: str, where: str, known: str = "the training data"
) -> np.ndarray:
    """Map labels onto already known class names: those of the training file (for a test
    file), or a class list the user declared (`known` names which, for the message)."""
    keys = _normalise(np.asarray(values), column)
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted({_name(key) for key in keys} - set(index))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise DataError(
            f"the {column} in {where} has classes that {known} does not have ({shown}); "
            "use the same class values in both"
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


def table_row_digests(frame: pd.DataFrame) -> list[bytes]:
    """SHA-256 of each row's canonical text: its values in column order, as read.

    Numbers (and booleans) are written as float64's shortest text ("1.0", "0.1"), other
    values with str(), a missing value as a NUL character; cells are joined by the ASCII
    unit separator. A row's digest depends on that row's values alone.
    """
    if frame.shape[1] == 0:
        return [hashlib.sha256(b"").digest() for _ in range(len(frame))]
    joined = None
    for name in frame.columns:
        text = _cell_text(frame[name])
        joined = text if joined is None else joined + CELL_SEPARATOR + text
    return [hashlib.sha256(row.encode("utf-8", "surrogatepass")).digest() for row in joined]


def _cell_text(series: pd.Series) -> np.ndarray:
    """One column as an object array of canonical cell texts."""
    missing = series.isna().to_numpy()
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or (
        pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_complex_dtype(dtype)
    ):
        text = series.to_numpy(dtype="float64", na_value=np.nan).astype(str).astype(object)
    else:
        text = series.astype(str).to_numpy(dtype=object)
    text[missing] = MISSING_CELL
    return text


def array_row_digests(x: np.ndarray, labels: Sequence[str]) -> list[bytes]:
    """SHA-256 of each example's label text and the raw bytes of its feature array row."""
    rows = np.ascontiguousarray(x).reshape(len(x), -1)
    header = f"{rows.dtype.str}{rows.shape[1:]}".encode()
    return [
        hashlib.sha256(header + str(label).encode() + b"\x00" + row.tobytes()).digest()
        for label, row in zip(labels, rows)
    ]


def in_validation(row_digests: Sequence[bytes], validation_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask, True for the rows that go to validation: row i does when the first 64
    bits of SHA-256(tag, seed, row_digests[i]), read as a number in [0, 1), are below
    `validation_fraction`. Each entry is a function of that row's digest and the seed alone."""
    key = SPLIT_HASH_TAG + str(int(seed)).encode() + b"\x00"
    threshold = int(validation_fraction * 2**64)
    return np.fromiter(
        (int.from_bytes(hashlib.sha256(key + digest).digest()[:8], "big") < threshold for digest in row_digests),
        dtype=bool,
        count=len(row_digests),
    )


def hash_split(
    row_digests: Sequence[bytes], validation_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation), each sorted, by `in_validation`.

    The unit of privacy is one row of the uploaded file: its side of the split is a function
    of its own content (`row_digests[i]`, see `table_row_digests` and `array_row_digests`)
    and the public seed only, never of the other rows, so adding or removing a row moves no
    other row across the split. Each row lands in validation with probability
    `validation_fraction`; the split is stratified by class only in expectation, and a rare
    class may have no training example (the preparation report says so). Raises DataError
    when either split would be empty.
    """
    if not 0 < validation_fraction < 1:
        raise DataError(f"the validation fraction must be between 0 and 1 (exclusive), got {validation_fraction!r}")
    validation = in_validation(row_digests, validation_fraction, seed)
    train, val = np.flatnonzero(~validation), np.flatnonzero(validation)
    if len(val) == 0:
        raise DataError(
            f"with {len(row_digests)} examples and a validation fraction of {validation_fraction}, the validation "
            "split would be empty; use more examples, a larger validation fraction, or a separate test file"
        )
    if len(train) == 0:
        raise DataError(
            f"with {len(row_digests)} examples and a validation fraction of {validation_fraction}, the training "
            "split would be empty; use more examples, a smaller validation fraction, or a separate test file"
        )
    return train, val
