"""A reference to a dataset that a YAML file can hold and a worker can resolve.

Either a built-in dataset (`builtin: digits`, rebuilt by `dptune.data.builtin_dataset`), a
data file (`file: patients.csv` with the Data page's / `dptune register`'s options, prepared
by `dptune.data.load_dataset`) or a dataset already stored in a workspace by its SHA-256
`fingerprint` (`Dataset.save`), or a built-in or file with a fingerprint: the fingerprint then
pins exactly which data the run used, and a rebuilt dataset whose fingerprint differs is
refused instead of silently training on other data. The data layer loads it
(`dptune.data.resolve_dataset`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from dptune.errors import ConfigError
from dptune.spec.limits import short_repr
from dptune.spec.yaml_fields import check_keys, number, optional_string

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
DATASET_KEYS = ("name", "builtin", "file", "fingerprint", "n_train", "workspace", "options")
FILE_OPTIONS = ("label", "sensitive", "drop", "test", "header", "validation_fraction")
"""The options of a `file` dataset: label and sensitive columns, columns to drop, a separate
validation file, whether the first row is a header (left out: detected), the validation share
(the same as `dptune register`'s flags and the Data page's choices)."""


@dataclass(frozen=True)
class DatasetRef:
    """Where a run's data comes from.

    builtin: a name `dptune.data.builtin_dataset` knows (e.g. "digits"); `options` are its
        keyword arguments (e.g. the split seed).
    file: a data file (CSV/TSV/TXT, Parquet, NPZ, image ZIP; relative to the current folder);
        `options` are FILE_OPTIONS. Preparing it fits nothing on its rows (ε = 0).
    fingerprint: SHA-256 of the prepared Dataset (`Dataset.fingerprint`).
    workspace: directory holding `<fingerprint>.npz` (default: the caller's workspace). Only ever
        read from: `dptune train --workspace` overrides it, and no command writes there (train
        writes nothing; tune saves the dataset in the search's own workspace). Exports write it
        relative to the current folder, or leave it out (`dptune.spec.run.portable_workspace`).
    name, n_train: descriptive (N is what the accountant's q = B/N uses); checked on load.
    """

    name: str | None = None
    builtin: str | None = None
    file: str | None = None
    fingerprint: str | None = None
    n_train: int | None = None
    workspace: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        if self.builtin is None and self.fingerprint is None and self.file is None:
            problems.append("dataset needs `builtin` (a built-in dataset name), `file` (a data file) or `fingerprint` "
                            "(a stored dataset)")
        if self.builtin is not None and self.file is not None:
            problems.append("dataset: give `builtin` or `file`, not both")
        if self.fingerprint is not None and not _FINGERPRINT.match(self.fingerprint):
            problems.append(f"dataset.fingerprint must be 64 lowercase hex digits (SHA-256), got "
                            f"{short_repr(self.fingerprint)}")
        if self.options and self.builtin is None and self.file is None:
            problems.append("dataset.options is only used with dataset.builtin or dataset.file")
        if self.file is not None:
            problems += _file_option_problems(self.options)
        if problems:
            raise ConfigError("\n".join(problems))

    @classmethod
    def from_dataset(cls, dataset: Any, *, builtin: str | None = None, workspace: str | os.PathLike | None = None,
                     options: dict[str, Any] | None = None) -> DatasetRef:
        """The reference of a prepared `dptune.data.Dataset` (anything with name, fingerprint, n_train)."""
        return cls(
            name=dataset.name,
            builtin=builtin,
            fingerprint=dataset.fingerprint,
            n_train=dataset.n_train,
            workspace=None if workspace is None else str(workspace),
            options=dict(options or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in DATASET_KEYS:
            value = getattr(self, key)
            if value is not None and value != {}:
                out[key] = dict(value) if key == "options" else value
        return out

    @classmethod
    def from_dict(cls, values: Any, where: str = "dataset") -> DatasetRef:
        check_keys(values, where, optional=DATASET_KEYS)
        options = values.get("options") or {}
        if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
            raise ConfigError(f"{where}.options must be a mapping of keyword arguments, got {short_repr(options)}")
        n_train = values.get("n_train")
        return cls(
            name=optional_string(values.get("name"), f"{where}.name"),
            builtin=optional_string(values.get("builtin"), f"{where}.builtin"),
            file=optional_string(values.get("file"), f"{where}.file"),
            fingerprint=optional_string(values.get("fingerprint"), f"{where}.fingerprint"),
            n_train=None if n_train is None else number(n_train, f"{where}.n_train", low=1, integer=True),
            workspace=optional_string(values.get("workspace"), f"{where}.workspace"),
            options=dict(options),
        )


def _file_option_problems(options: dict[str, Any]) -> list[str]:
    """What is wrong with a file dataset's options (one line each)."""
    problems = []
    unknown = sorted(key for key in options if key not in FILE_OPTIONS)
    if unknown:
        problems.append(f"unknown key(s) in dataset.options: {', '.join(unknown)}; a file's options are "
                        f"{', '.join(FILE_OPTIONS)}")
    for key in ("label", "sensitive", "test"):
        if options.get(key) is not None and not (isinstance(options[key], str) and options[key].strip()):
            problems.append(f"dataset.options.{key} must be a non-empty string, got {short_repr(options[key])}")
    drop = options.get("drop", [])
    if not (isinstance(drop, list) and all(isinstance(column, str) for column in drop)):
        problems.append(f"dataset.options.drop must be a list of column names, got {short_repr(drop)}")
    if options.get("header") is not None and not isinstance(options["header"], bool):
        problems.append(f"dataset.options.header must be true or false (left out: detected), got "
                        f"{short_repr(options['header'])}")
    fraction = options.get("validation_fraction", 0.2)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        problems.append(f"dataset.options.validation_fraction must be a number in (0, 1), got {short_repr(fraction)}")
    return problems
