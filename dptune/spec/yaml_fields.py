"""Checks for values read from YAML: each error names the key (dotted path) that is wrong.

`yaml.safe_load` gives plain dicts, lists, strings and numbers; these helpers turn them
into typed values or raise `ConfigError` with a message a user can act on, e.g.
"search.yaml: ranges.batch_size: expected [low, high] with low <= high, got [64, 8]".
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from dptune.errors import ConfigError
from dptune.spec.limits import (
    MAX_YAML_ALIASES,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    short_repr,
)


class _BoundedSafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a document over MAX_YAML_DEPTH levels deep or over
    MAX_YAML_NODES nodes once its aliases are expanded, while composing, before anything is
    built (a 2 KB "billion laughs" of nested anchors expands to 10^9 nodes)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._expanded = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YamlLimit(f"it nests lists or mappings more than {MAX_YAML_DEPTH} levels deep")
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                if self._aliases > MAX_YAML_ALIASES:
                    raise _YamlLimit(f"it uses more than {MAX_YAML_ALIASES} aliases (*name)")
                node = super().compose_node(parent, index)
                self._expanded += self._sizes.get(id(node), 1)
            else:
                before = self._expanded
                node = super().compose_node(parent, index)
                self._expanded += 1
                self._sizes[id(node)] = self._expanded - before
            if self._expanded > MAX_YAML_NODES:
                raise _YamlLimit(f"it holds more than {MAX_YAML_NODES:,} values once its aliases are expanded")
            return node
        finally:
            self._depth -= 1


class _YamlLimit(Exception):
    """A YAML document over one of the limits of dptune.spec.limits."""


def read_text_file(path: str | os.PathLike, what: str, *, max_bytes: int = MAX_YAML_BYTES) -> str:
    """The UTF-8 text of a small file; ConfigError (no traceback) when it is missing, a folder,
    unreadable, over `max_bytes` or not UTF-8."""
    file = Path(path)
    try:
        if not file.exists():
            raise ConfigError(f"{what} file {file} does not exist")
        if file.is_dir():
            raise ConfigError(f"{what} file {file} is a folder; give the path of a YAML file")
        size = file.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{what} file {file} is {size:,} bytes, over dptune's limit of {max_bytes:,} bytes")
        with file.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as error:
        raise ConfigError(f"cannot read the {what} file {file}: {error.strerror or error}") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{what} file {file} is over dptune's limit of {max_bytes:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{what} file {file} is not UTF-8 text (byte {error.start}: {data[error.start:error.start + 1]!r}); "
            "save it as UTF-8"
        ) from None


def safe_load_bounded(text: str, source: str) -> Any:
    """`yaml.safe_load` of `text` within the limits of dptune.spec.limits (depth, aliases,
    expanded size); ConfigError with a short message otherwise."""
    try:
        loader = _BoundedSafeLoader(text)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except _YamlLimit as error:
        raise ConfigError(f"{source} is refused: {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {_shorten(str(error), 400)}") from None
    except (ValueError, RecursionError, MemoryError) as error:  # e.g. an integer of 10^5 digits
        raise ConfigError(f"{source} holds a value YAML cannot read: {_shorten(str(error), 200)}") from None


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_yaml_mapping(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Read a YAML file safely (no Python objects; bounded size, depth and alias expansion:
    dptune.spec.limits); the top level must be a mapping."""
    file = Path(path)
    values = safe_load_bounded(read_text_file(file, what), str(file))
    if not isinstance(values, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of keys to values, got {type(values).__name__}")
    return values


def check_keys(
    values: Any, where: str, *, required: Iterable[str] = (), optional: Iterable[str] = ()
) -> dict[str, Any]:
    """`values` must be a mapping holding every required key and nothing but the known keys."""
    label = where or "the top level"
    if not isinstance(values, dict):
        raise ConfigError(f"{label} must be a mapping of keys to values, got {type(values).__name__}")
    required, optional = list(required), list(optional)
    known = set(required) | set(optional)
    unknown = sorted(str(k) for k in values if k not in known)
    if unknown:
        raise ConfigError(
            f"unknown key(s) in {label}: {', '.join(_dotted(where, k[:60]) for k in unknown[:10])}"
            f"{f' and {len(unknown) - 10:,} more' if len(unknown) > 10 else ''}; "
            f"allowed: {', '.join(sorted(known))}"
        )
    missing = [k for k in required if k not in values]
    if missing:
        raise ConfigError(f"missing key(s) in {label}: {', '.join(_dotted(where, k) for k in missing)}")
    return values


def _dotted(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(
    value: Any,
    key: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> float | int:
    """A finite number (an int when `integer`) inside [low, high] (open ends when asked)."""
    kind = "an integer" if integer else "a number"
    if not (is_int(value) if integer else is_number(value)):
        raise ConfigError(f"{key} must be {kind}, got {short_repr(value)} ({type(value).__name__})")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(f"{key} must be {kind} in {left}{lo}, {hi}{right}, got {short_repr(value)}")
    return int(value) if integer else float(value)


def optional_number(value: Any, key: str, **bounds: Any) -> float | int | None:
    return None if value is None else number(value, key, **bounds)


def string(value: Any, key: str, *, choices: Iterable[str] | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {short_repr(value)}")
    if choices is not None:
        options = tuple(choices)
        if value not in options:
            raise ConfigError(f"{key} must be one of {', '.join(options)}; got {short_repr(value)}")
    return value


def optional_string(value: Any, key: str, **kwargs: Any) -> str | None:
    return None if value is None else string(value, key, **kwargs)


def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {short_repr(value)}")
    return value


def prefixed(error: ConfigError, prefix: str) -> ConfigError:
    """The same error with the file or section it came from in front."""
    return ConfigError(f"{prefix}: {error}")
