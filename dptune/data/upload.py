"""What an uploaded file holds, before it is prepared: for the data owner to check and choose.

`describe_upload` reads a file just enough to show it and to offer the choices
`load_dataset` takes: for a table, how it was read (separator, encoding, header row, each
detected and said), its columns, a preview, and every problem `load_dataset` would refuse
(`ColumnProblem`s: unnamed or repeated names, unusable columns), so a page can offer to drop
or rename them in one go. Everything here is read from the rows and shown to the data owner
only; nothing is fitted or stored, and nothing shown changes the dataset by itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import pandas as pd

from dptune.data.arrays import read_npz
from dptune.data.diagnose import ColumnProblem
from dptune.data.images import IMAGE_EXTENSIONS
from dptune.data.sources import DEFAULT_LIMITS, Limits, Source, detect_format, open_zip, read_source
from dptune.data.tabular import LABEL_GUESSES, MAX_CATEGORIES, column_problems, read_table


@dataclass(frozen=True, eq=False)
class UploadSummary:
    """What an uploaded file holds, before any preparation (for choosing the label in a UI).

    format: "csv", "parquet", "npz" or "image_zip". columns: a table's columns, an NPZ's
    array names. suggested_label / preview (first rows, a DataFrame) / table (every row as
    read): tables only. arrays: NPZ x and y -> shape. classes: image ZIP class folder ->
    number of files.
    separator, encoding (text tables): the separator's name ("comma", "semicolon", "tab",
        "pipe", "whitespace") and the text encoding, as detected.
    header (text tables): whether the first row was read as the column names;
        header_detected: what detection found; header_note: what and why, in words.
    problems (tables): everything `load_dataset` would refuse about the columns, the label
        not yet known (columns without a name or with a repeated name, unusable columns).
    notes: how the file was read (and what was renamed), as the preparation report says it.
    """

    name: str
    format: str
    n_rows: int | None = None
    columns: tuple[str, ...] = ()
    suggested_label: str | None = None
    preview: object = None
    arrays: dict[str, tuple[int, ...]] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    separator: str | None = None
    encoding: str | None = None
    header: bool | None = None
    header_detected: bool | None = None
    header_note: str = ""
    problems: tuple[ColumnProblem, ...] = ()
    notes: tuple[str, ...] = ()
    table: pd.DataFrame | None = None

    @property
    def columns_to_drop(self) -> tuple[str, ...]:
        """The columns a problem says to drop (not those to rename), in file order."""
        return tuple(dict.fromkeys(p.column for p in self.problems if p.fix == "drop"))

    @property
    def columns_to_rename(self) -> tuple[str, ...]:
        """The columns without a name or with a repeated name, as they were renamed."""
        return tuple(p.column for p in self.problems if p.fix == "rename")


def describe_upload(
    source: Source,
    *,
    header: bool | None = None,
    column_names: list[str] | None = None,
    max_categories: int = MAX_CATEGORIES,
    limits: Limits = DEFAULT_LIMITS,
    preview_rows: int = 5,
) -> UploadSummary:
    """Read an upload just enough to show it: DataError if it is unreadable or not a data format.

    header, column_names: as `load_dataset` takes them (None detects the header row).
    Column problems are listed, not raised (the label is not chosen yet); nothing is fitted
    or stored; `load_dataset` does the full validation.
    """
    raw = read_source(source, limits)
    fmt = detect_format(raw)
    if fmt in ("csv", "parquet"):
        table = read_table(raw, fmt, limits, header=header, column_names=column_names)
        frame = table.frame
        guesses = [c for c in frame.columns if c.lower() in LABEL_GUESSES]
        problems = column_problems(frame, max_categories=max_categories, file_name=raw.name)
        text = table.text
        return UploadSummary(
            name=raw.name, format=fmt, n_rows=len(frame), columns=tuple(frame.columns),
            suggested_label=guesses[0] if len(guesses) == 1 else None, preview=frame.head(preview_rows),
            separator=None if text is None else text.separator_name, encoding=None if text is None else text.encoding,
            header=None if text is None else text.header, header_detected=None if text is None else text.header_detected,
            header_note="" if text is None else text.header_note, problems=(*table.problems, *problems),
            notes=table.notes, table=frame,
        )  # fmt: skip
    with open_zip(raw, limits) as archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
    if fmt == "npz":
        train, test, _ = read_npz(raw, limits=limits)
        arrays = {"x": train.x.shape, "y": train.y.shape} if test is None else {
            "x_train": train.x.shape, "y_train": train.y.shape, "x_test": test.x.shape, "y_test": test.y.shape}
        keys = tuple(n.removesuffix(".npy") for n in names if n.endswith(".npy"))
        return UploadSummary(name=raw.name, format=fmt, n_rows=len(train.x), columns=keys, arrays=arrays)
    images = [PurePosixPath(n) for n in names if PurePosixPath(n).suffix.lower() in IMAGE_EXTENSIONS]
    folders = [path.parent.name for path in images if not str(path).startswith("__MACOSX/")]
    tally = Counter(folders)
    counts = {folder: tally[folder] for folder in sorted(tally) if folder}
    return UploadSummary(name=raw.name, format=fmt, n_rows=len(folders), classes=counts)
