"""Upper limits on every size a file or a command line can declare (issue 11, item 6).

Each limit is checked before anything of that size is allocated, and a value over it is
refused with a short `ConfigError`/`DataError` that names the limit. Bottom layer: no
dptune import but the errors. The data layer's byte limits (uploads, ZIPs, arrays) are in
`dptune.data.sources` (`Limits`), which tests can lower; the ones here are fixed.

Units are in each name or docstring; "MiB" is 2**20 bytes.
"""

from __future__ import annotations

from typing import Any

MiB = 1024 * 1024

# ---------------------------------------------------------------------------- YAML files
MAX_YAML_BYTES = 1 * MiB
"""Largest YAML file read (bytes); a run or search YAML is a few KiB."""
MAX_YAML_ALIASES = 100
"""Most alias references (`*name`) in one YAML document ("billion laughs" expands by aliases)."""
MAX_YAML_NODES = 100_000
"""Most nodes (scalars, lists, mappings) one YAML document may hold, aliases counted."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of lists and mappings in a YAML document (levels)."""
MAX_KERAS_JSON_DEPTH = 256
"""Deepest nesting of the JSON config inside a `.keras` file (levels)."""

# ---------------------------------------------------------------------------- runs and searches
MAX_EPOCHS = 10_000
"""Most epochs of one training run (passes over the training set)."""
MAX_STEPS = 10_000_000
"""Most DP-SGD steps one run may have (`dptune epsilon --steps`, ceil(epochs·N/B)): the PLD
accountant's memory grows with the steps (10^7 steps: about 0.9 GB and 8 s; 10^8: 3.6 GB)."""
MAX_BATCH_SIZE = 1_048_576
"""Largest expected batch size B (examples per step); also bounds num_microbatches."""
MAX_PROTOCOL_VALUE = 1_000_000
"""Largest real-valued parameter of a collaborative run (learning rate, clip norm, σ, ε, γ, τ,
Dirichlet α) and of its search ranges: beyond it the value is a typo, not a setting."""
MAX_TRIALS = 10_000
"""Most trials one search may plan (n_trials, its mean, or the queue of a study)."""
MAX_WORKERS = 256
"""Most worker processes one search starts on this machine (`workers`)."""
MAX_HIDDEN_LAYERS = 64
"""Most hidden layers of the built-in MLP."""
MAX_HIDDEN_UNITS = 65_536
"""Most units in one hidden layer of the built-in MLP."""
MAX_HIDDEN_WEIGHTS = 100_000_000
"""Most weights between the hidden layers of the MLP (sum of units[i]·units[i+1])."""
MAX_EXAMPLES = 100_000_000
"""Most examples of a dataset (N, e.g. `dptune epsilon --n`, the synthetic dataset's n_examples)."""

# ---------------------------------------------------------------------------- tables and generated data
MAX_TABLE_COLUMNS = 4_096
"""Most columns of a CSV/TSV or Parquet table (each column is checked on its own: ~1-3 ms each)."""
MAX_TABLE_CELLS = 20_000_000
"""Most cells (rows x columns) of a table read into memory (CSV/TSV row count is bounded by its bytes)."""
MAX_SYNTHETIC_VALUES = 50_000_000
"""Most feature values (n_examples x n_features) of the synthetic dataset (8 bytes each while generated)."""

# ---------------------------------------------------------------------------- ZIP members and images
MAX_ZIP_MEMBER_RATIO = 100
"""Largest uncompressed/compressed ratio of one ZIP member over 1 MiB (images are already compressed)."""
MAX_IMAGE_FILE_BYTES = 64 * MiB
"""Largest single image file inside a ZIP of images (bytes, uncompressed)."""

MESSAGE_VALUE_CHARS = 80
"""Longest value repr an error message quotes (longer ones are cut, with their length)."""


def short_repr(value: Any, limit: int = MESSAGE_VALUE_CHARS) -> str:
    """`repr(value)` cut to `limit` characters, so no message prints a huge (or expanded) value.

    Large containers are not rendered in full first: only their first few items are."""
    if isinstance(value, (list, tuple)) and len(value) > 8:
        head = ", ".join(short_repr(item, 20) for item in value[:4])
        return f"[{head}, … ({len(value):,} items)]"
    if isinstance(value, dict) and len(value) > 8:
        return f"{{… ({len(value):,} keys)}}"
    if isinstance(value, (list, tuple, dict)):
        try:
            text = repr(value)
        except RecursionError:
            return f"<deeply nested {type(value).__name__}>"
    else:
        text = repr(value)
    if len(text) > limit:
        return text[: limit - 1] + f"… ({len(text):,} characters)"
    return text


def check_int_at_most(value: int, limit: int, what: str, unit: str = "") -> None:
    """Raise ConfigError when `value` is over `limit` (named, with its unit)."""
    from dptune.errors import ConfigError

    if value > limit:
        suffix = f" {unit}" if unit else ""
        raise ConfigError(f"{what} is {value:,}{suffix}, over dptune's limit of {limit:,}{suffix}")
