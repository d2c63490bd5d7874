"""Text tables: the encoding, the field separator and whether the first row names the columns.

All three are detected from the start of the file, and what was detected is said (the
upload summary, the preparation report), so a user can see and override it:

- encoding: UTF-8 (with or without BOM), UTF-16 (with BOM), else Windows-1252;
- separator: comma, semicolon (then with decimal commas), tab, pipe or runs of whitespace
  (UCI `.data` files, aligned columns): the one that splits the first lines into the same
  number of fields, preferring the split whose cells read as numbers;
- header row: the first row names the columns unless it looks like data, i.e. its cells are
  numbers in the columns whose other values are numbers (and no cell says otherwise).

Column names are part of the schema, read from the file and treated as public; detection
reads only the first rows and changes nothing but how the file is parsed.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from dptune.data.sources import RawFile
from dptune.errors import DataError
from dptune.spec.limits import MAX_TABLE_CELLS, MAX_TABLE_COLUMNS

WHITESPACE = r"\s+"
"""The separator of whitespace-separated files: any run of spaces or tabs."""
SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe", WHITESPACE: "whitespace"}
SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 50
HEADER_SAMPLE_ROWS = 200
"""Rows below the first one that header detection compares it with."""
MISSING_TOKENS = ["?"]
"""Read as missing in addition to pandas' defaults ("", "NA", "NaN", "null", ...)."""


@dataclass(frozen=True, eq=False)
class TextTable:
    """A text table as read: the frame (columns named by `names`, made unique) and how it was read.

    names: each column's name as the file gives it ("" for a header cell left empty), or
        the generated/given names when the file has no header row.
    header: True when the first row was read as the column names.
    header_detected: what detection found (the same as `header` unless the caller chose).
    header_note: what was detected or chosen, and why, in words ("no header row detected (…); columns
        named col_1 … col_9").
    """

    frame: pd.DataFrame
    names: tuple[str, ...]
    separator: str
    encoding: str
    header: bool
    header_detected: bool
    header_note: str

    @property
    def separator_name(self) -> str:
        return SEPARATOR_NAMES.get(self.separator, repr(self.separator))

    def note(self) -> str:
        """One line for the preparation report: encoding, separator and header row."""
        return f"read as {self.separator_name}-separated text in {self.encoding}; {self.header_note}"


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


def sniff_separator(text: str, extension: str = "") -> str:
    """The field separator: comma, semicolon, tab, pipe or `WHITESPACE` (runs of spaces/tabs).

    A candidate qualifies when it splits at least 90 % of the first non-blank lines (the
    header included) into the same number (≥ 2) of fields; among those, the one whose cells
    read as numbers most often wins (a semicolon file with decimal commas, "1,5;2,3", reads
    as numbers only when split on semicolons), then the one with more fields. With no
    candidate (a single column), a `.tsv`/`.tab` file is tab-separated, any other comma.
    """
    lines = _first_lines(text)
    default = "\t" if extension in (".tsv", ".tab") else ","
    candidates = [default] + [s for s in (",", "\t", ";", "|") if s != default] + [WHITESPACE]
    best, best_score = default, None
    for rank, separator in enumerate(candidates):
        rows = _split(lines, separator)
        width, count = _common_width(rows)
        if width < 2 or count < 0.9 * len(rows):
            continue
        decimal = "," if separator == ";" else "."
        numbers = sum(_is_number(cell, decimal) for row in rows for cell in row)
        score = (numbers, width, -rank)
        if best_score is None or score > best_score:
            best, best_score = separator, score
    return best


def _first_lines(text: str) -> list[str]:
    """The first `SNIFF_LINES` non-blank lines (none cut short by the `SNIFF_BYTES` window)."""
    lines = [line for line in text[:SNIFF_BYTES].splitlines() if line.strip()]
    if len(text) > SNIFF_BYTES:
        lines = lines[:-1]
    return lines[:SNIFF_LINES]


def _split(lines: list[str], separator: str) -> list[list[str]]:
    """The fields of each line (quotes respected; runs of spaces and tabs are one `WHITESPACE` separator)."""
    if separator == WHITESPACE:
        spaced = (line.replace("\t", " ").strip() for line in lines)
        return list(csv.reader(spaced, delimiter=" ", skipinitialspace=True))
    return list(csv.reader(lines, delimiter=separator))


def _common_width(rows: list[list[str]]) -> tuple[int, int]:
    """(the most common number of fields, how many rows have it); (0, 0) for no rows."""
    widths = Counter(len(row) for row in rows)
    return widths.most_common(1)[0] if widths else (0, 0)


def _check_first_row(text: str, separator: str, file_name: str) -> str | None:
    """DataError when the first row has more fields than the rows below it (or two fewer or more); a
    note when it has exactly one fewer (R's row names: pandas reads the first column as row names)."""
    rows = _split(_first_lines(text), separator)
    width = _common_width(rows[1:])[0]
    if len(rows) < 2 or len(rows[0]) == width:
        return None
    if len(rows[0]) == width - 1:
        return "the first row has one field fewer than the rows below it: their first field is a row name, not used"
    advice = (
        "with whitespace as the separator a column name cannot contain a space: join its words (mean_radius) or "
        "save the file comma-separated"
        if separator == WHITESPACE
        else "every row must have as many fields as the first row"
    )
    raise DataError(
        f"the first row of {file_name!r} has {len(rows[0])} fields but the rows below it have {width} "
        f"({SEPARATOR_NAMES[separator]}-separated); {advice}"
    )


def detect_header(first: list[str | None], rest: pd.DataFrame, decimal: str = ".") -> tuple[bool, str]:
    """(has a header row, why), comparing the first row's cells with the rows below (all text).

    A column whose other values are all numbers says "data" when the first row's cell is a
    number too and "header" when it is not; a text column says "data" when the first row's
    cell recurs below it. Any "header" column means a header row; else any "data" column
    means none; with no evidence the first row is taken as the header.
    """
    header_like, data_numbers, data_values = [], [], []
    for position, column in enumerate(rest.columns):
        cell = first[position] if position < len(first) else None
        values = rest[column].dropna().astype(str).str.strip()
        values = values[values != ""]
        if not cell or values.empty:
            continue
        if all(_is_number(v, decimal) for v in values):
            (data_numbers if _is_number(cell, decimal) else header_like).append(cell)
        elif cell in set(values):
            data_values.append(cell)
    if header_like:
        shown = ", ".join(repr(c) for c in header_like[:3]) + (", …" if len(header_like) > 3 else "")
        return True, f"its {shown} stand above columns of numbers"
    if data_numbers or data_values:
        parts = []
        if data_numbers:
            parts.append(f"numbers in all {len(data_numbers)} numeric columns")
        if data_values:
            parts.append(f"values that recur below it in {len(data_values)} text column{'s' if len(data_values) > 1 else ''}")
        return False, f"the first row looks like data: it holds {' and '.join(parts)}"
    return True, "nothing in the first row looks like data"


def read_text_table(raw: RawFile, *, header: bool | None = None, column_names: list[str] | None = None) -> TextTable:
    """Read a text table: encoding, separator and header row detected (`header` None) or chosen.

    header: True, the first row names the columns; False, it is data (the columns are named
        `column_names`, else col_1 … col_k); None, detected by `detect_header`.
    Column names that are duplicated or empty are kept in `names`, and the frame's columns
    made unique (name, name.1, …; col_<position> for an empty one): the caller decides.
    """
    if header not in (True, False, None):
        raise DataError(f"header must be True (the first row names the columns), False or None (detect), got {header!r}")
    if column_names is not None and header is not False:
        raise DataError("column_names are for a file without a header row; pass header=False with them")
    text, encoding = decode_text(raw)
    if not text.strip():
        raise DataError(f"{raw.name!r} holds no data (only blank lines); upload a table with a header row")
    _check_size(text, raw.name)
    separator = sniff_separator(text, raw.extension)
    row_names = _check_first_row(text, separator, raw.name)
    if row_names is not None:
        if header is False:
            raise DataError(f"{raw.name!r}: {row_names}, so the first row can only be a header row")
        frame = _parse(raw, text, separator, header=0).reset_index(drop=True)
        names = tuple("" if str(c).startswith("Unnamed:") else str(c).strip() for c in frame.columns)
        frame.columns = list(unique_names(names))
        return TextTable(frame, names, separator, encoding, True, True, f"header row detected ({row_names})")
    decimal = "," if separator == ";" else "."
    sample = _parse(raw, text, separator, header=None, dtype=str, nrows=HEADER_SAMPLE_ROWS + 1)
    first = [None if pd.isna(cell) else str(cell).strip() for cell in sample.iloc[0]]
    detected, why = detect_header(first, sample.iloc[1:], decimal)
    use = detected if header is None else header
    if use:
        names = tuple(cell or "" for cell in first)
    else:
        names = _given_names(column_names, len(first), raw.name)
    note = f"{'header row' if use else 'no header row'} {'detected' if header is None else '(as chosen)'}"
    if header is None:
        note += f" ({why})"
    if not use:
        note += "; columns named " + (f"{names[0]} … {names[-1]}" if column_names is None else "as given")
    frame = _parse(raw, text, separator, header=0 if use else None, names=list(unique_names(names)))
    return TextTable(frame, names, separator, encoding, use, detected, note)


def unique_names(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The names made unique: an empty one becomes col_<position>, a repeated one name.1, name.2, …

    Linear in the number of names (sets, and the next suffix of each name remembered)."""
    taken = set(names)
    out: list[str] = []
    used: set[str] = set()
    next_suffix: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        base = name or f"col_{position}"
        candidate = base
        suffix = next_suffix.get(base, 0)
        while candidate in used or (candidate != name and candidate in taken):
            suffix += 1
            candidate = f"{base}.{suffix}"
        next_suffix[base] = suffix
        out.append(candidate)
        used.add(candidate)
    return tuple(out)


def _check_size(text: str, file_name: str) -> None:
    """Columns (fields of the first line, whichever separator gives most) and cells (that times
    the lines) within dptune.spec.limits, counted in one pass before pandas parses anything."""
    end = text.find("\n")
    first = text if end < 0 else text[:end]
    columns = max(first.count(sep) for sep in (",", ";", "\t", "|")) + 1
    check_table_size(file_name, text.count("\n") + 1, columns)


def check_table_size(name: str, rows: int, columns: int) -> None:
    """DataError when a table declares more columns or cells than dptune.spec.limits allows
    (checked before the table is read into memory)."""
    if columns > MAX_TABLE_COLUMNS:
        raise DataError(f"{name!r} has {columns:,} columns, over dptune's limit of {MAX_TABLE_COLUMNS:,}; "
                        "keep the columns the model needs")
    if rows * columns > MAX_TABLE_CELLS:
        raise DataError(f"{name!r} has {rows:,} rows x {columns:,} columns, over dptune's limit of "
                        f"{MAX_TABLE_CELLS:,} cells; use fewer rows or columns")


def _given_names(column_names: list[str] | None, count: int, file_name: str) -> tuple[str, ...]:
    if column_names is None:
        return tuple(f"col_{i}" for i in range(1, count + 1))
    names = tuple(str(n).strip() for n in column_names)
    if len(names) != count or not all(names) or len(set(names)) != len(names):
        raise DataError(
            f"{file_name!r} has {count} columns: give {count} different, non-empty column names, got {len(names)} "
            f"({', '.join(map(repr, names))})"
        )
    return names


def _parse(raw: RawFile, text: str, separator: str, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.StringIO(text),
            sep=separator,
            decimal="," if separator == ";" else ".",  # semicolon files use decimal commas (European locale)
            na_values=MISSING_TOKENS,
            skipinitialspace=separator != WHITESPACE,
            skip_blank_lines=True,
            **options,
        )
    except pd.errors.EmptyDataError:
        raise DataError(f"{raw.name!r} holds no data; upload a table with a header row and rows of examples") from None
    except (pd.errors.ParserError, ValueError, csv.Error) as error:
        raise DataError(
            f"{raw.name!r} is not a well-formed table ({str(error).strip()}); every row must have as many "
            "fields as the header, and fields that contain the separator must be quoted"
        ) from None


def _is_number(cell: str, decimal: str = ".") -> bool:
    text = cell.strip()
    if decimal == ",":
        text = text.replace(",", ".")
    try:
        float(text)
    except ValueError:
        return False
    return bool(text)
