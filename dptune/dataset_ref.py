"""A reference to a dataset that a YAML file can hold and a worker can resolve.

Either a built-in dataset (`builtin: digits`, rebuilt by `dptune.data.builtin_dataset`) or a
dataset already stored in a workspace by its SHA-256 `fingerprint` (`Dataset.save`), or
both: the fingerprint then pins exactly which data the run used, and a rebuilt built-in
dataset whose fingerprint differs is refused instead of silently training on other data.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dptune.dataset import DEFAULT_WORKSPACE, Dataset
from dptune.errors import ConfigError, DataError
from dptune.yaml_fields import check_keys, number, optional_string

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
DATASET_KEYS = ("name", "builtin", "fingerprint", "n_train", "workspace", "options")


@dataclass(frozen=True)
class DatasetRef:
    """Where a run's data comes from.

    builtin: a name `dptune.data.builtin_dataset` knows (e.g. "digits"); `options` are its
        keyword arguments (e.g. the split seed).
    fingerprint: SHA-256 of the prepared Dataset (`Dataset.fingerprint`).
    workspace: directory holding `<fingerprint>.npz` (default: the caller's workspace).
    name, n_train: descriptive (N is what the accountant's q = B/N uses); checked on load.
    """

    name: str | None = None
    builtin: str | None = None
    fingerprint: str | None = None
    n_train: int | None = None
    workspace: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.builtin is None and self.fingerprint is None:
            raise ConfigError("dataset needs `builtin` (a built-in dataset name) or `fingerprint` (a stored dataset)")
        if self.fingerprint is not None and not _FINGERPRINT.match(self.fingerprint):
            raise ConfigError(f"dataset.fingerprint must be 64 lowercase hex digits (SHA-256), got {self.fingerprint!r}")
        if self.options and self.builtin is None:
            raise ConfigError("dataset.options is only used with dataset.builtin")

    @classmethod
    def from_dataset(cls, dataset: Dataset, *, builtin: str | None = None, workspace: str | os.PathLike | None = None,
                     options: dict[str, Any] | None = None) -> DatasetRef:
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
        if not isinstance(options, dict):
            raise ConfigError(f"{where}.options must be a mapping of keyword arguments, got {options!r}")
        n_train = values.get("n_train")
        return cls(
            name=optional_string(values.get("name"), f"{where}.name"),
            builtin=optional_string(values.get("builtin"), f"{where}.builtin"),
            fingerprint=optional_string(values.get("fingerprint"), f"{where}.fingerprint"),
            n_train=None if n_train is None else number(n_train, f"{where}.n_train", low=1, integer=True),
            workspace=optional_string(values.get("workspace"), f"{where}.workspace"),
            options=dict(options),
        )

    def resolve(self, workspace: str | os.PathLike | None = None, *, save: bool = True) -> Dataset:
        """Load the dataset: from the workspace by fingerprint, else rebuild the built-in one.

        A rebuilt built-in dataset is checked against `fingerprint` and stored in the
        workspace (so workers find it by fingerprint).
        """
        folder = Path(self.workspace or workspace or DEFAULT_WORKSPACE)
        dataset: Dataset | None = None
        if self.fingerprint is not None and (folder / f"{self.fingerprint}.npz").exists():
            dataset = Dataset.load(self.fingerprint, folder)
        elif self.builtin is not None:
            dataset = _builtin_dataset(self.builtin, **self.options)
            if self.fingerprint is not None and dataset.fingerprint != self.fingerprint:
                raise DataError(
                    f"the built-in dataset {self.builtin!r} now has fingerprint {dataset.fingerprint[:12]}…, "
                    f"not {self.fingerprint[:12]}… as recorded: its data or preparation changed, so this run "
                    "cannot be reproduced exactly; put the original "
                    f"{self.fingerprint}.npz in the workspace {folder.resolve()}"
                )
            if save:
                dataset.save(folder)
        else:
            raise DataError(
                f"dataset {self.name or ''} {self.fingerprint[:12]}… is not in the workspace {folder.resolve()}; "
                "copy its .npz file there or give `workspace:`"
            )
        if self.n_train is not None and dataset.n_train != self.n_train:
            raise DataError(f"dataset has N = {dataset.n_train} training examples, but the YAML says n_train {self.n_train}")
        return dataset


def _builtin_dataset(name: str, **options: Any) -> Dataset:
    """`builtin_dataset` from the data layer (dptune.data, or dptune.builtins where it lives)."""
    try:
        from dptune.data import builtin_dataset
    except ImportError:
        from dptune.builtins import builtin_dataset
    return builtin_dataset(name, **options)
