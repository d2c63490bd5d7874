"""From read data to a `Dataset`: labels, missing values, the split and the fixed encodings.

Two paths share the label and split logic: tables (CSV, Parquet, 2-D NPZ) are encoded by a
`TableEncoder` that fits nothing on the rows; images (image ZIP, 3-D/4-D NPZ) are already
scaled by a fixed factor and only split (`prepare_arrays`). The split puts each row on a
side by a keyed hash of its own content (`dptune.data.labels.hash_split`). So preparation reads
no row to transform or place another, and costs no privacy: every Dataset built here has
preprocessing_epsilon = preprocessing_delta = 0 and a preprocessing_note that says what was
done and which part of the schema (column kinds, class list, image channels) was read from
the data and is treated as public. A `DataReport` says what was done (rows dropped, missing
values, columns encoded, class balance) for the data owner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dptune.data.dataset import Dataset
from dptune.data.encoding import HASH_BUCKETS, TableEncoder, missing_counts, missing_rows
from dptune.data.labels import (
    MAX_CLASSES,
    array_row_digests,
    encode_labels,
    encode_with_classes,
    hash_split,
    is_missing,
)
from dptune.data.sources import DEFAULT_LIMITS, Limits, human_bytes
from dptune.data.tabular import MAX_CATEGORIES, PublicSchema, column_kinds
from dptune.errors import DataError

MISSING_POLICIES = ("impute", "drop")
MISSING_GROUP = "(missing)"
"""The sensitive-attribute value of examples whose attribute is missing."""


@dataclass(frozen=True)
class DataReport:
    """What preparation did, for the data owner to check (counts are examples/rows, not bytes).

    These counts are read from the rows and shown to the data owner only; nothing in them
    reaches training.

    rows_read: examples in the file(s) as read (training file plus test file, if any).
    rows_dropped_missing_label: examples dropped because their label was missing.
    rows_dropped_missing_features: examples dropped for a missing feature (missing="drop").
    missing_values: per feature column, the missing values in the rows kept (before encoding).
    imputed_values: per feature column, the missing values encoded as 0 (missing="impute").
    categorical_columns: per categorical column, its encoded width (hash buckets, or the
        declared categories plus "(other)").
    hashed_columns: the categorical columns encoded by feature hashing.
    class_counts_train / class_counts_val: examples per class name.
    """

    source_name: str
    source_format: str
    rows_read: int
    n_train: int
    n_val: int
    validation: str
    label_column: str | None = None
    sensitive_column: str | None = None
    rows_dropped_missing_label: int = 0
    rows_dropped_missing_features: int = 0
    missing_values: dict[str, int] = field(default_factory=dict)
    imputed_values: dict[str, int] = field(default_factory=dict)
    numeric_columns: tuple[str, ...] = ()
    categorical_columns: dict[str, int] = field(default_factory=dict)
    hashed_columns: tuple[str, ...] = ()
    class_counts_train: dict[str, int] = field(default_factory=dict)
    class_counts_val: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            key: (list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, dict) else value)
            for key, value in self.__dict__.items()
        }

    def summary(self) -> list[str]:
        """Human-readable lines (for the UI or the CLI)."""
        lines = [
            f"{self.source_name} ({self.source_format}): {self.rows_read:,} rows read, "
            f"{self.n_train:,} for training, {self.n_val:,} for validation ({self.validation})"
        ]
        if self.rows_dropped_missing_label:
            lines.append(f"dropped {self.rows_dropped_missing_label:,} rows with no label")
        if self.rows_dropped_missing_features:
            lines.append(f"dropped {self.rows_dropped_missing_features:,} rows with a missing feature value")
        if self.imputed_values:
            filled = ", ".join(f"{k}: {v:,}" for k, v in self.imputed_values.items())
            lines.append(f"missing values encoded as 0 — {filled}")
        if self.categorical_columns:
            encoded = ", ".join(
                f"{k} ({v} hash buckets)" if k in self.hashed_columns else f"{k} ({v - 1} declared categories + other)"
                for k, v in self.categorical_columns.items()
            )
            lines.append(f"categorical columns: {encoded}")
        balance = ", ".join(f"{k}: {v:,}" for k, v in self.class_counts_train.items())
        lines.append(f"training examples per class — {balance}")
        lines.extend(self.notes)
        return lines


@dataclass(frozen=True, eq=False)
class PreparedData:
    """A prepared dataset, the report of what was done, the table encoding (None for images)
    and which rows went to each split."""

    dataset: Dataset
    report: DataReport
    encoder: TableEncoder | None = None
    train_rows: np.ndarray | None = None
    """Row numbers (0-based, in the order read; a test file's rows follow the training file's) of the training split."""
    val_rows: np.ndarray | None = None
    """Row numbers of the validation split, as for train_rows."""


@dataclass(frozen=True)
class SplitOptions:
    """How to split and validate: the fraction held out, the seed (the split hash's public key), and the caps."""

    validation_fraction: float = 0.2
    seed: int = 0
    max_classes: int = MAX_CLASSES
    limits: Limits = DEFAULT_LIMITS


def preprocessing_note(encoding: str, read_from_data: list[str] | tuple[str, ...]) -> str:
    """The dataset's preprocessing note: what the encoding did, that it fitted nothing
    (ε = 0), and which parts of the schema were read from the data (treated as public)."""
    note = f"{encoding}; nothing fitted on the rows (ε = 0)"
    if read_from_data:
        parts = ", ".join(read_from_data[:-1]) + (" and " if len(read_from_data) > 1 else "") + read_from_data[-1]
        return f"{note}; the schema ({parts}) was read from the data and is treated as public"
    return f"{note}; the schema was declared (public)"


def _split(
    codes: np.ndarray,
    classes: tuple[str, ...],
    row_digests: Sequence[bytes],
    n_first: int,
    has_test: bool,
    options: SplitOptions,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, str]:
    """(train, validation, how): the first `n_first` rows and the rest with a test file, else the hash split."""
    if has_test:
        return np.arange(n_first), np.arange(n_first, len(codes)), "the separate test data"
    train, val = hash_split(row_digests, options.validation_fraction, options.seed)
    untrained = [classes[c] for c in sorted(set(codes[val].tolist()) - set(codes[train].tolist()))]
    if untrained:
        notes.append(
            f"the class(es) {', '.join(map(repr, untrained))} have no training example: all their rows fell in "
            "validation (each row's side depends on that row alone); add rows of those classes"
        )
    how = f"{options.validation_fraction:.0%} expected, each row by a keyed hash of its content, seed {options.seed}"
    return train, val, how


def _labels(
    labels: np.ndarray,
    n_first: int,
    has_test: bool,
    label_name: str,
    options: SplitOptions,
    where: str,
    declared: tuple[str, ...] | None,
):
    """(codes, classes): onto the declared class list, else classes read from the (training) labels."""
    if declared is not None:
        codes = encode_with_classes(labels, declared, column=label_name, where="the data", known="the declared class list")
        return codes, declared
    if has_test:
        codes, classes = encode_labels(labels[:n_first], max_classes=options.max_classes, column=label_name)
        test_codes = encode_with_classes(labels[n_first:], classes, column=label_name, where=where)
        return np.concatenate([codes, test_codes]), classes
    return encode_labels(labels, max_classes=options.max_classes, column=label_name)


def _counts(codes: np.ndarray, classes: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(codes, minlength=len(classes))
    return {name: int(n) for name, n in zip(classes, counts)}


def _sensitive(values: np.ndarray | None) -> np.ndarray | None:
    if values is None:
        return None
    values = np.asarray(values, dtype=object)
    missing = is_missing(values)
    out = np.array([_group_name(v) for v in values], dtype=str) if len(values) else np.array([], dtype=str)
    out[missing] = MISSING_GROUP
    return out


def _group_name(value) -> str:
    """A sensitive group's name: 1.0 (an int column with gaps, read as float) is "1"."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def prepare_table(
    features: pd.DataFrame,
    labels: np.ndarray,
    *,
    name: str,
    source_name: str,
    source_format: str,
    n_first: int,
    has_test: bool,
    options: SplitOptions,
    row_digests: Sequence[bytes],
    label_column: str | None = None,
    sensitive: np.ndarray | None = None,
    sensitive_column: str | None = None,
    missing: str = "impute",
    schema: PublicSchema | None = None,
    hash_buckets: int = HASH_BUCKETS,
    max_categories: int = MAX_CATEGORIES,
    notes: list[str] | tuple[str, ...] = (),
) -> PreparedData:
    """Prepare a table whose first `n_first` rows are the training file and the rest its test file.

    Without a test file (`has_test=False`) all rows are split into training and validation
    by `row_digests` (one digest of each row's whole content, as `dptune.data.labels.table_row_digests`
    gives). The features are encoded by `TableEncoder` (nothing fitted; see there), with the
    ranges, categories and classes that `schema` declares.
    """
    if missing not in MISSING_POLICIES:
        raise DataError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    if features.shape[1] == 0:
        raise DataError(f"{source_name!r} has no feature columns besides the label; add the columns that describe each example")
    schema = schema or PublicSchema()
    features = features.reset_index(drop=True)
    labels = np.asarray(labels, dtype=object) if not isinstance(labels, np.ndarray) else labels
    rows_read = len(features)
    label_name = f"label column {label_column!r}" if label_column else "label"
    notes = list(notes)

    keep = ~is_missing(labels)
    dropped_label = int((~keep).sum())
    columns, numeric, categorical = column_kinds(
        features[keep], max_categories=max_categories, file_name=source_name, schema=schema
    )
    missing_before = missing_counts(columns, numeric + categorical)
    dropped_features = 0
    if missing == "drop":
        bad = missing_rows(columns, numeric + categorical)
        dropped_features = int(bad.sum())
        keep_rows = ~bad
        columns = {k: v[keep_rows] for k, v in columns.items()}
        keep[np.flatnonzero(keep)[bad]] = False
    if not keep.any():
        raise DataError(
            f"no rows of {source_name!r} are left after dropping rows with missing values; "
            "use missing='impute' or fill in the missing values"
        )
    columns = {k: v.reset_index(drop=True) for k, v in columns.items()}
    n_first_kept = int(keep[:n_first].sum())
    if has_test and n_first_kept == len(columns[next(iter(columns))]):
        raise DataError("no rows of the test file are left after dropping rows with missing values; use missing='impute'")
    kept_labels = labels[keep]
    codes, classes = _labels(kept_labels, n_first_kept, has_test, label_name, options, "the test file", schema.classes)
    kept = np.flatnonzero(keep)
    train, val, how = _split(codes, classes, [row_digests[i] for i in kept], n_first_kept, has_test, options, notes)

    encoder = TableEncoder.for_columns(numeric, categorical, schema, hash_buckets)
    width = len(encoder.feature_names)
    needed = len(codes) * width * 4
    if needed > options.limits.max_array_bytes:
        raise DataError(
            f"{len(codes):,} rows x {width:,} encoded features need {human_bytes(needed)}, over the limit of "
            f"{human_bytes(options.limits.max_array_bytes)}; use fewer hash buckets, fewer columns or fewer rows"
        )
    x_train, imputed_train = encoder.transform(columns, train)
    x_val, imputed_val = encoder.transform(columns, val)
    imputed = {k: imputed_train.get(k, 0) + imputed_val.get(k, 0) for k in numeric + categorical
               if k in imputed_train or k in imputed_val}
    inferred = [c for c in numeric + categorical if not schema.declares(c)]
    read_from_data = [f"whether each of {len(inferred)} columns is numeric or categorical"] if inferred else []
    if schema.classes is None:
        read_from_data.append("the class list")
    sensitive = _sensitive(np.asarray(sensitive, dtype=object)[keep]) if sensitive is not None else None
    dataset = Dataset(
        name=name,
        x_train=x_train,
        y_train=codes[train],
        x_val=x_val,
        y_val=codes[val],
        class_names=classes,
        feature_names=tuple(encoder.feature_names),
        sensitive_train=None if sensitive is None else sensitive[train],
        sensitive_val=None if sensitive is None else sensitive[val],
        sensitive_name=sensitive_column if sensitive is not None else None,
        preprocessing_epsilon=0.0,
        preprocessing_delta=0.0,
        preprocessing_note=preprocessing_note(encoder.describe(), read_from_data),
    )
    report = DataReport(
        source_name=source_name,
        source_format=source_format,
        rows_read=rows_read,
        n_train=len(train),
        n_val=len(val),
        validation=how,
        label_column=label_column,
        sensitive_column=sensitive_column if sensitive is not None else None,
        rows_dropped_missing_label=dropped_label,
        rows_dropped_missing_features=dropped_features,
        missing_values=missing_before,
        imputed_values=imputed,
        numeric_columns=tuple(numeric),
        categorical_columns={c: encoder.width(c) for c in categorical},
        hashed_columns=encoder.hashed,
        class_counts_train=_counts(codes[train], classes),
        class_counts_val=_counts(codes[val], classes),
        notes=tuple(notes),
    )
    return PreparedData(dataset=dataset, report=report, encoder=encoder, train_rows=kept[train], val_rows=kept[val])


def prepare_arrays(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    name: str,
    source_name: str,
    source_format: str,
    n_first: int,
    has_test: bool,
    options: SplitOptions,
    encoding: str,
    read_from_data: list[str] | tuple[str, ...] = (),
    classes: tuple[str, ...] | None = None,
    sensitive: np.ndarray | None = None,
    sensitive_column: str | None = None,
    label_name: str = "label",
    notes: list[str] | tuple[str, ...] = (),
) -> PreparedData:
    """Split arrays already encoded by a fixed, per-example transform (images scaled by a
    constant, generated data); `n_first` rows are the training file.

    encoding: what that transform was, in words (the start of the preprocessing note).
    read_from_data: parts of the schema the caller read from the data (e.g. "the channel
        count"); the class list is added when `classes` is None (read from the labels).
    classes: a declared (public) class list the labels are mapped onto.
    Without a test file, each example's side of the split is the hash of its label and
    feature bytes (`dptune.data.labels.array_row_digests`).
    """
    codes, class_names = _labels(np.asarray(labels), n_first, has_test, label_name, options, "the test data", classes)
    notes = list(notes)
    digests = [] if has_test else array_row_digests(x, [class_names[c] for c in codes])
    train, val, how = _split(codes, class_names, digests, n_first, has_test, options, notes)
    read_from_data = [*read_from_data, *(["the class list"] if classes is None else [])]
    sensitive = _sensitive(sensitive)
    dataset = Dataset(
        name=name,
        x_train=x[train],
        y_train=codes[train],
        x_val=x[val],
        y_val=codes[val],
        class_names=class_names,
        sensitive_train=None if sensitive is None else sensitive[train],
        sensitive_val=None if sensitive is None else sensitive[val],
        sensitive_name=sensitive_column if sensitive is not None else None,
        preprocessing_epsilon=0.0,
        preprocessing_delta=0.0,
        preprocessing_note=preprocessing_note(encoding, read_from_data),
    )
    report = DataReport(
        source_name=source_name,
        source_format=source_format,
        rows_read=len(x),
        n_train=len(train),
        n_val=len(val),
        validation=how,
        sensitive_column=sensitive_column if sensitive is not None else None,
        class_counts_train=_counts(codes[train], class_names),
        class_counts_val=_counts(codes[val], class_names),
        notes=tuple(notes),
    )
    return PreparedData(dataset=dataset, report=report, train_rows=train, val_rows=val)
