"""The fixed feature encoding of a table: decided by the schema alone, fitted on no row.

Numeric columns get the signed log (or a declared public range), categorical columns are
hashed into a fixed number of buckets (or one-hot encoded on a declared public category
list), so one row can neither change the input width nor any other row's features, and
the encoding costs no privacy (ε = 0).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dptune.data.tabular import PublicSchema
from dptune.errors import DataError

HASH_BUCKETS = 16
"""Encoded columns per categorical column without declared categories (feature hashing)."""
MAX_HASH_BUCKETS = 4096
HASH_TAG = b"dptune-hash-v1\x00"
"""Prefix of every category hash (domain separation; fixed, so buckets never change)."""
OTHER_CATEGORY = "(other)"
"""The extra one-hot column of a declared category list: any value outside the list."""


@dataclass(frozen=True)
class TableEncoder:
    """The fixed encoding of a table's feature columns, decided by the schema alone.

    It reads no row to decide anything (no median, mean, range or category list comes
    from the data), so it costs no privacy (ε = 0, δ = 0): each row's features are a
    function of that row alone, and the input width depends only on the schema.

    numeric: each becomes one column. With a declared public range (lower, upper): the
        value clipped to the range and scaled to [-1, 1]. Otherwise the signed log
        sign(x)·log(1 + |x|): it needs no statistics, keeps sign and order, maps 0 to 0
        and grows only logarithmically, so large values stay in a trainable range without
        a scale fitted on the rows. A missing (or infinite) value becomes 0.
    categorical: with declared categories, one column per category plus "(other)" for any
        value outside the list. Otherwise `hash_buckets` columns: a value sets the column
        SHA-256("dptune-hash-v1", column name, value) mod hash_buckets, the same for every
        dataset and run (distinct values may share a bucket). A missing value sets none.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hash_buckets: int = HASH_BUCKETS

    def __post_init__(self) -> None:
        if not (isinstance(self.hash_buckets, int) and not isinstance(self.hash_buckets, bool)
                and 1 <= self.hash_buckets <= MAX_HASH_BUCKETS):
            raise DataError(f"hash_buckets must be an integer between 1 and {MAX_HASH_BUCKETS}, got {self.hash_buckets!r}")

    @classmethod
    def for_columns(
        cls, numeric: list[str], categorical: list[str], schema: PublicSchema | None, hash_buckets: int = HASH_BUCKETS
    ) -> TableEncoder:
        """The encoder of these columns with the ranges and category lists the schema declares."""
        schema = schema or PublicSchema()
        return cls(
            numeric=tuple(numeric),
            categorical=tuple(categorical),
            ranges={name: schema.numeric[name] for name in numeric if schema.numeric.get(name) is not None},
            categories={name: schema.categorical[name] for name in categorical if schema.categorical.get(name) is not None},
            hash_buckets=hash_buckets,
        )

    @property
    def hashed(self) -> tuple[str, ...]:
        """The categorical columns without declared categories (hashed)."""
        return tuple(name for name in self.categorical if name not in self.categories)

    def width(self, column: str) -> int:
        """Encoded columns of one categorical column."""
        return len(self.categories[column]) + 1 if column in self.categories else self.hash_buckets

    @property
    def feature_names(self) -> list[str]:
        """numeric: the column name; declared categories: "name=value", "name=(other)";
        hashed: "name=#bucket"."""
        names = list(self.numeric)
        for name in self.categorical:
            if name in self.categories:
                names += [f"{name}={value}" for value in self.categories[name]] + [f"{name}={OTHER_CATEGORY}"]
            else:
                names += [f"{name}=#{bucket}" for bucket in range(self.hash_buckets)]
        return names

    def transform(self, columns: dict[str, pd.Series], rows: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        """Encode the given rows; returns (float32 features, missing values filled per column).

        Each output row depends on the same input row only."""
        out = np.zeros((len(rows), len(self.feature_names)), dtype=np.float32)
        missing_counts: dict[str, int] = {}
        for j, name in enumerate(self.numeric):
            values = columns[name].to_numpy(dtype="float64")[rows]
            missing = ~np.isfinite(values)
            if missing.any():
                missing_counts[name] = int(missing.sum())
            values = np.where(missing, 0.0, values)
            if name in self.ranges:
                lower, upper = self.ranges[name]
                encoded = 2.0 * (np.clip(values, lower, upper) - lower) / (upper - lower) - 1.0
                out[:, j] = np.where(missing, 0.0, encoded)
            else:
                out[:, j] = signed_log(values)
        offset = len(self.numeric)
        for name in self.categorical:
            values = columns[name].iloc[rows]
            missing = values.isna().to_numpy()
            if missing.any():
                missing_counts[name] = int(missing.sum())
            present = values[~missing]
            if name in self.categories:
                position = {value: i for i, value in enumerate(self.categories[name])}
                other = len(self.categories[name])
                lookup = {value: position.get(value, other) for value in present.unique()}
            else:
                lookup = {value: hash_bucket(name, value, self.hash_buckets) for value in present.unique()}
            codes = present.map(lookup).to_numpy(dtype=np.int64)
            out[np.flatnonzero(~missing), offset + codes] = 1.0
            offset += self.width(name)
        return out, missing_counts

    def describe(self) -> str:
        """What the encoding does, in words (part of the dataset's preprocessing note)."""
        parts = []
        logged = [n for n in self.numeric if n not in self.ranges]
        if logged:
            parts.append(f"{_count(logged, 'numeric column')}: signed log sign(x)·log(1+|x|), no statistics")
        if self.ranges:
            parts.append(f"{_count(self.ranges, 'numeric column')}: clipped to the declared public range, scaled to [-1, 1]")
        if self.hashed:
            parts.append(f"{_count(self.hashed, 'categorical column')}: hashed into {self.hash_buckets} buckets")
        if self.categories:
            parts.append(f"{_count(self.categories, 'categorical column')}: one-hot on the declared categories + (other)")
        if self.numeric or self.categorical:
            parts.append("missing values encoded as 0")
        return "; ".join(parts)


def _count(names, what: str) -> str:
    return f"{len(names)} {what}{'' if len(names) == 1 else 's'}"


def signed_log(values: np.ndarray) -> np.ndarray:
    """sign(x)·log(1 + |x|), elementwise: a fixed, monotone transform with no statistics."""
    return np.sign(values) * np.log1p(np.abs(values))


def hash_bucket(column: str, value: str, buckets: int) -> int:
    """The bucket of a categorical value: SHA-256 of a fixed tag, the column name and the value,
    its first 8 bytes as a number, mod `buckets` (stable across runs, unlike Python's hash())."""
    digest = hashlib.sha256(HASH_TAG + column.encode("utf-8", "surrogatepass") + b"\x00"
                            + value.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def missing_rows(columns: dict[str, pd.Series], names: list[str]) -> np.ndarray:
    """Mask of rows with a missing (or infinite) value in any of the named columns."""
    if not names:
        return np.zeros(0, dtype=bool)
    mask = None
    for name in names:
        series = columns[name]
        if pd.api.types.is_numeric_dtype(series.dtype):
            col = ~np.isfinite(series.to_numpy(dtype="float64"))
        else:
            col = series.isna().to_numpy()
        mask = col if mask is None else (mask | col)
    return mask


def missing_counts(columns: dict[str, pd.Series], names: list[str]) -> dict[str, int]:
    counts = {}
    for name in names:
        series = columns[name]
        if pd.api.types.is_numeric_dtype(series.dtype):
            n = int((~np.isfinite(series.to_numpy(dtype="float64"))).sum())
        else:
            n = int(series.isna().sum())
        if n:
            counts[name] = n
    return counts
