"""A ZIP of images in one folder per class -> an image array scaled to [0, 1].

Accepted layout: `<class>/<image>` for every image, optionally inside one common top
folder (`digits/<class>/<image>`, what zipping a folder gives). PNG or JPEG, grayscale
or colour; all images are resized to one size (height, width) and their 8-bit pixel
values divided by 255, a fixed scale: each image's array depends on that image alone.
The channel count is declared (1: grayscale, 3: RGB; alpha is dropped) or, when not,
read from the data (one channel if every image is grayscale, else three), which makes it
part of the schema read from the data. Members are decoded in memory, never extracted.
"""

from __future__ import annotations

import io
import warnings
from pathlib import PurePosixPath

import numpy as np

from dptune.data.sources import Limits, RawFile, human_bytes, open_zip, read_member
from dptune.errors import DataError
from dptune.spec.limits import MAX_IMAGE_FILE_BYTES, MAX_ZIP_MEMBER_RATIO, MiB

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
MAX_IMAGE_SIDE = 1024
"""Largest height or width the images may be resized to."""
IGNORED_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")
GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
CHANNELS = (1, 3)
"""The channel counts an image array may have: grayscale or RGB."""


def check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise DataError(f"image_size must be (height, width) in pixels, got {image_size!r}") from None
    if not (1 <= height <= MAX_IMAGE_SIDE and 1 <= width <= MAX_IMAGE_SIDE):
        raise DataError(
            f"image_size must be between 1 and {MAX_IMAGE_SIDE} pixels per side, got ({height}, {width})"
        )
    return height, width


def check_channels(channels: int | None) -> int | None:
    """None (read from the images) or a declared channel count in CHANNELS."""
    if channels is not None and (isinstance(channels, bool) or channels not in CHANNELS):
        raise DataError(f"channels must be 1 (grayscale), 3 (colour) or None (from the images), got {channels!r}")
    return channels


def read_image_zip(
    raw: RawFile,
    *,
    image_size: tuple[int, int],
    limits: Limits,
    require_classes: bool = True,
    channels: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode every image; returns (x float32 (n, h, w, c) in [0, 1], class folder names, notes).

    require_classes: refuse a ZIP with a single class folder (False for a test file).
    channels: 1 converts every image to grayscale, 3 to RGB; None: 1 if every image is
        grayscale, else 3 (read from the data)."""
    from PIL import Image

    height, width = check_image_size(image_size)
    channels = check_channels(channels)
    archive = open_zip(raw, limits)
    notes: list[str] = []
    members = []
    skipped = 0
    for info in archive.infolist():
        if info.is_dir():
            continue
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.parts[0] == "__MACOSX" or path.name in IGNORED_NAMES or path.name.startswith("._"):
            skipped += 1
            continue
        members.append((path, info))
    if skipped:
        notes.append(f"ignored {skipped} system file(s) (__MACOSX, .DS_Store, Thumbs.db)")
    if not members:
        raise DataError(f"the ZIP {raw.name!r} holds no images; put PNG or JPEG images in one folder per class")
    members.sort(key=lambda item: str(item[0]))

    parts = [path.parts for path, _ in members]
    prefix = 0
    while all(len(p) > prefix + 2 for p in parts) and len({p[prefix] for p in parts}) == 1:
        prefix += 1
    for path, _ in members:
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(
                f"{str(path)!r} in the ZIP {raw.name!r} is not a PNG or JPEG image; remove it (only images "
                "in class folders are allowed)"
            )
    for (path, _), p in zip(members, parts):
        if len(p) - prefix != 2:
            where = "directly in the top of the archive" if len(p) - prefix < 2 else "in a nested folder"
            raise DataError(
                f"{str(path)!r} in {raw.name!r} is {where}; the ZIP must hold one folder per class with the "
                "images directly inside (e.g. cat/001.png, dog/002.png)"
            )
    labels = np.array([p[prefix] for p in parts], dtype=str)
    if require_classes and len(set(labels.tolist())) < 2:
        raise DataError(
            f"the ZIP {raw.name!r} has only one class folder ({str(labels[0])!r}); a classifier needs at least two "
            "classes: put each class's images in its own folder"
        )
    for path, info in members:  # before any member is read: no image file over the cap, none a bomb
        _check_member(path, info, raw.name)
    needed = len(members) * height * width * (3 + 3 * 4)  # uint8 RGB while decoding, float32 result
    if needed > limits.max_array_bytes:
        raise DataError(
            f"{len(members):,} images of {height}x{width} would need {human_bytes(needed)} of memory, over the limit "
            f"of {human_bytes(limits.max_array_bytes)}; use a smaller image size or fewer images"
        )

    # One pass, one decoded image in memory at a time: each is resized and kept as uint8 RGB
    # (grayscale replicated; every image converted to grayscale when channels == 1), and an
    # undeclared channel count is decided at the end.
    pixels = np.empty((len(members), height, width, 3), dtype=np.uint8)
    all_gray = True
    resized = 0
    for i, (path, info) in enumerate(members):
        image = _decode(read_member(archive, info, raw.name), str(path), raw.name, limits)
        gray = image.mode in GRAYSCALE_MODES or (image.mode == "P" and _palette_is_gray(image))
        all_gray &= gray
        gray |= channels == 1
        image = _to_mode(image, "L" if gray else "RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
            resized += 1
        array = np.asarray(image, dtype=np.uint8)
        pixels[i] = array[..., np.newaxis] if gray else array
    if channels is None:
        channels = 1 if all_gray else 3
    x = pixels[..., :channels].astype(np.float32) / np.float32(255.0)
    if resized:
        notes.append(f"resized {resized} of {len(members)} images to {height}x{width} pixels")
    notes.append(f"{'grayscale (1 channel)' if channels == 1 else 'colour (3 channels, RGB)'} images scaled to [0, 1]")
    return x, labels, notes



def _check_member(path: PurePosixPath, info, archive_name: str) -> None:
    """An image file within MAX_IMAGE_FILE_BYTES whose ZIP compression ratio is that of an image
    (PNG and JPEG are compressed already: a member of 1 MiB or more that deflates more than
    MAX_ZIP_MEMBER_RATIO times is a zip bomb)."""
    if info.file_size > MAX_IMAGE_FILE_BYTES:
        raise DataError(
            f"{str(path)[:100]!r} in the ZIP {archive_name!r} is {human_bytes(info.file_size)}, over the limit of "
            f"{human_bytes(MAX_IMAGE_FILE_BYTES)} per image; shrink the images first"
        )
    if info.file_size >= MiB and info.file_size > MAX_ZIP_MEMBER_RATIO * max(info.compress_size, 1):
        raise DataError(
            f"{str(path)[:100]!r} in the ZIP {archive_name!r} expands {info.file_size // max(info.compress_size, 1):,} "
            f"times (over {MAX_ZIP_MEMBER_RATIO}), which no PNG or JPEG does: the archive is refused as a zip bomb"
        )


def _decode(data: bytes, path: str, archive_name: str, limits: Limits):
    """Decode one PNG/JPEG (upright per its EXIF orientation); DataError naming the file if it cannot be."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"))
            if image.format not in ("PNG", "JPEG"):
                raise DataError(f"{path!r} in {archive_name!r} is a {image.format} image; only PNG and JPEG are accepted")
            if image.width * image.height > limits.max_image_pixels:
                raise DataError(
                    f"{path!r} in {archive_name!r} is {image.width}x{image.height} pixels, over the limit of "
                    f"{limits.max_image_pixels:,} pixels per image; shrink the images first"
                )
            image.load()
            return ImageOps.exif_transpose(image)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            Image.DecompressionBombError) as error:
        reason = "unrecognised or corrupt data" if isinstance(error, UnidentifiedImageError) else str(error)
        raise DataError(
            f"{path!r} in the ZIP {archive_name!r} is not a readable image (corrupt or truncated: {reason}); "
            "replace or remove it"
        ) from None


def _palette_is_gray(image) -> bool:
    palette = image.getpalette() or []
    triples = [palette[i : i + 3] for i in range(0, len(palette) - 2, 3)]
    return all(r == g == b for r, g, b in triples)


def _to_mode(image, mode: str):
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F") and mode == "L":
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        from PIL import Image

        return Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA" if mode == "RGB" else "LA")
    return image.convert(mode)
