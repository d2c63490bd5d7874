"""Reading an uploaded file safely: size limits, ZIP safety and the real file type.

A source is a path or a `(file_name, bytes)` pair (what a Streamlit upload gives), so the
UI never has to write an upload to disk before it is validated. Nothing here writes to
disk: ZIP members are read into memory, never extracted, so no path inside an archive can
reach the file system.

The type of a file is decided from its content (magic bytes), and when the extension says
something else the user is told, instead of failing later with a parser's traceback.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dptune.errors import DataError

MiB = 1024 * 1024

MAX_UPLOAD_BYTES = 200 * MiB
"""Largest file accepted (bytes, as stored/uploaded)."""
MAX_ZIP_UNCOMPRESSED_BYTES = 1024 * MiB
"""Largest total uncompressed size of a ZIP (image ZIP or NPZ), against zip bombs."""
MAX_ZIP_FILES = 100_000
"""Most members a ZIP may hold."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""Most pixels one source image may have, read from its header before it is decoded
(decompression bombs; a 25-megapixel PNG costs about 1.6 s to decode). Images are resized
to at most 1024 pixels per side anyway."""
MAX_ARRAY_BYTES = 4 * 1024 * MiB
"""Largest prepared feature array (float32 bytes, training + validation)."""

Source = str | os.PathLike | tuple[str, bytes]
"""A path, or (file name, content) for an in-memory upload."""


@dataclass(frozen=True)
class Limits:
    """Resource limits that protect the app from oversized or malicious uploads.

    All sizes in bytes. Tests pass small values; the defaults are the module constants.
    """

    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_zip_uncompressed_bytes: int = MAX_ZIP_UNCOMPRESSED_BYTES
    max_zip_files: int = MAX_ZIP_FILES
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_array_bytes: int = MAX_ARRAY_BYTES


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, eq=False)
class RawFile:
    """The bytes of one source file and the name it was given (for messages and extension)."""

    name: str
    content: bytes

    @property
    def extension(self) -> str:
        return PurePosixPath(self.name.replace("\\", "/")).suffix.lower()

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name.replace("\\", "/")).stem or "dataset"


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def read_source(source: Source, limits: Limits = DEFAULT_LIMITS, *, what: str = "file") -> RawFile:
    """Read a path or a (name, bytes) upload into memory, enforcing the upload size limit."""
    if isinstance(source, tuple):
        if len(source) != 2 or not isinstance(source[0], str) or not isinstance(source[1], (bytes, bytearray, memoryview)):
            raise DataError(f"an uploaded {what} must be given as (file name, bytes)")
        name, content = source[0], bytes(source[1])
        _check_size(name, len(content), limits, what)
    else:
        path = Path(source)
        name = path.name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise DataError(f"the {what} {path} does not exist; check the path") from None
        except OSError as error:
            raise DataError(f"cannot read the {what} {path}: {error.strerror or error}") from None
        if path.is_dir():
            raise DataError(f"{path} is a folder, not a file: zip a folder of images first, or name a data file")
        _check_size(name, size, limits, what)
        try:
            content = path.read_bytes()
        except OSError as error:
            raise DataError(f"cannot read the {what} {path}: {error.strerror or error}") from None
        _check_size(name, len(content), limits, what)
    if not content:
        raise DataError(f"the {what} {name!r} is empty (0 bytes); upload a file that holds the data")
    return RawFile(name=name, content=content)


def _check_size(name: str, size: int, limits: Limits, what: str) -> None:
    if size > limits.max_upload_bytes:
        raise DataError(
            f"the {what} {name!r} is {human_bytes(size)}, over the upload limit of "
            f"{human_bytes(limits.max_upload_bytes)}; use a smaller file (e.g. fewer rows, smaller "
            "images or Parquet instead of CSV), or raise the limit"
        )


# --------------------------------------------------------------------------- file type

FORMAT_NAMES = {
    "csv": "a CSV/TSV text table",
    "parquet": "a Parquet file",
    "npz": "a NumPy .npz archive",
    "image_zip": "a ZIP of images",
    "keras": "a Keras .keras model",
    "npy": "a single NumPy .npy array",
    "xlsx": "an Excel workbook",
    "xls": "an Excel 97-2003 workbook",
    "ods": "an OpenDocument spreadsheet",
    "json": "a JSON document",
    "pickle": "a Python pickle",
    "hdf5": "an HDF5 file",
    "image": "a single image",
    "gzip": "a gzip-compressed file",
    "pdf": "a PDF document",
    "binary": "a binary file of unknown type",
}

EXTENSION_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".tab": "csv",
    ".txt": "csv",
    ".data": "csv",
    ".dat": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".npz": "npz",
    ".zip": "image_zip",
}
"""Data formats dptune reads, by file extension (content decides for other extensions)."""

UNSUPPORTED_EXTENSIONS = {
    ".xlsx": "xlsx", ".xlsm": "xlsx", ".xls": "xls", ".ods": "ods",
    ".json": "json", ".jsonl": "json", ".ndjson": "json",
    ".pkl": "pickle", ".pickle": "pickle", ".joblib": "pickle",
}  # fmt: skip
"""Extensions of formats dptune does not read, refused by name with what to do instead."""


def sniff_format(raw: RawFile) -> str:
    """The file's real type from its content (one of FORMAT_NAMES' keys)."""
    head = raw.content[:8]
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _sniff_zip(raw)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff") or head[:4] in (b"GIF8", b"RIFF") or head[:2] == b"BM":
        return "image"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "xls"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if looks_like_text(raw.content):
        return "csv"
    return "binary"


def _sniff_zip(raw: RawFile) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(raw.content)) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError):
        return "binary"
    if names and all(name.endswith(".npy") for name in names):
        return "npz"
    if "config.json" in names and any(name.startswith("model.weights") for name in names):
        return "keras"
    if "[Content_Types].xml" in names and any(name.startswith("xl/") for name in names):
        return "xlsx"
    return "image_zip"


def looks_like_text(content: bytes) -> bool:
    """True when the start of the file decodes as text (UTF-8/16 or a single-byte code page)."""
    sample = content[: 64 * 1024]
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in sample:
        return False
    control = sum(1 for byte in sample if byte < 32 and byte not in (9, 10, 13, 12))
    return control <= len(sample) // 100


def detect_format(raw: RawFile) -> str:
    """The data format to read ("csv", "parquet", "npz", "image_zip"), checked against the extension.

    Raises DataError when the content is not a data format dptune reads, or when it is not
    what the file's extension says.
    """
    unsupported = UNSUPPORTED_EXTENSIONS.get(raw.extension)
    if unsupported is not None:
        raise DataError(
            f"{raw.name!r} is {FORMAT_NAMES[unsupported]} ({raw.extension}), which dptune cannot read as data"
            + _hint(unsupported)
        )
    actual = sniff_format(raw)
    expected = EXTENSION_FORMATS.get(raw.extension)
    if expected is not None and actual != expected:
        raise DataError(
            f"the file {raw.name!r} is named like {FORMAT_NAMES[expected]} ({raw.extension}) but its content is "
            f"{FORMAT_NAMES[actual]}; upload the right file, or give it the extension that matches its content"
            + _hint(actual)
        )
    if actual not in ("csv", "parquet", "npz", "image_zip"):
        raise DataError(f"{raw.name!r} is {FORMAT_NAMES[actual]}, which dptune cannot read as data" + _hint(actual))
    return actual


def _hint(actual: str) -> str:
    return {
        "xlsx": " (save the sheet as CSV and upload that: in Excel, File > Save As > CSV UTF-8)",
        "xls": " (save the sheet as CSV and upload that: in Excel, File > Save As > CSV UTF-8)",
        "ods": " (save the sheet as CSV and upload that: File > Save As > Text CSV)",
        "json": " (save it as CSV and upload that, e.g. pandas.read_json(path).to_csv('data.csv', index=False); "
                "lines=True for JSON Lines)",
        "pickle": " (dptune never opens pickles: loading one can run any code; save it as CSV with "
                  "df.to_csv('data.csv', index=False), as Parquet, or arrays with np.savez(file, x=..., y=...))",
        "npy": " (a single array holds no labels: save features and labels together with np.savez(file, x=..., y=...))",
        "image": " (put the images in one folder per class and upload a ZIP of the folders)",
        "gzip": " (decompress it first)",
        "keras": " (a .keras file is a model: upload it as the model, not as data)",
        "hdf5": " (convert it to .npz with np.savez(file, x=..., y=...))",
    }.get(actual, " (dptune reads CSV/TSV, Parquet, NPZ and ZIP of images)")


# --------------------------------------------------------------------------- ZIP safety


def open_zip(raw: RawFile, limits: Limits = DEFAULT_LIMITS) -> zipfile.ZipFile:
    """Open a ZIP in memory after checking it is no zip bomb and holds no unsafe paths.

    Checks: member count <= limits.max_zip_files; total declared uncompressed size <=
    limits.max_zip_uncompressed_bytes; no absolute path, `..` component, drive letter or
    symbolic link. Members are later read with `read_member`, which enforces the declared
    size, so an archive that lies about its sizes cannot expand further.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw.content))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as error:
        raise DataError(f"{raw.name!r} is not a readable ZIP archive ({str(error)[:200]}); re-create the archive") from None
    if len(infos) > limits.max_zip_files:
        raise DataError(
            f"the ZIP {raw.name!r} holds {len(infos):,} entries, over the limit of {limits.max_zip_files:,}; "
            "use fewer files"
        )
    total = sum(info.file_size for info in infos)
    if total > limits.max_zip_uncompressed_bytes:
        raise DataError(
            f"the ZIP {raw.name!r} expands to {human_bytes(total)}, over the limit of "
            f"{human_bytes(limits.max_zip_uncompressed_bytes)} uncompressed; use fewer or smaller files"
        )
    for info in infos:
        check_member_path(info, raw.name)
    return archive


def check_member_path(info: zipfile.ZipInfo, archive_name: str) -> None:
    """Refuse members that would land outside a target folder if extracted, and links."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if (
        name.startswith(("/", "\\"))
        or ".." in parts
        or (len(name) > 1 and name[1] == ":")
        or "\x00" in name
    ):
        raise DataError(
            f"the ZIP {archive_name!r} contains the unsafe path {name!r} (absolute or with '..'); "
            "re-create the archive from inside the data folder so all paths are relative"
        )
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DataError(
            f"the ZIP {archive_name!r} contains a symbolic link {name!r}; zip the files themselves, not links"
        )


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, archive_name: str) -> bytes:
    """Read one member, never more than its declared size (a lying header cannot expand it)."""
    try:
        with archive.open(info) as handle:
            data = handle.read(info.file_size + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as error:
        raise DataError(f"cannot read {info.filename!r} in the ZIP {archive_name!r} ({str(error)[:200]}); re-create the archive") from None
    if len(data) > info.file_size:
        raise DataError(f"{info.filename!r} in the ZIP {archive_name!r} is larger than its header says; re-create the archive")
    return data
