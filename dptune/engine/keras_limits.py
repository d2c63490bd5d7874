"""Bounds on what a user's `.keras` file may declare, checked before it is parsed.

`json.loads` and the config scan recurse once per nesting level, so a config.json of 100,000
nested brackets would end in a RecursionError (a traceback) instead of a message: its depth
is measured first, without recursion, against dptune.spec.limits.MAX_KERAS_JSON_DEPTH.
"""

from __future__ import annotations

import re

import numpy as np

from dptune.errors import ModelError
from dptune.spec.limits import MAX_KERAS_JSON_DEPTH

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def json_depth(text: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON document (brackets inside strings
    ignored); linear in its length, no recursion."""
    brackets = _BRACKETS.findall(_JSON_STRING.sub(b'""', text))
    if not brackets:
        return 0
    steps = np.fromiter((1 if b in (b"[", b"{") else -1 for b in brackets), dtype=np.int64, count=len(brackets))
    return int(np.cumsum(steps).max())


def check_config_depth(text: bytes, file_name: str, limit: int = MAX_KERAS_JSON_DEPTH) -> None:
    """ModelError when the config.json of `file_name` nests deeper than `limit` levels."""
    depth = json_depth(text)
    if depth > limit:
        raise ModelError(
            f"the config.json in {file_name!r} nests {depth:,} levels deep, over dptune's limit of {limit}; "
            "a Keras model's config is a few levels deep: save the model again with model.save('model.keras')"
        )
