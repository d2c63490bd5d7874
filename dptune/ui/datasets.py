"""Data page helpers: inspect an upload, load it (cached), and commit it to the workspace."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from dptune.ui import core

UPLOAD_TYPES = ["csv", "tsv", "txt", "parquet", "pq", "npz", "zip"]


@dataclass(frozen=True)
class UploadInfo:
    """What an upload holds before it is prepared: its format, and its columns for tables."""

    format: str
    columns: tuple[str, ...] = ()
    preview: pd.DataFrame | None = None
    notes: tuple[str, ...] = ()


@st.cache_resource(show_spinner=False, max_entries=8)
def inspect_upload(digest: str, name: str, _content: bytes) -> UploadInfo:
    """Detect the format; read a table's header and first rows (DataError when unreadable)."""
    from dptune.data.sources import detect_format, read_source
    from dptune.data.tabular import read_table

    raw = read_source((name, _content))
    fmt = detect_format(raw)
    if fmt in ("csv", "parquet"):
        frame, notes = read_table(raw, fmt)
        return UploadInfo(fmt, tuple(frame.columns), frame.head(50), tuple(notes))
    if fmt == "npz":
        import io
        import zipfile

        with zipfile.ZipFile(io.BytesIO(_content)) as archive:
            keys = tuple(n[:-4] for n in archive.namelist() if n.endswith(".npy"))
        return UploadInfo(fmt, keys)
    return UploadInfo(fmt)


@st.cache_resource(show_spinner="Preparing the data…", max_entries=8)
def prepare_upload(digest: str, name: str, options_key: str, _content: bytes) -> Any:
    """`dptune.data.load_dataset((name, bytes), **options)` -> PreparedData (DataError when unusable)."""
    from pathlib import Path

    from dptune.data import load_dataset

    if isinstance(_content, Path):
        _content = _content.read_bytes()
    options = json.loads(options_key)
    if "image_size" in options:
        options["image_size"] = tuple(options["image_size"])
    return load_dataset((name, _content), **options)


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
