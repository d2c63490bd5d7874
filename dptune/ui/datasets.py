"""Data page helpers: inspect an upload, the choices a table needs, load it (cached), and commit it.

What inspection finds (separator, header row, problems, identifier and leak warnings, the
class count) is shown to the data owner only; the page turns it into choices the owner
makes (header row, columns to drop, renaming, many classes), and only those choices reach
`load_dataset`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dptune.data import ColumnWarning, UploadSummary, column_warnings, describe_upload
from dptune.data.diagnose import MANY_CLASSES, class_count, many_classes_question, warnings_text
from dptune.data.labels import MAX_CLASSES
from dptune.ui import core

HEADER_CHOICES = ("names the columns (a header row)", "is data (the file has no header row)")
TABLE_WIDGETS = ("data-header", "data-names", "data-fix-names", "data-label", "data-sensitive", "data-drop",
                 "data-many-classes")
"""Keys of the table choices, forgotten when another file is chosen (their defaults come from that file)."""


@st.cache_resource(show_spinner=False, max_entries=8)
def inspect_upload(digest: str, name: str, reading_key: str, _content: bytes) -> UploadSummary:
    """`describe_upload` with the header choice in `reading_key` (JSON: header, column_names); DataError when unreadable."""
    return describe_upload((name, _content), preview_rows=50, **json.loads(reading_key))


@st.cache_resource(show_spinner=False, max_entries=16)
def owner_warnings(digest: str, reading_key: str, label: str, ignore: tuple[str, ...],
                   _summary: UploadSummary) -> list[ColumnWarning]:
    """Identifier-like and label-leaking columns of the table (for the data owner; cached per choice)."""
    return column_warnings(_summary.table, label, ignore=ignore)


def forget_choices_of_other_files(digest: str) -> None:
    """Reset the table choices when the uploaded file changes, so the new file's defaults apply."""
    if st.session_state.get("data-choices-for") != digest:
        for key in TABLE_WIDGETS:
            st.session_state.pop(key, None)
        st.session_state["data-choices-for"] = digest


def drop_also(columns: Iterable[str]) -> None:
    """Add `columns` to the columns to ignore (the one-click "drop these columns")."""
    st.session_state["data-drop"] = list(dict.fromkeys([*st.session_state.get("data-drop", []), *columns]))


def read_choice(digest: str, name: str, content: bytes) -> tuple[UploadSummary, dict[str, Any]]:
    """Inspect the upload; for a text table, show how it was read and ask whether its first row is a header.

    Returns the summary as the user's choice reads it and the reading options (header,
    column_names) for `load_dataset`.
    """
    detected = inspect_upload(digest, name, json.dumps({}), content)
    if detected.format != "csv":
        return detected, {}
    st.caption(
        f"Read as **{detected.separator}**-separated text ({detected.encoding}): {detected.n_rows:,} rows, "
        f"{len(detected.columns)} columns; {detected.header_note}."
    )
    if "data-header" not in st.session_state:
        st.session_state["data-header"] = HEADER_CHOICES[0 if detected.header else 1]
    first_row = st.radio("The file's first row", HEADER_CHOICES, horizontal=True, key="data-header")
    reading: dict[str, Any] = {"header": first_row == HEADER_CHOICES[0]}
    if not reading["header"]:
        typed = st.text_input(
            "Column names (optional)", key="data-names", placeholder=f"{len(detected.columns)} names, comma-separated",
            help="Leave empty to name the columns col_1 … col_k by position.",
        )
        if typed.strip():
            reading["column_names"] = [n.strip() for n in typed.split(",")]
    if reading == {"header": detected.header}:
        return detected, reading
    return inspect_upload(digest, name, json.dumps(reading, sort_keys=True), content), reading


def problems_text(summary: UploadSummary) -> str:
    """The upload's problems as markdown, and what the page does about them."""
    count = len(summary.problems)
    lines = [f"**{summary.name}** has {count} problem{'s' if count > 1 else ''} that would stop it from loading as it is:"]
    lines += [f"- {problem.reason}" for problem in summary.problems]
    fixes = []
    if summary.columns_to_drop:
        fixes.append(f"{', '.join(map(repr, summary.columns_to_drop))} preselected in *Columns to ignore*")
    if summary.columns_to_rename:
        fixes.append(f"{', '.join(map(repr, summary.columns_to_rename))} renamed (the checkbox below)")
    lines.append(f"\nHandled here, so you need no new file: {'; '.join(fixes)}.")
    return "\n".join(lines)


def table_choices(digest: str, summary: UploadSummary, reading: dict[str, Any]) -> dict[str, Any] | None:
    """The widgets of a table (problems, label, sensitive attribute, columns to drop, warnings, many
    classes); returns the options for `load_dataset`, or None until the user confirms many classes."""
    options = dict(reading)
    if summary.problems:
        st.warning(problems_text(summary), icon=":material/build:")
    if summary.columns_to_rename:
        renamed = ", ".join(summary.columns_to_rename)
        if st.checkbox(f"Rename the columns without a name or with a repeated name (as {renamed})", value=True,
                       key="data-fix-names"):
            options["fix_column_names"] = True
    columns = list(summary.columns)
    guess = summary.suggested_label
    left, mid, right = st.columns(3)
    label = left.selectbox("Label column", columns, index=columns.index(guess) if guess else len(columns) - 1,
                           key="data-label")
    sensitive = mid.selectbox(
        "Sensitive attribute (optional)", ["(none)"] + [c for c in columns if c != label], key="data-sensitive",
        help="Kept aside with the data (not a feature); its groups are counted per class below.",
    )
    candidates = [c for c in columns if c not in (label, sensitive)]
    if "data-drop" not in st.session_state:
        st.session_state["data-drop"] = list(summary.columns_to_drop)
    st.session_state["data-drop"] = [c for c in st.session_state["data-drop"] if c in candidates]
    drop = right.multiselect("Columns to ignore", candidates, key="data-drop",
                             help="Identifiers, free text, leaks of the label.")
    options.update(label_column=label, drop_columns=drop)
    if sensitive != "(none)":
        options["sensitive_column"] = sensitive
    ignore = (sensitive,) if sensitive != "(none)" else ()
    found = owner_warnings(digest, json.dumps(reading, sort_keys=True), label, ignore, summary)
    warnings = [w for w in found if w.column not in drop]
    if warnings:
        st.warning(warnings_text(warnings, label), icon=":material/visibility:")
        flagged = [w.column for w in warnings]
        st.button(f"Drop these columns ({', '.join(flagged)})", key="data-drop-warned", on_click=drop_also,
                  args=(flagged,))
    dropped = [w.column for w in found if w.column in drop]
    if dropped:
        st.caption(f"Ignored on this page's advice: {', '.join(map(repr, dropped))} (identifiers or leaks). Such a "
                   "choice is made after looking at the data, so ε does not cover it; the privacy statement says so.")
    classes = class_count(summary.table[label])
    if MANY_CLASSES < classes <= MAX_CLASSES:
        st.warning(many_classes_question(label, classes), icon=":material/help:")
        if not st.checkbox(f"Yes: train a classifier of {classes} classes", key="data-many-classes"):
            st.info("Confirm the classes above (or pick another label) to use this file; the pages keep using the "
                    "current dataset until then.", icon=":material/pending:")
            return None
    options["missing"] = st.radio("Missing feature values", ["impute", "drop"], horizontal=True, key="data-missing",
                                  help="impute: encoded as 0 (nothing is fitted on the rows); drop: drop the rows")
    return options


def digest_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def commit_upload(name: str, content: bytes, options: dict[str, Any], prepared: Any) -> None:
    """The upload becomes the current dataset: file and prepared arrays go to the workspace."""
    ws = core.workspace()
    path = ws.save_upload(name, content)
    prepared.dataset.save(ws.root)
    state = core.load_state()
    state["dataset"] = {
        "source": "upload",
        "builtin": state["dataset"].get("builtin", "digits"),
        "upload": {"name": name, "path": str(path), "sha256": digest_of(content)},
        "options": options,
    }
    state["model"] = {"source": "suggested", "spec": None, "upload": None}
    state["clip"].update(l2_norm_clip=None, selection=None)
    core.save_state(state)


def preprocessing_caption(dataset: Any) -> str:
    """What preparing the dataset did and what it cost, from its preprocessing record (∞ shown as no privacy)."""
    epsilon = dataset.preprocessing_epsilon
    cost = "∞ (no privacy)" if math.isinf(epsilon) else f"{epsilon:g}"
    if dataset.preprocessing_delta:
        cost += f", δ = {dataset.preprocessing_delta:.3g}"
    return f"Preparation costs ε = {cost}: {dataset.preprocessing_note or 'no record'}."


def sample_images(x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...], per_class: int = 1,
                  limit: int = 12) -> tuple[list[np.ndarray], list[str]]:
    """A few training images (one per class first), scaled to [0, 1] for st.image."""
    images, captions = [], []
    for label in range(len(class_names)):
        for index in np.flatnonzero(y == label)[:per_class]:
            image = np.asarray(x[index], dtype=np.float32)
            low, high = float(image.min()), float(image.max())
            image = (image - low) / (high - low) if high > low else np.zeros_like(image)
            if image.shape[-1] == 1:
                image = image[..., 0]
            images.append(image)
            captions.append(str(class_names[label]))
        if len(images) >= limit:
            break
    return images, captions


def group_counts(sensitive: np.ndarray | None, y: np.ndarray, class_names: tuple[str, ...]) -> pd.DataFrame | None:
    """Training examples per sensitive group and class (None when there is no sensitive attribute)."""
    if sensitive is None:
        return None
    frame = pd.DataFrame({"group": np.asarray(sensitive).astype(str), "class": np.asarray(class_names)[y]})
    return frame.groupby(["group", "class"]).size().unstack(fill_value=0)
