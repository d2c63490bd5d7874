"""Tables: reading CSV/TSV/Parquet and the schema (the encoding is `dptune.data.encoding`).

Text tables are read by `dptune.data.text` (encoding, separator and header row detected);
every problem of a table's columns is reported at once (`dptune.data.diagnose.TableProblems`).

Nothing is fitted on the rows: numeric columns get the signed log (or a declared public
range), categorical columns are hashed into a fixed number of buckets (or one-hot encoded
on a declared public category list), so one row can neither change the input width nor
any other row's features, and the encoding costs no privacy (ε = 0).

The schema (which columns are numeric or categorical, the label's classes) is either
declared by the user (`PublicSchema`) or read from the file; a schema read from the file
is treated as public, and the dataset's preprocessing note says so.
"""

from __future__ import annotations

import difflib
import io
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dptune.data.diagnose import ColumnProblem, TableProblems
from dptune.data.sources import DEFAULT_LIMITS, Limits, RawFile, human_bytes
from dptune.data.text import TextTable, check_table_size, read_text_table, unique_names
from dptune.errors import DataError

MAX_CATEGORIES = 100
"""Most distinct values an undeclared non-numeric feature column may have (more looks like an identifier)."""

LABEL_GUESSES = ("label", "target", "class", "y")
GENERATED_NAME = re.compile(r"col_\d+")
"""The names given to the columns of a file without a header row (col_1 … col_k)."""


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, eq=False)
class Table:
    """A table as read, before any column is chosen: the frame and how it was read.

    frame: the rows, columns named uniquely (see `dptune.data.text.unique_names`).
    notes: how the file was read (encoding, separator, header row), for the report.
    problems: the column-name problems (an empty or a repeated name) that were not fixed;
        the caller raises them with the other problems of the table (`TableProblems`).
    text: how a text table was read (None for Parquet).
    """

    frame: pd.DataFrame
    notes: tuple[str, ...] = ()
    problems: tuple[ColumnProblem, ...] = ()
    text: TextTable | None = None


def read_table(
    raw: RawFile,
    fmt: str,
    limits: Limits = DEFAULT_LIMITS,
    *,
    header: bool | None = None,
    column_names: list[str] | None = None,
    fix_column_names: bool = False,
) -> Table:
    """Read a text table (fmt "csv") or a Parquet file.

    Text: encoding, separator and header row are detected (`header` None) or chosen, see
    `dptune.data.text`; semicolon-separated text is read with decimal commas ("1,5").
    A leading unnamed column that only counts the rows (pandas' index) is dropped. A column
    without a name or with a repeated name is renamed (col_<position>; name.1, name.2, …)
    and, unless `fix_column_names`, listed in the Table's problems.
    """
    notes: list[str] = []
    text = None
    if fmt == "parquet":
        if header is False or column_names is not None:
            raise DataError(f"{raw.name!r} is a Parquet file, which names its columns; header and column_names "
                            "are for CSV/TSV text")
        frame = _read_parquet(raw, limits)
        names = tuple("" if str(c).strip().lower().startswith("unnamed:") else str(c).strip() for c in frame.columns)
        frame.columns = list(unique_names(names))
    else:
        text = read_text_table(raw, header=header, column_names=column_names)
        frame, names = text.frame, text.names
        notes.append(text.note())
    if names and names[0] == "" and _is_row_number(frame.iloc[:, 0]):
        notes.append("dropped the first, unnamed column: it is only the row number")
        frame, names = frame.iloc[:, 1:], names[1:]
    problems = _name_problems(names, list(frame.columns))
    if problems and fix_column_names:
        renamed = ", ".join(f"{p.column!r}" for p in problems)
        notes.append(f"renamed the columns without a name or with a repeated name: now {renamed}")
        problems = []
    if len(frame) == 0:
        raise DataError(f"{raw.name!r} has column names but no rows of data; add the examples below the header")
    return Table(frame, tuple(notes), tuple(problems), text)


def _read_parquet(raw: RawFile, limits: Limits) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(raw.content))
        metadata = parquet.metadata
        rows, columns = int(metadata.num_rows), int(metadata.num_columns)
        size = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        # what pandas will hold: 8 bytes per fixed-width cell, a Python string (>= 50 bytes) per text cell
        text_columns = sum(1 for field in parquet.schema_arrow if not _fixed_width(field.type))
    except Exception as error:  # pyarrow raises many types for corrupt input
        raise DataError(f"{raw.name!r} is not a readable Parquet file ({type(error).__name__}: "
                        f"{str(error)[:200]}); re-export it") from None
    check_table_size(raw.name, rows, columns)
    in_memory = max(size, rows * (8 * (columns - text_columns) + 64 * text_columns))
    if in_memory > limits.max_array_bytes:
        raise DataError(
            f"{raw.name!r} expands to about {human_bytes(in_memory)} when decompressed, over the limit of "
            f"{human_bytes(limits.max_array_bytes)}; use fewer rows or columns"
        )
    try:
        return pd.read_parquet(io.BytesIO(raw.content), engine="pyarrow")
    except MemoryError:
        raise DataError(f"{raw.name!r} needs more memory than this machine has; use fewer rows or columns") from None
    except Exception as error:
        raise DataError(f"{raw.name!r} is not a readable Parquet file ({type(error).__name__}: "
                        f"{str(error)[:200]}); re-export it") from None


def _fixed_width(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type) \
        or pa.types.is_temporal(arrow_type) or pa.types.is_decimal(arrow_type)


def _is_row_number(column: pd.Series) -> bool:
    return pd.api.types.is_integer_dtype(column.dtype) and np.array_equal(column.to_numpy(), np.arange(len(column)))


def _name_problems(names: tuple[str, ...], columns: list[str]) -> list[ColumnProblem]:
    """A problem for each column without a name and each repeated name (its later copies), in file order."""
    positions: dict[str, list[int]] = {}
    for position, name in enumerate(names, start=1):  # one pass: linear in the number of columns
        positions.setdefault(name, []).append(position)
    problems = []
    for position, (name, column) in enumerate(zip(names, columns), start=1):
        if not name:
            problems.append(ColumnProblem(column, f"column {position} has no name (read as {column!r})", "rename"))
        elif positions[name][0] != position:
            where = [str(i) for i in positions[name][:10]] + (["…"] if len(positions[name]) > 10 else [])
            problems.append(ColumnProblem(
                column, f"more than one column is named {name!r} (columns {', '.join(where)}; read as {column!r})",
                "rename",
            ))
    return problems


def _is_number(cell: str) -> bool:
    try:
        float(cell.strip())
    except ValueError:
        return False
    return bool(cell.strip())


# --------------------------------------------------------------------------- columns


def resolve_column(frame: pd.DataFrame, column: str | None, *, role: str, file_name: str) -> str:
    """Check that `column` exists; for the label, guess a column named label/target/class/y if None."""
    columns = list(frame.columns)
    if column is None:
        if role != "label column":
            raise AssertionError("only the label column is guessed")
        found = [c for c in columns if c.lower() in LABEL_GUESSES]
        if len(found) == 1:
            return found[0]
        raise DataError(
            f"name the label column of {file_name!r} (the column that holds each example's class); "
            f"its columns are: {_list(columns)}"
        )
    if column in columns:
        return column
    close = difflib.get_close_matches(column, columns, n=1, cutoff=0.6)
    close += [c for c in columns if c.lower() == column.strip().lower() and c not in close]
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    header_hint = ""
    if columns and all(GENERATED_NAME.fullmatch(c) for c in columns):
        header_hint = (f" (the file was read without a header row, so its columns are named {columns[0]} … "
                       f"{columns[-1]} by position: pick one of those, or give the columns names)")
    elif sum(_is_number(c) for c in columns) > len(columns) / 2:
        header_hint = " (most column names are numbers: does the file lack a header row?)"
    raise DataError(
        f"the {role} {column!r} is not a column of {file_name!r}{hint} its columns are: {_list(columns)}{header_hint}"
    )


def _list(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


@dataclass(frozen=True)
class PublicSchema:
    """What the user declares about a table from public knowledge, never from its rows.

    numeric: column -> (lower, upper), a public range: values are clipped to it and scaled
        to [-1, 1]; or None: the column is numeric and gets the signed log.
    categorical: column -> its public list of categories: one-hot on the list plus one
        "(other)" column; or None: the column is categorical and is hashed into buckets.
    classes: the label's class names in order; a label outside the list is an error.

    Columns not declared are classified from the file (numeric when every value present
    parses as a number) and a label without declared classes gets its classes from the
    file: that part of the schema is read from the rows, treated as public, and the
    dataset's preprocessing note says so. Declaring everything makes the encoding, the
    input width and the class list independent of the rows.
    """

    numeric: Mapping[str, tuple[float, float] | None] = field(default_factory=dict)
    categorical: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        numeric = {str(name): _declared_range(name, bounds) for name, bounds in dict(self.numeric).items()}
        categorical = {str(name): _declared_categories(name, values) for name, values in dict(self.categorical).items()}
        both = sorted(set(numeric) & set(categorical))
        if both:
            raise DataError(f"the schema declares {both[0]!r} both numeric and categorical; pick one")
        classes = None if self.classes is None else tuple(category_text(c) for c in self.classes)
        if classes is not None and (len(classes) < 2 or None in classes or len(set(classes)) != len(classes)):
            raise DataError(f"the schema's classes must be at least two different names, got {list(self.classes)!r}")
        object.__setattr__(self, "numeric", numeric)
        object.__setattr__(self, "categorical", categorical)
        object.__setattr__(self, "classes", classes)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | PublicSchema | None) -> PublicSchema | None:
        """A schema from JSON-like values: {"numeric": {"age": [0, 120], "income": null},
        "categorical": {"colour": ["red", "green"], "city": null}, "classes": ["no", "yes"]}."""
        if values is None or isinstance(values, PublicSchema):
            return values
        if not isinstance(values, Mapping):
            raise DataError(f"the schema must be a mapping with numeric, categorical and classes, got {values!r}")
        unknown = sorted(set(values) - {"numeric", "categorical", "classes"})
        if unknown:
            raise DataError(f"unknown schema key(s) {', '.join(map(repr, unknown))}; use numeric, categorical, classes")
        for key in ("numeric", "categorical"):
            if not isinstance(values.get(key) or {}, Mapping):
                raise DataError(f"the schema's {key!r} must map column names to their declaration")
        classes = values.get("classes")
        return cls(
            numeric=dict(values.get("numeric") or {}),
            categorical=dict(values.get("categorical") or {}),
            classes=None if classes is None else tuple(classes),
        )

    def declares(self, column: str) -> bool:
        return column in self.numeric or column in self.categorical


def _declared_range(name: str, bounds) -> tuple[float, float] | None:
    if bounds is None:
        return None
    try:
        lower, upper = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise DataError(f"the declared range of {name!r} must be (lower, upper) or None, got {bounds!r}") from None
    if not (np.isfinite(lower) and np.isfinite(upper) and lower < upper):
        raise DataError(f"the declared range of {name!r} must be finite with lower < upper, got {bounds!r}")
    return lower, upper


def _declared_categories(name: str, values) -> tuple[str, ...] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise DataError(f"the declared categories of {name!r} must be a list of values or None, got {values!r}")
    categories = tuple(category_text(v) for v in values)
    if not categories or None in categories or len(set(categories)) != len(categories):
        raise DataError(f"the declared categories of {name!r} must be different, non-missing values, got {values!r}")
    return categories


def category_text(value) -> str | None:
    """A category as text: None for a missing value, "3" for 3 and 3.0, otherwise str(value) stripped."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Real) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def column_kinds(
    frame: pd.DataFrame, *, max_categories: int, file_name: str, schema: PublicSchema | None = None
) -> tuple[dict[str, pd.Series], list[str], list[str]]:
    """Classify feature columns into numeric and categorical; returns (parsed columns, numeric, categorical).

    A declared column (see PublicSchema) has the declared kind: numeric values that do not
    parse as numbers become missing, categorical values become text. Any other column is
    numeric when every value that is present parses as a number (bool counts as 0/1).
    Raises DataError for a declared column the frame lacks, and `TableProblems` listing
    every undeclared column that cannot be used (see `column_problems`) at once.
    """
    parsed, numeric, categorical, problems = _classify(frame, max_categories, file_name, schema or PublicSchema())
    if problems:
        raise TableProblems(file_name, problems)
    return parsed, numeric, categorical


def column_problems(
    frame: pd.DataFrame, *, max_categories: int, file_name: str, schema: PublicSchema | None = None
) -> list[ColumnProblem]:
    """Every undeclared column that cannot be a feature: one with no values at all, one of nested
    values (lists, maps), and a non-numeric one with more than `max_categories` distinct values
    (an identifier, a date or free text, which hashing would turn into noise)."""
    return _classify(frame, max_categories, file_name, schema or PublicSchema())[3]


def _classify(frame: pd.DataFrame, max_categories: int, file_name: str, schema: PublicSchema):
    for name in [*schema.numeric, *schema.categorical]:
        if name not in frame.columns:
            close = difflib.get_close_matches(name, list(frame.columns), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(
                f"the schema declares the column {name!r}, which is not a feature column of {file_name!r}{hint}; "
                f"its feature columns are: {_list(list(frame.columns))}"
            )
    parsed: dict[str, pd.Series] = {}
    numeric: list[str] = []
    categorical: list[str] = []
    problems: list[ColumnProblem] = []
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        if name in schema.numeric:
            parsed[name] = _as_numbers(series)
            numeric.append(name)
            continue
        if name in schema.categorical:
            parsed[name] = series.astype(object).map(category_text)
            categorical.append(name)
            continue
        present = ~series.isna()
        if not present.any():
            problems.append(ColumnProblem(name, f"the column {name!r} has no values at all (every row is missing)"))
            continue
        if pd.api.types.is_bool_dtype(series.dtype) or (
            pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype)
        ):
            parsed[name] = series.astype("float64")
            numeric.append(name)
            continue
        sample = series[present]
        if sample.map(lambda v: isinstance(v, (list, tuple, dict, np.ndarray, bytes))).any() and not sample.map(
            lambda v: isinstance(v, bytes)
        ).all():
            problems.append(ColumnProblem(name, f"the column {name!r} holds lists or nested values (flatten it "
                                                "into one number or category per row)"))
            continue
        as_numbers = pd.to_numeric(sample.astype(str).str.strip(), errors="coerce")
        if as_numbers.notna().all() and not pd.api.types.is_datetime64_any_dtype(series.dtype):
            parsed[name] = _as_numbers(series)
            numeric.append(name)
            continue
        text = series.astype(object).where(present, None).map(lambda v: None if v is None else str(v).strip())
        distinct = text.dropna().nunique()
        if distinct > max_categories:
            problems.append(ColumnProblem(
                name, f"the column {name!r} is not numeric and has {distinct:,} different values, more than the "
                      f"limit of {max_categories} categories: an identifier, a date or free text",
            ))
            continue
        parsed[name] = text
        categorical.append(name)
    return parsed, numeric, categorical, problems


def _as_numbers(series: pd.Series) -> pd.Series:
    """float64 values; anything that does not parse as a number (or is missing) is NaN."""
    if pd.api.types.is_bool_dtype(series.dtype) or (
        pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype)
    ):
        return series.astype("float64")
    present = ~series.isna()
    values = pd.Series(np.nan, index=series.index, dtype="float64")
    parsed = pd.to_numeric(series[present].astype(str).str.strip(), errors="coerce")
    values[present] = parsed.astype("float64").to_numpy()
    return values
