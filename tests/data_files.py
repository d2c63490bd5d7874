"""Real data written out in every format dptune reads (sklearn's bundled digits and breast cancer)."""

from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd


@lru_cache(maxsize=1)
def _digits():
    from sklearn.datasets import load_digits

    return load_digits()


@lru_cache(maxsize=1)
def _cancer():
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(as_frame=True)


def digits_frame() -> pd.DataFrame:
    """64 pixel columns (0..16) and an integer `label`."""
    bunch = _digits()
    frame = pd.DataFrame(bunch.data.astype(int), columns=[f"pixel{i}" for i in range(64)])
    frame["label"] = bunch.target
    return frame


def cancer_frame() -> pd.DataFrame:
    """30 numeric features, a text `diagnosis` label and a `size_group` sensitive attribute."""
    bunch = _cancer()
    frame = bunch.data.copy()
    frame["diagnosis"] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    frame["size_group"] = np.where(frame["mean radius"] > frame["mean radius"].median(), "large", "small")
    return frame


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) in [0, 1] float32, labels)."""
    bunch = _digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target


def png_bytes(pixels: np.ndarray, mode: str = "L", fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def write_csv(frame: pd.DataFrame, path: Path, **kwargs) -> Path:
    frame.to_csv(path, index=False, **kwargs)
    return path


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def write_digits_zip(path: Path, per_class: int = 20, top: str = "digits/") -> Path:
    """PNG digits (8x8, 0..16 scaled to 0..255) in `<top><class>/<i>.png` folders."""
    images, labels = digits_images()
    with zipfile.ZipFile(path, "w") as archive:
        for digit in range(10):
            for i, index in enumerate(np.flatnonzero(labels == digit)[:per_class]):
                pixels = np.round(images[index] * 255).astype(np.uint8)
                archive.writestr(f"{top}{digit}/{i:03d}.png", png_bytes(pixels))
    return path


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def tiny_png(value: int = 128, size: int = 8) -> bytes:
    return png_bytes(np.full((size, size), value, dtype=np.uint8))


MESSY_ROWS = 300


def messy_csv(rows: int = MESSY_ROWS) -> bytes:
    """A loan table as real uploads come: semicolon-separated with decimal commas, a numeric `id` unique per
    row, two columns both named `score`, a free-text `name` (one per row: refused as a feature), a sensitive
    `sex`, and `decision_code` recorded after the outcome (it predicts the label `approved` for 299 of 300
    rows: one code was mistyped). Columns: id;age;income;score;score;sex;name;decision_code;approved."""
    rng = np.random.default_rng(7)
    age = rng.integers(18, 80, size=rows)
    income = np.round(rng.lognormal(10, 0.5, size=rows), 2)
    approved = np.where(income / 30_000 + rng.normal(0, 0.6, size=rows) > 1, "yes", "no")
    code = np.where(approved == "yes", "A", "R")
    code[17] = "A" if code[17] == "R" else "R"
    lines = ["id;age;income;score;score;sex;name;decision_code;approved"]
    for i in range(rows):
        lines.append(";".join([
            str(1000 + i), str(age[i]), f"{income[i]:.2f}".replace(".", ","), f"{rng.normal():.3f}".replace(".", ","),
            str(int(rng.integers(300, 850))), "f" if rng.random() < 0.5 else "m", f"Applicant {i:04d}", code[i],
            approved[i],
        ]))  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def aligned_table(frame: pd.DataFrame, *, header: bool = False) -> bytes:
    """`frame` as UCI `.data`-style text: columns separated by runs of spaces (aligned), by default no header."""
    return (frame.to_string(index=False, header=header) + "\n").encode()
