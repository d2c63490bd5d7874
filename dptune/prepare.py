"""From read data to a `Dataset`: labels, missing values, the split and the fitted transforms.

Two paths share the label and split logic: tables (CSV, Parquet, 2-D NPZ) are imputed,
standardised and one-hot encoded by a `TableEncoder` fitted on the training rows only;
images (image ZIP, 3-D/4-D NPZ) are already scaled and only split (`prepare_arrays`). A `DataReport`
says what was done (rows dropped, values imputed, columns encoded, class balance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dptune.dataset import Dataset
from dptune.errors import DataError
from dptune.labels import MAX_CLASSES, encode_labels, encode_with_classes, is_missing, stratified_split
from dptune.sources import DEFAULT_LIMITS, Limits, human_bytes
from dptune.tabular import MAX_CATEGORIES, TableEncoder, column_kinds, missing_counts, missing_rows

MISSING_POLICIES = ("impute", "drop")
MISSING_GROUP = "(missing)"
"""The sensitive-attribute value of examples whose attribute is missing."""


@dataclass(frozen=True)
class DataReport:
    """What preparation did, for the user to check (counts are examples/rows, not bytes).

    rows_read: examples in the file(s) as read (training file plus test file, if any).
    rows_dropped_missing_label: examples dropped because their label was missing.
    rows_dropped_missing_features: examples dropped for a missing feature (missing="drop").
    missing_values: per feature column, the missing values in the rows kept (before imputing).
    imputed_values: per feature column, the values filled in (missing="impute").
    categorical_columns: per one-hot encoded column, the number of categories (from training rows).
    constant_columns: features with one value in the training rows (they carry no information).
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
    constant_columns: tuple[str, ...] = ()
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
            lines.append(f"filled in missing values (training median / most frequent value) — {filled}")
        if self.categorical_columns:
            encoded = ", ".join(f"{k} ({v})" for k, v in self.categorical_columns.items())
            lines.append(f"one-hot encoded: {encoded}")
        if self.constant_columns:
            lines.append(f"constant in the training rows (no information): {', '.join(self.constant_columns)}")
        balance = ", ".join(f"{k}: {v:,}" for k, v in self.class_counts_train.items())
        lines.append(f"training examples per class — {balance}")
        lines.extend(self.notes)
        return lines


@dataclass(frozen=True, eq=False)
class PreparedData:
    """A prepared dataset, the report of what was done, the fitted table transform (None for images)
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
    """How to split and validate: the fraction held out, the seed, and the caps."""

    validation_fraction: float = 0.2
    seed: int = 0
    max_classes: int = MAX_CLASSES
    limits: Limits = DEFAULT_LIMITS


def _split(codes: np.ndarray, n_first: int, has_test: bool, options: SplitOptions) -> tuple[np.ndarray, np.ndarray, str]:
    if has_test:
        return np.arange(n_first), np.arange(n_first, len(codes)), "the separate test data"
    train, val = stratified_split(codes, options.validation_fraction, options.seed)
    return train, val, f"stratified {options.validation_fraction:.0%} split, seed {options.seed}"


def _labels(labels: np.ndarray, n_first: int, has_test: bool, label_name: str, options: SplitOptions, where: str):
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
    label_column: str | None = None,
    sensitive: np.ndarray | None = None,
    sensitive_column: str | None = None,
    missing: str = "impute",
    standardize: bool = True,
    max_categories: int = MAX_CATEGORIES,
    notes: list[str] | tuple[str, ...] = (),
) -> PreparedData:
    """Prepare a table whose first `n_first` rows are the training file and the rest its test file.

    Without a test file (`has_test=False`) all rows are split into training and validation.
    """
    if missing not in MISSING_POLICIES:
        raise DataError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    if features.shape[1] == 0:
        raise DataError(f"{source_name!r} has no feature columns besides the label; add the columns that describe each example")
    features = features.reset_index(drop=True)
    labels = np.asarray(labels, dtype=object) if not isinstance(labels, np.ndarray) else labels
    rows_read = len(features)
    label_name = f"label column {label_column!r}" if label_column else "label"
    notes = list(notes)

    keep = ~is_missing(labels)
    dropped_label = int((~keep).sum())
    columns, numeric, categorical = column_kinds(
        features[keep], max_categories=max_categories, file_name=source_name
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
    codes, classes = _labels(kept_labels, n_first_kept, has_test, label_name, options, "the test file")
    train, val, how = _split(codes, n_first_kept, has_test, options)

    encoder = TableEncoder(numeric=numeric, categorical=categorical, standardize=standardize)
    encoder.fit(columns, train, file_name=source_name)
    width = len(encoder.feature_names)
    needed = len(codes) * width * 4
    if needed > options.limits.max_array_bytes:
        raise DataError(
            f"{len(codes):,} rows x {width:,} encoded features need {human_bytes(needed)}, over the limit of "
            f"{human_bytes(options.limits.max_array_bytes)}; drop columns with many categories or use fewer rows"
        )
    x_train, imputed_train = encoder.transform(columns, train)
    x_val, imputed_val = encoder.transform(columns, val)
    imputed = {k: imputed_train.get(k, 0) + imputed_val.get(k, 0) for k in numeric + categorical
               if k in imputed_train or k in imputed_val}
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
    )
    if encoder.constant_columns:
        notes.append("constant columns are kept; they do not help the model")
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
        categorical_columns={k: len(v) for k, v in encoder.categories.items()},
        constant_columns=tuple(encoder.constant_columns),
        class_counts_train=_counts(codes[train], classes),
        class_counts_val=_counts(codes[val], classes),
        notes=tuple(notes),
    )
    kept = np.flatnonzero(keep)
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
    sensitive: np.ndarray | None = None,
    sensitive_column: str | None = None,
    class_names: tuple[str, ...] | None = None,
    label_name: str = "label",
    notes: list[str] | tuple[str, ...] = (),
) -> PreparedData:
    """Split arrays that need no fitted transform (scaled images, generated data); `n_first` rows are the training file."""
    if class_names is not None:
        codes = np.asarray(labels, dtype=np.int32)
        classes = tuple(class_names)
    else:
        codes, classes = _labels(np.asarray(labels), n_first, has_test, label_name, options, "the test data")
    train, val, how = _split(codes, n_first, has_test, options)
    sensitive = _sensitive(sensitive)
    dataset = Dataset(
        name=name,
        x_train=x[train],
        y_train=codes[train],
        x_val=x[val],
        y_val=codes[val],
        class_names=classes,
        sensitive_train=None if sensitive is None else sensitive[train],
        sensitive_val=None if sensitive is None else sensitive[val],
        sensitive_name=sensitive_column if sensitive is not None else None,
    )
    report = DataReport(
        source_name=source_name,
        source_format=source_format,
        rows_read=len(x),
        n_train=len(train),
        n_val=len(val),
        validation=how,
        sensitive_column=sensitive_column if sensitive is not None else None,
        class_counts_train=_counts(codes[train], classes),
        class_counts_val=_counts(codes[val], classes),
        notes=tuple(notes),
    )
    return PreparedData(dataset=dataset, report=report, train_rows=train, val_rows=val)
