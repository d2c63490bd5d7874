"""NPZ archives: features `x` and labels `y`, or `x_train`/`y_train`/`x_test`/`y_test`.

Always read with `allow_pickle=False`: an array of Python objects is refused, never
unpickled. Features are numeric; 2-D `x` is a table (one column per feature), 3-D is
grayscale images (n, height, width) and 4-D is images (n, height, width, channels).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import numpy as np

from dptune.data.sources import Limits, RawFile, human_bytes, open_zip
from dptune.errors import DataError


@dataclass(frozen=True, eq=False)
class ArrayPart:
    """Features, raw labels and optional sensitive values of one part of an NPZ (all or train/test)."""

    x: np.ndarray
    y: np.ndarray
    sensitive: np.ndarray | None


def read_npz(
    raw: RawFile, *, limits: Limits, sensitive_key: str | None = None
) -> tuple[ArrayPart, ArrayPart | None, list[str]]:
    """Read and check an NPZ; returns (train-or-all part, test part or None, notes)."""
    with open_zip(raw, limits) as archive:  # size, count and path checks before numpy reads anything
        _check_headers(archive, raw.name, limits)
    notes: list[str] = []
    try:
        with np.load(io.BytesIO(raw.content), allow_pickle=False) as stored:
            keys = set(stored.files)
            arrays = {key: _get(stored, key, raw.name) for key in keys}
    except DataError:
        raise
    except MemoryError:
        raise DataError(f"{raw.name!r} needs more memory than this machine has; use fewer or smaller arrays") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{raw.name!r} is not a readable NPZ archive ({str(error)[:200]}); save it with np.savez") from None
    split_keys = {"x_train", "y_train", "x_test", "y_test"}
    if split_keys <= keys:
        train = _part(arrays, "x_train", "y_train", _sensitive_key(sensitive_key, "_train"), raw.name)
        test = _part(arrays, "x_test", "y_test", _sensitive_key(sensitive_key, "_test"), raw.name)
        if train.x.shape[1:] != test.x.shape[1:]:
            raise DataError(
                f"in {raw.name!r}, x_train rows have shape {train.x.shape[1:]} but x_test rows have shape "
                f"{test.x.shape[1:]}; both must describe examples the same way"
            )
        used = split_keys
        notes.append("used x_test/y_test as the validation split")
    elif {"x", "y"} <= keys:
        train, test, used = _part(arrays, "x", "y", sensitive_key, raw.name), None, {"x", "y"}
    else:
        raise DataError(
            f"{raw.name!r} holds the arrays {sorted(keys)}; dptune needs 'x' and 'y' (features and labels), or "
            "'x_train', 'y_train', 'x_test' and 'y_test': save with np.savez(file, x=features, y=labels)"
        )
    if sensitive_key is not None:
        used = used | {k for k in keys if k.startswith(sensitive_key)}
    ignored = sorted(keys - used)
    if ignored:
        notes.append(f"ignored the arrays {', '.join(ignored)}")
    return train, test, notes


def _check_headers(archive: zipfile.ZipFile, file_name: str, limits: Limits) -> None:
    """Refuse object arrays, arrays whose header claims more data than the member holds, and
    arrays that, read and converted to float32 features, would need more than
    `limits.max_array_bytes` of memory.

    numpy allocates an array from its header's shape before reading the data, so a forged
    header could otherwise ask for any amount of memory.
    """
    from numpy.lib import format as npy_format

    needed = 0
    for info in archive.infolist():
        if info.is_dir():
            continue
        key = info.filename.removesuffix(".npy")
        try:
            with archive.open(info) as handle:
                version = npy_format.read_magic(handle)
                read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
                shape, _, dtype = read_header(handle)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError, TypeError) as error:
            raise DataError(f"the array {key!r} in {file_name!r} is corrupt ({str(error)[:200]}); save it again with np.savez") from None
        if dtype.hasobject:
            raise DataError(
                f"the array {key!r} in {file_name!r} holds Python objects, which could only be loaded by unpickling "
                "(unsafe, refused); save plain numeric arrays (labels as integers or strings) with np.savez"
            )
        elements = int(np.prod(shape, dtype=np.float64))
        if elements * dtype.itemsize > info.file_size:
            raise DataError(
                f"the array {key!r} in {file_name!r} declares shape {str(shape)[:80]} but holds less data; the file is "
                "corrupt: save it again with np.savez"
            )
        needed += elements * (dtype.itemsize + 8)  # as stored, then float32 features and their split
        if needed > limits.max_array_bytes:
            raise DataError(
                f"the arrays of {file_name!r} would need {human_bytes(needed)} of memory to read and convert, over "
                f"the limit of {human_bytes(limits.max_array_bytes)}; use fewer or smaller arrays"
            )


def _get(stored, key: str, file_name: str) -> np.ndarray:
    try:
        return stored[key]
    except ValueError as error:
        if "pickle" in str(error).lower() or "object arrays" in str(error).lower():
            raise DataError(
                f"the array {key!r} in {file_name!r} holds Python objects, which could only be loaded by unpickling "
                "(unsafe, refused); save plain numeric arrays (labels as integers or strings) with np.savez"
            ) from None
        raise DataError(f"the array {key!r} in {file_name!r} cannot be read ({str(error)[:200]}); save it again with np.savez") from None
    except MemoryError:
        raise DataError(f"the array {key!r} in {file_name!r} needs more memory than this machine has") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"the array {key!r} in {file_name!r} is corrupt ({str(error)[:200]}); save it again with np.savez") from None


def _sensitive_key(key: str | None, suffix: str) -> str | None:
    return None if key is None else key + suffix


def _part(arrays: dict, x_key: str, y_key: str, s_key: str | None, file_name: str) -> ArrayPart:
    x, y = arrays[x_key], arrays[y_key]
    if x.dtype.kind not in "biuf":
        raise DataError(
            f"the features {x_key!r} in {file_name!r} have type {x.dtype}; they must be numbers (bool, int or float)"
        )
    if x.ndim == 0 or len(x) == 0:
        raise DataError(f"the features {x_key!r} in {file_name!r} hold no examples")
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    if x.ndim > 4:
        raise DataError(
            f"the features {x_key!r} in {file_name!r} have shape {x.shape}; use (n, features), (n, height, width) "
            "or (n, height, width, channels)"
        )
    if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[3] > 4:
        raise DataError(
            f"the images {x_key!r} in {file_name!r} have shape {x.shape}, which looks channels-first; dptune "
            "expects (n, height, width, channels): transpose with x.transpose(0, 2, 3, 1)"
        )
    y = _labels(y, y_key, file_name)
    if len(x) != len(y):
        raise DataError(
            f"in {file_name!r}, {x_key!r} has {len(x):,} examples but {y_key!r} has {len(y):,} labels; "
            "they must have one label per example, in the same order"
        )
    sensitive = None
    if s_key is not None:
        if s_key not in arrays:
            raise DataError(
                f"the sensitive attribute {s_key!r} is not an array in {file_name!r}; its arrays are {sorted(arrays)}"
            )
        sensitive = np.asarray(arrays[s_key])
        if sensitive.ndim != 1 or len(sensitive) != len(x):
            raise DataError(
                f"the sensitive attribute {s_key!r} in {file_name!r} must hold one value per example "
                f"({len(x):,}), got shape {sensitive.shape}"
            )
    return ArrayPart(x=x, y=y, sensitive=sensitive)


def _labels(y: np.ndarray, key: str, file_name: str) -> np.ndarray:
    if y.dtype.kind not in "biufUS":
        raise DataError(f"the labels {key!r} in {file_name!r} have type {y.dtype}; use integers or strings")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and y.dtype.kind in "biuf":
        is_one_hot = np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()
        if not is_one_hot:
            raise DataError(
                f"the labels {key!r} in {file_name!r} have shape {y.shape}; give one class per example "
                "(shape (n,)) or one-hot rows"
            )
        y = y.argmax(axis=1)
    elif y.ndim != 1:
        raise DataError(f"the labels {key!r} in {file_name!r} have shape {y.shape}; give one class per example, shape (n,)")
    if y.dtype.kind == "S":
        y = y.astype(str)
    return y


def image_scale(x: np.ndarray, *, limits: Limits, file_name: str) -> tuple[np.ndarray, str]:
    """Images as float32 scaled by a factor fixed by the dtype alone; returns (images (n, h, w, c), note).

    uint16: divided by 65535; bool: 0 or 1; every other integer type: pixel values 0-255,
    divided by 255 (DataError for a value outside 0-255); floats: used as they are. The
    factor never depends on the values, so one image cannot change how any other is scaled.
    """
    if x.ndim == 3:
        x = x[..., np.newaxis]
    needed = x.size * 4
    if needed > limits.max_array_bytes:
        raise DataError(
            f"the images in {file_name!r} need {human_bytes(needed)} as float32, over the limit of "
            f"{human_bytes(limits.max_array_bytes)}; use fewer or smaller images"
        )
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"the images in {file_name!r} contain NaN or infinite values; fix or remove those examples")
    if x.dtype == np.uint16:
        return (x.astype(np.float32) / np.float32(65535.0)), "16-bit pixel values divided by 65535 (a fixed scale)"
    if x.dtype.kind == "b":
        return x.astype(np.float32), "boolean pixels used as 0 and 1"
    if x.dtype.kind in "iu":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(
                f"the images in {file_name!r} are integers from {x.min()} to {x.max()}, outside 0-255; integer pixels "
                "are divided by 255 (a fixed scale, so that no image changes how the others are scaled): save them "
                "as uint8 (0-255), uint16 (divided by 65535) or floats already scaled"
            )
        return (x.astype(np.float32) / np.float32(255.0)), "integer pixel values divided by 255 (a fixed scale)"
    return x.astype(np.float32), "float pixel values used as they are"
