"""Tables: reading CSV/TSV/Parquet and the schema (the encoding is `dptune.data.encoding`).

Nothing is fitted on the rows: numeric columns get the signed log (or a declared public
range), categorical columns are hashed into a fixed number of buckets (or one-hot encoded
on a declared public category list), so one row can neither change the input width nor
any other row's features, and the encoding costs no privacy (ε = 0).

The schema (which columns are numeric or categorical, the label's classes) is either
declared by the user (`PublicSchema`) or read from the file; a schema read from the file
is treated as public, and the dataset's preprocessing note says so.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dptune.data.sources import DEFAULT_LIMITS, Limits, RawFile, human_bytes
from dptune.errors import DataError

MAX_CATEGORIES = 100
"""Most distinct values an undeclared non-numeric feature column may have (more looks like an identifier)."""

LABEL_GUESSES = ("label", "target", "class", "y")
MISSING_TOKENS = ["?"]
"""Read as missing in addition to pandas' defaults ("", "NA", "NaN", "null", ...)."""


# --------------------------------------------------------------------------- reading


def read_table(raw: RawFile, fmt: str, limits: Limits = DEFAULT_LIMITS) -> tuple[pd.DataFrame, list[str]]:
    """Read a CSV/TSV (fmt "csv") or Parquet file into a DataFrame; returns (frame, notes).

    Semicolon-delimited text is read with decimal commas ("1,5"); numbers with a dot still parse.
    """
    notes: list[str] = []
    if fmt == "parquet":
        frame = _read_parquet(raw, limits)
    else:
        text, encoding = decode_text(raw)
        delimiter = sniff_delimiter(text, raw.extension)
        notes.append(f"read as text in {encoding} with delimiter {_delimiter_name(delimiter)}")
        frame = _read_csv(raw, text, delimiter)
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = _drop_index_column(frame, notes)
    _check_column_names(list(frame.columns), raw.name)
    if len(frame) == 0:
        raise DataError(f"{raw.name!r} has column names but no rows of data; add the examples below the header")
    return frame, notes


def decode_text(raw: RawFile) -> tuple[str, str]:
    """Decode text, trying UTF-8 (with or without BOM), UTF-16 (with BOM), then Windows-1252."""
    content = raw.content
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8-sig", "cp1252", "latin-1"]
    for encoding in candidates:
        try:
            text = content.decode(encoding)
        except UnicodeDecodeError:
            continue
        return text, {"utf-8-sig": "UTF-8", "utf-16": "UTF-16", "cp1252": "Windows-1252", "latin-1": "Latin-1"}[encoding]
    raise DataError(f"cannot decode {raw.name!r} as text; save it as UTF-8 CSV")


def sniff_delimiter(text: str, extension: str) -> str:
    """The field delimiter (comma, tab, semicolon or pipe) from the first lines."""
    lines = [line for line in text[: 64 * 1024].splitlines() if line.strip()][:50]
    sample = "\n".join(lines)
    if not sample:
        return "\t" if extension in (".tsv", ".tab") else ","
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error:
        pass
    counts = {d: min(line.count(d) for line in lines) for d in ",\t;|"}
    best = max(counts, key=counts.get)
    if counts[best] > 0:
        return best
    return "\t" if extension in (".tsv", ".tab") else ","


def _delimiter_name(delimiter: str) -> str:
    return {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}.get(delimiter, repr(delimiter))


def _read_csv(raw: RawFile, text: str, delimiter: str) -> pd.DataFrame:
    first = next((line for line in text.splitlines() if line.strip()), "")
    header = next(csv.reader([first], delimiter=delimiter), [])
    if not header:
        raise DataError(f"{raw.name!r} holds no data (only blank lines); upload a table with a header row")
    if all(_is_number(cell) for cell in header):
        raise DataError(
            f"{raw.name!r} has no header row: its first line ({first[:60]!r}) holds numbers, not column names; "
            "add a first line that names every column (e.g. 'pixel0,pixel1,...,label')"
        )
    names = [cell.strip() for cell in header]
    duplicates = sorted({name for name in names if name and names.count(name) > 1})
    if duplicates:
        raise DataError(f"{raw.name!r} has more than one column named {duplicates[0]!r}; column names must be unique")
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            decimal="," if delimiter == ";" else ".",  # semicolon files use decimal commas (European locale)
            na_values=MISSING_TOKENS,
            skipinitialspace=True,
            skip_blank_lines=True,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{raw.name!r} holds no data; upload a table with a header row and rows of examples") from None
    except (pd.errors.ParserError, ValueError, csv.Error) as error:
        raise DataError(
            f"{raw.name!r} is not a well-formed table ({str(error).strip()}); every row must have as many "
            "fields as the header, and fields that contain the delimiter must be quoted"
        ) from None


def _read_parquet(raw: RawFile, limits: Limits) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        metadata = pq.ParquetFile(io.BytesIO(raw.content)).metadata
        size = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    except Exception as error:  # pyarrow raises many types for corrupt input
        raise DataError(f"{raw.name!r} is not a readable Parquet file ({type(error).__name__}: {error}); re-export it") from None
    if size > limits.max_array_bytes:
        raise DataError(
            f"{raw.name!r} expands to {human_bytes(size)} when decompressed, over the limit of "
            f"{human_bytes(limits.max_array_bytes)}; use fewer rows or columns"
        )
    try:
        return pd.read_parquet(io.BytesIO(raw.content), engine="pyarrow")
    except Exception as error:
        raise DataError(f"{raw.name!r} is not a readable Parquet file ({type(error).__name__}: {error}); re-export it") from None


def _drop_index_column(frame: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
    """Drop a leading unnamed column that is just the row number (pandas' `to_csv` index)."""
    if len(frame.columns) and (frame.columns[0] == "" or frame.columns[0].startswith("Unnamed: 0")):
        first = frame.iloc[:, 0]
        if pd.api.types.is_integer_dtype(first.dtype) and np.array_equal(first.to_numpy(), np.arange(len(frame))):
            notes.append("dropped the first, unnamed column: it is only the row number")
            return frame.iloc[:, 1:]
    return frame


def _is_number(cell: str) -> bool:
    try:
        float(cell.strip())
    except ValueError:
        return False
    return bool(cell.strip())


def _check_column_names(columns: list[str], file_name: str) -> None:
    for position, name in enumerate(columns, start=1):
        if not name or name.lower().startswith("unnamed:"):
            raise DataError(
                f"column {position} of {file_name!r} has no name; give every column a name in the header row "
                "(or remove the empty column)"
            )
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise DataError(f"{file_name!r} has two columns named {name!r}; column names must be unique")
        seen.add(name)


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
    if sum(_is_number(c) for c in columns) > len(columns) / 2:
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
    Raises DataError for a declared column the frame lacks and, for undeclared columns, a
    column with no values at all, a column of nested values (lists, maps), and a
    categorical column with more than `max_categories` distinct values (an identifier or
    free text, which hashing would turn into noise).
    """
    schema = schema or PublicSchema()
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
            raise DataError(
                f"the column {name!r} of {file_name!r} has no values at all (every row is missing); "
                "remove the column or fill it in"
            )
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
            raise DataError(
                f"the column {name!r} of {file_name!r} holds lists or nested values; flatten it into one "
                "number or category per row"
            )
        as_numbers = pd.to_numeric(sample.astype(str).str.strip(), errors="coerce")
        if as_numbers.notna().all() and not pd.api.types.is_datetime64_any_dtype(series.dtype):
            parsed[name] = _as_numbers(series)
            numeric.append(name)
            continue
        text = series.astype(object).where(present, None).map(lambda v: None if v is None else str(v).strip())
        distinct = text.dropna().nunique()
        if distinct > max_categories:
            raise DataError(
                f"the column {name!r} of {file_name!r} is not numeric and has {distinct:,} different values, "
                f"more than the limit of {max_categories} categories; it looks like an identifier, a date or "
                "free text: drop the column, or group its values into fewer categories (or raise the category limit)"
            )
        parsed[name] = text
        categorical.append(name)
    return parsed, numeric, categorical


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
