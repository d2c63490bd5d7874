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


def load_yaml_mapping(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """Read a YAML file with `yaml.safe_load`; the top level must be a mapping."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"{what} file {file} does not exist")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{file} is not valid YAML: {error}") from None
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
            f"unknown key(s) in {label}: {', '.join(_dotted(where, k) for k in unknown)}; "
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
        raise ConfigError(f"{key} must be {kind}, got {value!r} ({type(value).__name__})")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ConfigError(f"{key} must be {kind} in {left}{lo}, {hi}{right}, got {value!r}")
    return int(value) if integer else float(value)


def optional_number(value: Any, key: str, **bounds: Any) -> float | int | None:
    return None if value is None else number(value, key, **bounds)


def string(value: Any, key: str, *, choices: Iterable[str] | None = None) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key} must be a non-empty string, got {value!r}")
    if choices is not None:
        options = tuple(choices)
        if value not in options:
            raise ConfigError(f"{key} must be one of {', '.join(options)}; got {value!r}")
    return value


def optional_string(value: Any, key: str, **kwargs: Any) -> str | None:
    return None if value is None else string(value, key, **kwargs)


def boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def prefixed(error: ConfigError, prefix: str) -> ConfigError:
    """The same error with the file or section it came from in front."""
    return ConfigError(f"{prefix}: {error}")
