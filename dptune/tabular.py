"""Tables: reading CSV/TSV/Parquet, and the feature encoder fitted on the training rows.

Column kinds (numeric or categorical) are a schema and are decided from the whole file;
every fitted value (medians and most frequent values for imputation, means and scales
for standardisation, the category list of each one-hot column) comes from the training
rows only, so nothing about the validation rows leaks into the transform.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dptune.errors import DataError
from dptune.sources import DEFAULT_LIMITS, Limits, RawFile, human_bytes

MAX_CATEGORIES = 100
"""Most distinct values a non-numeric feature column may have (it is one-hot encoded)."""

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


def column_kinds(frame: pd.DataFrame, *, max_categories: int, file_name: str) -> tuple[dict[str, pd.Series], list[str], list[str]]:
    """Classify feature columns into numeric and categorical; returns (parsed columns, numeric, categorical).

    A column is numeric when every value that is present parses as a number (bool counts as
    0/1). Raises DataError for a column with no values at all, a column of nested values
    (lists, maps), and a categorical column with more than `max_categories` distinct values.
    """
    parsed: dict[str, pd.Series] = {}
    numeric: list[str] = []
    categorical: list[str] = []
    for name in frame.columns:
        series = frame[name]
        present = ~series.isna()
        if not present.any():
            raise DataError(
                f"the column {name!r} of {file_name!r} has no values at all (every row is missing); "
                "remove the column or fill it in"
            )
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        if pd.api.types.is_bool_dtype(series.dtype):
            parsed[name] = series.astype("float64")
            numeric.append(name)
            continue
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_complex_dtype(series.dtype):
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
            values = pd.Series(np.nan, index=series.index, dtype="float64")
            values[present] = as_numbers.astype("float64").to_numpy()
            parsed[name] = values
            numeric.append(name)
            continue
        text = series.astype(object).where(present, None).map(lambda v: None if v is None else str(v).strip())
        distinct = text.dropna().nunique()
        if distinct > max_categories:
            raise DataError(
                f"the column {name!r} of {file_name!r} is not numeric and has {distinct:,} different values, "
                f"more than the limit of {max_categories} categories for one-hot encoding; it looks like an "
                "identifier, a date or free text: drop the column, or group its values into fewer categories "
                "(or raise the category limit)"
            )
        parsed[name] = text
        categorical.append(name)
    return parsed, numeric, categorical


# --------------------------------------------------------------------------- encoder


@dataclass
class TableEncoder:
    """Imputation, standardisation and one-hot encoding, fitted on training rows only.

    fill_values: per column, the value that replaces a missing entry (numeric: training
        median; categorical: the training rows' most frequent value).
    means, scales: per numeric column, training mean and standard deviation (population,
        ddof=0) after imputation; a constant column gets scale 1.
    categories: per categorical column, the sorted values seen in the training rows; a
        value seen only later encodes as all zeros.
    """

    numeric: list[str]
    categorical: list[str]
    standardize: bool = True
    fill_values: dict[str, object] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)
    categories: dict[str, list[str]] = field(default_factory=dict)
    constant_columns: list[str] = field(default_factory=list)

    def fit(self, columns: dict[str, pd.Series], rows: np.ndarray, *, file_name: str) -> TableEncoder:
        for name in self.numeric:
            values = columns[name].to_numpy(dtype="float64")[rows]
            values = np.where(np.isfinite(values), values, np.nan)
            if np.isnan(values).all():
                raise DataError(
                    f"the column {name!r} of {file_name!r} has no values in the training rows; remove the column"
                )
            self.fill_values[name] = float(np.nanmedian(values))
            filled = np.where(np.isnan(values), self.fill_values[name], values)
            mean, std = float(filled.mean()), float(filled.std())
            if std == 0 or not np.isfinite(std):
                self.constant_columns.append(name)
                std = 1.0
            self.means[name], self.scales[name] = (mean, std) if self.standardize else (0.0, 1.0)
        for name in self.categorical:
            values = columns[name].iloc[rows].dropna()
            if values.empty:
                raise DataError(
                    f"the column {name!r} of {file_name!r} has no values in the training rows; remove the column"
                )
            counts = values.value_counts()
            top = counts.max()
            self.fill_values[name] = sorted(counts[counts == top].index)[0]
            self.categories[name] = sorted(counts.index)
            if len(self.categories[name]) == 1:
                self.constant_columns.append(name)
        return self

    @property
    def feature_names(self) -> list[str]:
        names = list(self.numeric)
        for name in self.categorical:
            names += [f"{name}={value}" for value in self.categories[name]]
        return names

    def transform(self, columns: dict[str, pd.Series], rows: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
        """Encode the given rows; returns (float32 features, imputed count per column)."""
        width = len(self.feature_names)
        out = np.zeros((len(rows), width), dtype=np.float32)
        imputed: dict[str, int] = {}
        for j, name in enumerate(self.numeric):
            values = columns[name].to_numpy(dtype="float64")[rows]
            missing = ~np.isfinite(values)
            if missing.any():
                imputed[name] = int(missing.sum())
                values = np.where(missing, self.fill_values[name], values)
            out[:, j] = (values - self.means[name]) / self.scales[name]
        offset = len(self.numeric)
        for name in self.categorical:
            values = columns[name].iloc[rows]
            missing = values.isna().to_numpy()
            if missing.any():
                imputed[name] = int(missing.sum())
                values = values.where(~values.isna(), self.fill_values[name])
            position = {value: i for i, value in enumerate(self.categories[name])}
            codes = values.map(position).to_numpy(dtype="float64", na_value=np.nan)
            known = ~np.isnan(codes)
            out[np.flatnonzero(known), offset + codes[known].astype(np.int64)] = 1.0
            offset += len(self.categories[name])
        return out, imputed


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
