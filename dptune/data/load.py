"""Load a user's dataset (or a built-in one) into a `Dataset`, with a clear error for every bad input.

Public API:
    load_dataset(source, ...) -> PreparedData   read, validate and prepare an uploaded file
    builtin_dataset(name, ...) -> Dataset       digits (default), breast_cancer, synthetic
    prepare_builtin(name, ...) -> PreparedData  the same with its report
    store(dataset, workspace) -> Path           save once as <workspace>/<fingerprint>.npz
    check_enough_examples(dataset, batch_size)  DataError if N < one batch

(`describe_upload`, what an upload holds before it is prepared, is in `dptune.data.upload`.)

Formats: CSV/TSV and other text tables such as UCI `.data` files (encoding, separator and
header row detected, see `dptune.data.text`), Parquet, NPZ
(`x`/`y` or `x_train`/`y_train`/`x_test`/`y_test`, read with allow_pickle=False) and a ZIP
of PNG/JPEG images in one folder per class. The type is decided from the content and
must agree with the extension. A source is a path or a `(file name, bytes)` upload; it is
read into memory and nothing is written anywhere until `store` is called, so a failed
upload cannot touch the workspace.

Preparation reads no private row to transform or place another (see `dptune.data.prepare`):
tables get a fixed encoding (signed log, feature hashing, or what a declared
`PublicSchema` says), images a fixed pixel scale, and each row's train/validation side is
a keyed hash of that row's content. The unit of privacy is one row of the uploaded file.
The resulting Dataset records preprocessing_epsilon = 0 and a note naming the parts of the
schema that were read from the data (treated as public).

Every problem a user can cause raises `dptune.errors.DataError` saying what is wrong and
how to fix it; every unusable column of a table is listed in one error
(`dptune.data.diagnose.TableProblems`). Identifier-like and label-leaking columns are not
refused: the report's notes name them for the data owner.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dptune.data.arrays import image_scale, read_npz
from dptune.data.builtins import BUILTIN_DATASETS, DEFAULT_BUILTIN, builtin_dataset, prepare_builtin
from dptune.data.dataset import DEFAULT_WORKSPACE, Dataset
from dptune.data.diagnose import TableProblems, column_warnings
from dptune.data.encoding import HASH_BUCKETS
from dptune.data.images import check_channels, read_image_zip
from dptune.data.labels import MAX_CLASSES, array_row_digests, table_row_digests
from dptune.data.prepare import DataReport, PreparedData, SplitOptions, prepare_arrays, prepare_table
from dptune.data.sources import (
    DEFAULT_LIMITS,
    MAX_ARRAY_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_UPLOAD_BYTES,
    MAX_ZIP_FILES,
    MAX_ZIP_UNCOMPRESSED_BYTES,
    Limits,
    RawFile,
    Source,
    detect_format,
    read_source,
)
from dptune.data.tabular import MAX_CATEGORIES, PublicSchema, column_problems, read_table, resolve_column
from dptune.errors import DataError
from dptune.spec.dataset_ref import DatasetRef
from dptune.workspace import Workspace

__all__ = [
    "BUILTIN_DATASETS",
    "DEFAULT_BUILTIN",
    "DEFAULT_LIMITS",
    "DEFAULT_WORKSPACE",
    "HASH_BUCKETS",
    "MAX_ARRAY_BYTES",
    "MAX_CATEGORIES",
    "MAX_CLASSES",
    "MAX_IMAGE_PIXELS",
    "MAX_UPLOAD_BYTES",
    "MAX_ZIP_FILES",
    "MAX_ZIP_UNCOMPRESSED_BYTES",
    "DataReport",
    "Dataset",
    "Limits",
    "PreparedData",
    "PublicSchema",
    "builtin_dataset",
    "check_enough_examples",
    "load_dataset",
    "prepare_builtin",
    "store",
]


def load_dataset(
    source: Source,
    *,
    label_column: str | None = None,
    sensitive_column: str | None = None,
    sensitive_as_feature: bool = False,
    drop_columns: tuple[str, ...] | list[str] = (),
    header: bool | None = None,
    column_names: list[str] | None = None,
    fix_column_names: bool = False,
    test_source: Source | None = None,
    validation_fraction: float = 0.2,
    seed: int = 0,
    image_size: tuple[int, int] = (28, 28),
    channels: int | None = None,
    missing: str = "impute",
    schema: PublicSchema | Mapping[str, Any] | None = None,
    hash_buckets: int = HASH_BUCKETS,
    max_categories: int = MAX_CATEGORIES,
    max_classes: int = MAX_CLASSES,
    name: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> PreparedData:
    """Read, validate and prepare a dataset file; returns the Dataset and a DataReport.

    source: a path, or (file name, bytes) for an upload.
    label_column (tables): the column holding each example's class; None picks a column
        named label/target/class/y if there is exactly one. Ignored for NPZ and image ZIPs.
    sensitive_column: tables: a column kept aside for fairness metrics (e.g. "sex"),
        excluded from the features unless `sensitive_as_feature`; NPZ: the name of an array
        (`<name>` or `<name>_train`/`<name>_test`). Missing values become "(missing)".
    drop_columns (tables): columns not to use as features (identifiers, free text).
    header (text tables): True, the first row names the columns; False, the file has no
        header row (columns named `column_names`, else col_1 … col_k); None, detected (the
        first row is data when it holds numbers where the rows below do). The report says which.
    column_names (text tables with header=False): a name for every column.
    fix_column_names (tables): rename a column without a name (col_<position>) or with a
        repeated name (name.1, name.2, …) instead of refusing the file.
    test_source: a second file of the same format and columns used as the validation
        split instead of a split of the rows (the same goes for an NPZ holding x_test/y_test).
    validation_fraction, seed: the split. The unit of privacy is one row of the file: each
        row goes to validation when a SHA-256 hash of the seed and that row's whole content
        (label included) falls below the fraction, so its side depends on that row alone
        (never on the other rows) and about `validation_fraction` of the rows, of every
        class, land in validation. Same seed, same split; identical rows share a side.
    image_size (image ZIPs): (height, width) in pixels that every image is resized to.
    channels (image ZIPs): 1 (grayscale) or 3 (RGB) for every image; None reads it from
        the images (1 if all are grayscale), part of the schema read from the data.
    missing (tables): "impute" encodes a missing feature as 0 (no category for a
        categorical column); "drop" drops rows with any missing feature. Rows without a
        label are always dropped. Counts are in the report.
    schema (tables; classes for every format): a `PublicSchema` (or its dict form) the user
        declares from public knowledge: numeric ranges, category lists, the class list.
        Anything not declared is read from the file and treated as public.
    hash_buckets (tables): encoded columns per categorical column without declared categories.
    max_categories: most distinct values of an undeclared non-numeric feature column.
    max_classes: most classes the label may have.
    name: the dataset's name (default: the file name without extension).
    limits: upload, ZIP and memory caps (see dptune.data.sources.Limits).

    Nothing is fitted on the rows: numeric columns get sign(x)·log(1+|x|) or their declared
    range scaled to [-1, 1], categorical columns are hashed into `hash_buckets` columns or
    one-hot encoded on their declared categories, images are divided by a constant. So no
    row changes the input width or another row's features, and the Dataset records
    preprocessing_epsilon = 0. Nothing is written to disk; call `store` to save the result.
    """
    raw = read_source(source, limits)
    fmt = detect_format(raw)
    test_raw = None
    if test_source is not None:
        test_raw = read_source(test_source, limits, what="test file")
        test_fmt = detect_format(test_raw)
        if test_fmt != fmt:
            raise DataError(
                f"the test file {test_raw.name!r} is {test_fmt} but the training file {raw.name!r} is {fmt}; "
                "use the same format for both"
            )
    options = SplitOptions(validation_fraction=validation_fraction, seed=seed, max_classes=max_classes, limits=limits)
    _check_split_options(validation_fraction, seed, has_test=test_raw is not None)
    declared = PublicSchema.from_dict(schema)
    dataset_name = name or raw.stem
    encoding = dict(missing=missing, schema=declared, hash_buckets=hash_buckets, max_categories=max_categories)
    if fmt in ("csv", "parquet"):
        return _load_table(
            raw, test_raw, fmt, options,
            name=dataset_name, label_column=label_column, sensitive_column=sensitive_column,
            sensitive_as_feature=sensitive_as_feature, drop_columns=tuple(drop_columns),
            reading=dict(header=header, column_names=column_names, fix_column_names=fix_column_names), **encoding,
        )  # fmt: skip
    if fmt == "npz":
        return _load_npz(raw, test_raw, options, name=dataset_name, sensitive_column=sensitive_column, **encoding)
    return _load_image_zip(
        raw, test_raw, options, name=dataset_name, image_size=image_size, channels=check_channels(channels),
        classes=None if declared is None else declared.classes,
    )  # fmt: skip


def _check_split_options(validation_fraction: float, seed: int, *, has_test: bool) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    if not has_test and not (isinstance(validation_fraction, (int, float)) and 0 < validation_fraction < 1):
        raise DataError(f"validation_fraction must be a number between 0 and 1 (exclusive), got {validation_fraction!r}")


def _load_table(
    raw: RawFile,
    test_raw: RawFile | None,
    fmt: str,
    options: SplitOptions,
    *,
    name: str,
    label_column: str | None,
    sensitive_column: str | None,
    sensitive_as_feature: bool,
    drop_columns: tuple[str, ...],
    reading: dict[str, Any],
    missing: str,
    schema: PublicSchema | None,
    hash_buckets: int,
    max_categories: int,
) -> PreparedData:
    table = read_table(raw, fmt, options.limits, **reading)
    frame, notes = table.frame, list(table.notes)
    label = resolve_column(frame, label_column, role="label column", file_name=raw.name)
    if label_column is None:
        notes.append(f"used the column {label!r} as the label")
    sensitive = None
    if sensitive_column is not None:
        sensitive = resolve_column(frame, sensitive_column, role="sensitive-attribute column", file_name=raw.name)
        if sensitive == label:
            raise DataError(f"the sensitive attribute and the label are the same column ({label!r}); pick two columns")
    for column in drop_columns:
        resolve_column(frame, column, role="column to drop", file_name=raw.name)
    n_first = len(frame)
    if test_raw is not None:
        same_header = {**reading, "header": None if table.text is None else table.text.header}  # as the training file
        test_table = read_table(test_raw, fmt, options.limits, **same_header)
        if test_table.problems:
            raise TableProblems(test_raw.name, test_table.problems)
        test_frame = test_table.frame
        missing_columns = [c for c in frame.columns if c not in test_frame.columns and c not in drop_columns]
        if missing_columns:
            raise DataError(
                f"the test file {test_raw.name!r} lacks the column(s) {', '.join(map(repr, missing_columns))} of "
                f"{raw.name!r}; both files must have the same columns"
            )
        frame = pd.concat([frame, test_frame[list(frame.columns)]], ignore_index=True)
    excluded = {label, *drop_columns}
    if sensitive is not None and not sensitive_as_feature:
        excluded.add(sensitive)
    features = frame[[c for c in frame.columns if c not in excluded]]
    if table.problems:
        problems = column_problems(features, max_categories=max_categories, file_name=raw.name, schema=schema)
        raise TableProblems(raw.name, [*table.problems, *problems])
    notes += [f"warning: {w.text()}" for w in column_warnings(frame, label, ignore=excluded)]
    return prepare_table(
        features,
        frame[label].to_numpy(),
        name=name,
        source_name=raw.name,
        source_format=fmt,
        n_first=n_first,
        has_test=test_raw is not None,
        options=options,
        label_column=label,
        sensitive=None if sensitive is None else frame[sensitive].to_numpy(),
        sensitive_column=sensitive,
        row_digests=table_row_digests(frame),
        missing=missing,
        schema=schema,
        hash_buckets=hash_buckets,
        max_categories=max_categories,
        notes=notes,
    )


def _load_npz(
    raw: RawFile,
    test_raw: RawFile | None,
    options: SplitOptions,
    *,
    name: str,
    sensitive_column: str | None,
    missing: str,
    schema: PublicSchema | None,
    hash_buckets: int,
    max_categories: int,
) -> PreparedData:
    train, test, notes = read_npz(raw, limits=options.limits, sensitive_key=sensitive_column)
    if test_raw is not None:
        if test is not None:
            raise DataError(f"{raw.name!r} already holds x_test/y_test; do not also give a test file")
        test, _, _ = read_npz(test_raw, limits=options.limits, sensitive_key=sensitive_column)
        if test.x.shape[1:] != train.x.shape[1:]:
            raise DataError(
                f"the test file's examples have shape {test.x.shape[1:]} but the training file's have shape "
                f"{train.x.shape[1:]}; both must describe examples the same way"
            )
    parts = [train] if test is None else [train, test]
    x = np.concatenate([p.x for p in parts]) if len(parts) > 1 else train.x
    y = np.concatenate([p.y for p in parts]) if len(parts) > 1 else train.y
    sensitive = None
    if sensitive_column is not None:
        sensitive = np.concatenate([np.asarray(p.sensitive).astype(str) for p in parts])
    common = dict(
        name=name, source_name=raw.name, source_format="npz", n_first=len(train.x),
        has_test=test is not None, options=options, sensitive=sensitive,
        sensitive_column=sensitive_column, notes=notes,
    )  # fmt: skip
    if x.ndim == 2:
        columns = [f"x{i}" for i in range(x.shape[1])]
        features = pd.DataFrame(x.astype(np.float64), columns=columns)
        return prepare_table(
            features, y, row_digests=array_row_digests(x, np.asarray(y).astype(str)), missing=missing,
            schema=schema, hash_buckets=hash_buckets, max_categories=max_categories, **common,
        )  # fmt: skip
    images, note = image_scale(x, limits=options.limits, file_name=raw.name)
    return prepare_arrays(
        images, y, label_name="label array 'y'", encoding=note, classes=None if schema is None else schema.classes,
        **{**common, "notes": [*notes, note]},
    )  # fmt: skip


def _load_image_zip(
    raw: RawFile,
    test_raw: RawFile | None,
    options: SplitOptions,
    *,
    name: str,
    image_size: tuple[int, int],
    channels: int | None,
    classes: tuple[str, ...] | None,
) -> PreparedData:
    x, labels, notes = read_image_zip(raw, image_size=image_size, limits=options.limits, channels=channels)
    n_first = len(x)
    if test_raw is not None:
        test_x, test_labels, _ = read_image_zip(
            test_raw, image_size=image_size, limits=options.limits, require_classes=False, channels=channels
        )
        if test_x.shape[-1] != x.shape[-1]:
            x, test_x = (a if a.shape[-1] == 3 else np.repeat(a, 3, axis=-1) for a in (x, test_x))
            notes.append("the training and test images differ in colour; both used with 3 channels")
        x = np.concatenate([x, test_x])
        labels = np.concatenate([labels, test_labels])
    height, width = x.shape[1:3]
    encoding = f"images resized to {height}x{width}, 8-bit pixel values divided by 255 (a fixed scale)"
    return prepare_arrays(
        x, labels, name=name, source_name=raw.name, source_format="image_zip",
        n_first=n_first, has_test=test_raw is not None, options=options, notes=notes,
        encoding=encoding, read_from_data=["the channel count"] if channels is None else [], classes=classes,
    )  # fmt: skip


def store(dataset: Dataset, workspace: str | os.PathLike = DEFAULT_WORKSPACE) -> Path:
    """Save the dataset once as `<workspace>/<fingerprint>.npz` and return the path.

    Atomic (written to a temporary file, then renamed); a file already there with the same
    fingerprint is kept untouched, and no other file of the workspace is ever changed.
    """
    return dataset.save(workspace)


def check_enough_examples(dataset: Dataset, batch_size: int) -> None:
    """DataError when the training split has fewer examples than one expected batch (N < B)."""
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise DataError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if dataset.n_train < batch_size:
        raise DataError(
            f"the dataset {dataset.name!r} has {dataset.n_train:,} training examples, fewer than one batch of "
            f"{batch_size:,}; use a batch size of at most {dataset.n_train:,} (DP-SGD works best with many "
            "batches per epoch), or more data"
        )


def _file_dataset(ref: DatasetRef) -> Dataset:
    """The dataset of a `file` reference, prepared with its options (FILE_OPTIONS) as `dptune
    register` and the Data page prepare it."""
    options = ref.options
    return load_dataset(
        ref.file, label_column=options.get("label"), sensitive_column=options.get("sensitive"),
        drop_columns=tuple(options.get("drop", ())), header=options.get("header"), test_source=options.get("test"),
        validation_fraction=float(options.get("validation_fraction", 0.2)),
    ).dataset


def resolve_dataset(ref: DatasetRef, workspace: str | os.PathLike | None = None, *, save: bool = True) -> Dataset:
    """Load the dataset `ref` points to: from the workspace by fingerprint, else rebuild the
    built-in one or prepare the file.

    A rebuilt or prepared dataset is checked against `fingerprint` and stored in the
    workspace (so workers find it by fingerprint).
    """
    folder = Path(ref.workspace or workspace or DEFAULT_WORKSPACE)
    dataset: Dataset | None = None
    if ref.fingerprint is not None and Workspace.at(folder).dataset_path(ref.fingerprint).exists():
        dataset = Dataset.load(ref.fingerprint, folder)
    elif ref.builtin is not None or ref.file is not None:
        dataset = builtin_dataset(ref.builtin, **ref.options) if ref.builtin is not None else _file_dataset(ref)
        if ref.fingerprint is not None and dataset.fingerprint != ref.fingerprint:
            raise DataError(
                f"the dataset {ref.builtin or ref.file!r} now has fingerprint {dataset.fingerprint[:12]}…, "
                f"not {ref.fingerprint[:12]}… as recorded: its data or preparation changed, so this run "
                "cannot be reproduced exactly; put the original "
                f"{ref.fingerprint}.npz in the workspace {folder.resolve()}"
            )
        if save:
            dataset.save(folder)
    else:
        raise DataError(
            f"dataset {ref.name or ''} {ref.fingerprint[:12]}… is not in the workspace {folder.resolve()}; "
            "copy its .npz file there or give `workspace:`"
        )
    if ref.n_train is not None and dataset.n_train != ref.n_train:
        raise DataError(f"dataset has N = {dataset.n_train} training examples, but the YAML says n_train {ref.n_train}")
    return dataset
