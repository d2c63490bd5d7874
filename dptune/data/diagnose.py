"""What is wrong with a table's columns, all at once, and what the data owner should look at.

Two kinds of findings:

- problems (`ColumnProblem`): what `load_dataset` refuses (a column without a name, two
  columns with one name, a column with no values, nested values, a non-numeric column with
  too many values). Every problem of a file is raised together as one `TableProblems`
  error, which lists them and says how to fix each: drop the column or rename it.
- warnings (`ColumnWarning`): what is accepted but suspicious: a column unique in every row
  (an identifier), a column that predicts the label almost perfectly on its own (a leak,
  e.g. recorded after the outcome), a label with many classes.

Findings are computed from the rows and shown to the data owner only, who sees the data
anyway; they change nothing by themselves. Dropping a column on their advice is a choice
made after looking at the data, which the privacy statement lists among what ε does not cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dptune.errors import DataError

LEAK_ACCURACY = 0.98
"""A column that predicts the label with at least this accuracy on its own (majority class per value or bin) leaks."""
LEAK_CORRELATION = 0.98
"""A numeric column whose |correlation| with a numeric label is at least this leaks."""
MIN_ROWS = 20
"""Fewer labelled rows than this give no warnings (unique values and perfect predictions are chance)."""
MANY_CLASSES = 20
"""More classes than this in a table's label are worth confirming (a number such as an age, not a class)."""
LEAK_BINS = 50
ROWS_PER_GROUP = 10
"""Values (or quantile bins) hold this many rows on average when a column predicts the label by majority vote."""
OWNER_NOTE = (
    "These findings are for you, the data owner, who sees the data anyway. Dropping a column on this advice is a "
    "choice made after looking at the data, which the privacy statement lists among what ε does not cover."
)


@dataclass(frozen=True)
class ColumnProblem:
    """One reason a table cannot be used as it is.

    column: the column's name in the table as read (unique: a duplicate's second copy is
        name.1, an unnamed column col_<position>).
    reason: what is wrong, in words.
    fix: "drop" (drop the column, or group its values) or "rename" (give it a unique name).
    """

    column: str
    reason: str
    fix: str = "drop"


MAX_LISTED_PROBLEMS = 20
"""Most problems (and columns to drop) a TableProblems message lists; `problems` holds them all."""


class TableProblems(DataError):
    """Every problem of a table at once (a DataError); `problems` lists them, `columns_to_drop` the columns to drop."""

    def __init__(self, file_name: str, problems: Sequence[ColumnProblem]):
        self.file_name = file_name
        self.problems = tuple(problems)
        super().__init__(self._message())

    @property
    def columns_to_drop(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.column for p in self.problems if p.fix == "drop"))

    def _message(self) -> str:
        count = len(self.problems)
        lines = [f"{self.file_name!r} has {count} problem{'s' if count != 1 else ''}:"]
        lines += [f"- {problem.reason}" for problem in self.problems[:MAX_LISTED_PROBLEMS]]
        if count > MAX_LISTED_PROBLEMS:
            lines.append(f"- … and {count - MAX_LISTED_PROBLEMS:,} more")
        drop = self.columns_to_drop
        if drop:
            shown = ", ".join(map(repr, drop[:MAX_LISTED_PROBLEMS])) + (", …" if len(drop) > MAX_LISTED_PROBLEMS else "")
            lines.append(
                f"Drop the column{'s' if len(drop) > 1 else ''} {shown} (Columns to ignore on "
                f"the Data page, drop_columns in Python), or group {'their' if len(drop) > 1 else 'its'} values into "
                "fewer categories (or raise the category limit)."
            )
        if any(p.fix == "rename" for p in self.problems):
            lines.append(
                "Give every column its own name in the header row, or let dptune rename them (the Data page's "
                "checkbox, fix_column_names=True in Python: an unnamed column becomes col_<position>, a repeated "
                "name name.1, name.2, …)."
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class ColumnWarning:
    """A column the data owner should look at: kind "identifier" or "leak", and why in words."""

    column: str
    kind: str
    detail: str

    def text(self) -> str:
        return f"{self.column!r} {self.detail}"


def column_warnings(frame: pd.DataFrame, label: str, *, ignore: Iterable[str] = ()) -> list[ColumnWarning]:
    """Identifier-like and label-leaking columns of `frame` (the label and `ignore` excluded).

    identifier: present in every labelled row with a different value in each (integers or
        text; ≥ `MIN_ROWS` rows): it lets a model memorise rows and means nothing for new ones.
    leak: predicting the label from the column alone, by the majority class of each value
        (or of each quantile bin of a numeric column with many values), is right for at least
        `LEAK_ACCURACY` of the rows and removes ≥ 90 % of the errors of always guessing the
        most common class; or, for a numeric label, |Pearson r| ≥ `LEAK_CORRELATION`.
    """
    labels = frame[label]
    present = labels.notna().to_numpy()
    y = _normalised(labels[present])
    n = len(y)
    if n < MIN_ROWS or y.nunique() < 2:
        return []
    baseline = y.value_counts().iloc[0] / n
    y_numbers = pd.to_numeric(y, errors="coerce")
    skip = {label, *ignore}
    found: list[ColumnWarning] = []
    for name in frame.columns:
        if name in skip:
            continue
        values = frame[name][present].reset_index(drop=True)
        numbers = pd.to_numeric(values, errors="coerce") if values.dtype.kind not in "biuf" else values.astype(float)
        numeric = bool(numbers[values.notna()].notna().all())
        if _is_identifier(values, numbers if numeric else None, n):
            found.append(ColumnWarning(name, "identifier", f"has a different value in each of the {n:,} rows: an "
                                       "identifier? A model can memorise it, and it means nothing for new rows"))
            continue
        accuracy = _majority_accuracy(values, numbers if numeric else None, y.reset_index(drop=True))
        if accuracy is not None and accuracy >= LEAK_ACCURACY and (accuracy - baseline) >= 0.9 * (1 - baseline):
            found.append(ColumnWarning(name, "leak", f"predicts {label!r} on its own for {accuracy:.1%} of the rows "
                                       f"(the most common class alone: {baseline:.1%}): recorded after the outcome, "
                                       "or a copy of the label?"))
            continue
        if numeric and y_numbers.notna().all() and numbers.notna().sum() >= MIN_ROWS:
            r = _correlation(numbers.to_numpy(), y_numbers.to_numpy(dtype=float))
            if r is not None and abs(r) >= LEAK_CORRELATION:
                found.append(ColumnWarning(name, "leak", f"is almost a linear function of {label!r} (correlation "
                                           f"r = {r:+.3f}): a copy of the label?"))
    return found


def warnings_text(warnings: Sequence[ColumnWarning], label: str) -> str:
    """The warnings as one markdown text for the data owner (empty when there are none)."""
    if not warnings:
        return ""
    lines = [f"{len(warnings)} column{'s' if len(warnings) > 1 else ''} to look at before training on {label!r}:"]
    lines += [f"- {w.text()}" for w in warnings]
    return "\n".join([*lines, "", OWNER_NOTE])


def class_count(labels: pd.Series) -> int:
    """How many classes a label column holds: distinct non-missing values (3 and 3.0 count once)."""
    return int(_normalised(labels.dropna()).nunique())


def many_classes_question(label: str, count: int) -> str:
    """The question to ask before `count` > `MANY_CLASSES` distinct values of a table's label become classes."""
    return (
        f"Treat {count} distinct values of `{label}` as classes? More than {MANY_CLASSES} classes is unusual for a "
        "table: a number such as an age or an amount is better grouped into a few classes, or is the wrong label column."
    )


def _normalised(values: pd.Series) -> pd.Series:
    """Values as comparable text: numbers as numbers (3 and 3.0 alike), other values stripped."""
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    if numbers.notna().all():
        return numbers.map(lambda v: str(int(v)) if float(v).is_integer() else repr(float(v)))
    return text


def _is_identifier(values: pd.Series, numbers: pd.Series | None, n: int) -> bool:
    if n < MIN_ROWS or values.isna().any() or values.nunique() != n:
        return False
    if numbers is None:
        return True
    return bool(np.all(np.mod(numbers.to_numpy(dtype=float), 1) == 0))


def _majority_accuracy(values: pd.Series, numbers: pd.Series | None, y: pd.Series) -> float | None:
    """Accuracy of the majority class per value (per quantile bin for a numeric column with many values)."""
    n = len(y)
    distinct = values.nunique()
    if distinct <= n / ROWS_PER_GROUP:
        key = values.astype(str).where(values.notna(), "\x00missing")
    elif numbers is not None:
        bins = max(2, min(LEAK_BINS, n // ROWS_PER_GROUP))
        ranks = numbers.rank(method="first")
        key = pd.qcut(ranks, q=bins, labels=False, duplicates="drop").astype(float).fillna(-1.0)
    else:
        return None
    return float(pd.crosstab(key, y).max(axis=1).sum() / n)


def _correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < MIN_ROWS or np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])
