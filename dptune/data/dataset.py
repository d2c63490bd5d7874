"""The `Dataset` value every other layer consumes: prepared arrays plus what describes them.

A Dataset is immutable once built; its SHA-256 `fingerprint` covers every array and the
names, so workers on other machines can check they train on exactly the same data. It is
stored once in the workspace as `<fingerprint>.npz` (no pickles), with the record of what
preparing it cost in privacy (`preprocessing_epsilon`, `preprocessing_delta`,
`preprocessing_note`) in its metadata beside the names. That record is not part of the
fingerprint, so files stored by older versions keep theirs; a file without the record was
prepared by a version that fitted statistics on the private rows and loads with ε = ∞.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dptune.errors import DataError
from dptune.workspace import DEFAULT_WORKSPACE, Workspace, write_once

LEGACY_PREPROCESSING_NOTE = (
    "prepared by an older version of dptune that fitted statistics (medians, means, standard deviations, "
    "category lists) on the private rows and split them by a permutation of all rows, none of it accounted: "
    "no privacy guarantee (ε = ∞); upload or prepare the data again to fix this"
)
"""The preprocessing note of a stored dataset whose file has no preprocessing record."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training and validation arrays ready for the trainer.

    x_*: float32 features, shape (n, *input_shape) (images: (n, height, width, channels)).
    y_*: int32 class indices in [0, num_classes).
    sensitive_*: optional group labels (strings or ints) kept aside for fairness metrics;
        never part of the features.
    preprocessing_epsilon, preprocessing_delta: the (ε, δ) that preparing the arrays from
        the private rows cost (fitted statistics, data-dependent choices), to be composed
        with training's; 0 when nothing was fitted on the rows, inf when it was, uncharged.
    preprocessing_note: one sentence saying what preparation did, why it costs what it
        costs, and which part of the schema was read from the data (treated as public).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...] = ()
    sensitive_train: np.ndarray | None = None
    sensitive_val: np.ndarray | None = None
    sensitive_name: str | None = None
    preprocessing_epsilon: float = 0.0
    preprocessing_delta: float = 0.0
    preprocessing_note: str = ""
    _fingerprint: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "x_train", np.ascontiguousarray(self.x_train, dtype=np.float32))
        object.__setattr__(self, "x_val", np.ascontiguousarray(self.x_val, dtype=np.float32))
        object.__setattr__(self, "y_train", np.ascontiguousarray(self.y_train, dtype=np.int32))
        object.__setattr__(self, "y_val", np.ascontiguousarray(self.y_val, dtype=np.int32))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        object.__setattr__(self, "feature_names", tuple(str(f) for f in self.feature_names))
        object.__setattr__(self, "preprocessing_epsilon", float(self.preprocessing_epsilon))
        object.__setattr__(self, "preprocessing_delta", float(self.preprocessing_delta))
        if not self.preprocessing_epsilon >= 0 or not 0 <= self.preprocessing_delta <= 1:
            raise DataError(
                f"preprocessing_epsilon must be >= 0 (inf allowed) and preprocessing_delta in [0, 1], got "
                f"{self.preprocessing_epsilon!r} and {self.preprocessing_delta!r}"
            )
        if len(self.x_train) != len(self.y_train) or len(self.x_val) != len(self.y_val):
            raise DataError("features and labels must have the same number of rows")
        if self.x_train.shape[1:] != self.x_val.shape[1:]:
            raise DataError(
                f"training and validation features differ in shape: {self.x_train.shape[1:]} vs {self.x_val.shape[1:]}"
            )
        labels = np.concatenate([self.y_train, self.y_val])
        if labels.size and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise DataError(f"labels must be class indices in [0, {len(self.class_names)})")

    @property
    def fingerprint(self) -> str:
        """SHA-256 over the names and every array (`_compute_fingerprint`), computed on first
        use; a dataset loaded from the workspace takes it from its file instead (`load`)."""
        if not self._fingerprint:
            object.__setattr__(self, "_fingerprint", self._compute_fingerprint())
        return self._fingerprint

    def preprocessing_record(self) -> dict:
        """{epsilon, delta, note} of what preparing this dataset read from its rows, as a study
        stores it and `dptune.privacy.statement.preprocessing_release` reads it."""
        return {"epsilon": self.preprocessing_epsilon, "delta": self.preprocessing_delta,
                "note": self.preprocessing_note}

    @property
    def n_train(self) -> int:
        """N, the number of training examples (what the accountant's q = B/N uses)."""
        return int(len(self.x_train))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {"x_train": self.x_train, "y_train": self.y_train, "x_val": self.x_val, "y_val": self.y_val}
        if self.sensitive_train is not None and self.sensitive_val is not None:
            arrays["sensitive_train"] = np.asarray(self.sensitive_train).astype(str)
            arrays["sensitive_val"] = np.asarray(self.sensitive_val).astype(str)
        return arrays

    def _metadata(self) -> dict:
        """The names and descriptions the fingerprint covers."""
        return {
            "name": self.name,
            "class_names": list(self.class_names),
            "feature_names": list(self.feature_names),
            "sensitive_name": self.sensitive_name,
        }

    def _stored_metadata(self) -> dict:
        """What the .npz file holds beside the arrays: the fingerprinted metadata and the preprocessing record."""
        return {
            **self._metadata(),
            "fingerprint": self.fingerprint,
            "preprocessing": {
                "epsilon": self.preprocessing_epsilon,
                "delta": self.preprocessing_delta,
                "note": self.preprocessing_note,
            },
        }

    def _compute_fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps(self._metadata(), sort_keys=True).encode())
        for key, array in sorted(self._arrays().items()):
            digest.update(key.encode())
            digest.update(str(array.dtype).encode())
            digest.update(str(array.shape).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def save(self, workspace: str | os.PathLike = DEFAULT_WORKSPACE) -> Path:
        """Store as `<workspace>/<fingerprint>.npz`, atomically; an existing file is kept as is."""
        meta = np.frombuffer(json.dumps(self._stored_metadata()).encode(), dtype=np.uint8)
        try:
            return write_once(
                Workspace.at(workspace).dataset_path(self.fingerprint), lambda handle: np.savez(handle, metadata=meta, **self._arrays())
            )
        except OSError as error:
            raise DataError(
                f"cannot save the dataset into the workspace {Path(workspace).resolve()}: {error.strerror or error}; "
                "check that the folder is writable and the disk has space"
            ) from None

    @classmethod
    def load(cls, fingerprint: str, workspace: str | os.PathLike = DEFAULT_WORKSPACE) -> Dataset:
        """Load a stored dataset and check its fingerprint.

        The SHA-256 is computed once, when the dataset is prepared, and stored in the file: a
        load compares that with the name asked for instead of hashing every array again (0.4 s
        for 60,000 MNIST-sized images, in every process that loads it). The zip container
        checks each array's CRC-32 as it is read, so a damaged file is still refused ("cannot
        be read"); a file stored before the fingerprint was recorded is hashed as it loads.

        A file without a preprocessing record (written before dptune recorded one, when it
        fitted statistics on the private rows) loads with preprocessing_epsilon = inf and
        `LEGACY_PREPROCESSING_NOTE`."""
        if not (isinstance(fingerprint, str) and len(fingerprint) == 64 and all(c in "0123456789abcdef" for c in fingerprint)):
            raise DataError(f"{fingerprint!r} is not a dataset fingerprint (64 lowercase hex digits, SHA-256)")
        path = Workspace.at(workspace).dataset_path(fingerprint)
        if not path.exists():
            raise DataError(f"dataset {fingerprint[:12]}… is not in the workspace {Path(workspace).resolve()}")
        try:
            dataset = cls._read(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, MemoryError, RecursionError) as error:
            if isinstance(error, DataError):
                raise
            reason = "it asks for more memory than this machine has" if isinstance(error, MemoryError) else str(error)[:200]
            raise DataError(
                f"the stored dataset {path} cannot be read ({reason}); delete it and prepare the dataset again"
            ) from None
        if dataset.fingerprint != fingerprint:
            raise DataError(f"the stored dataset {path} is corrupt: its content no longer matches its fingerprint")
        return dataset

    @classmethod
    def _read(cls, path: Path) -> Dataset:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(stored["metadata"].tobytes().decode())
            preprocessing = meta.get("preprocessing") or {
                "epsilon": float("inf"), "delta": 0.0, "note": LEGACY_PREPROCESSING_NOTE,
            }  # fmt: skip
            dataset = cls(
                name=meta["name"],
                x_train=stored["x_train"],
                y_train=stored["y_train"],
                x_val=stored["x_val"],
                y_val=stored["y_val"],
                class_names=tuple(meta["class_names"]),
                feature_names=tuple(meta["feature_names"]),
                sensitive_train=stored["sensitive_train"] if "sensitive_train" in stored else None,
                sensitive_val=stored["sensitive_val"] if "sensitive_val" in stored else None,
                sensitive_name=meta["sensitive_name"],
                preprocessing_epsilon=float(preprocessing["epsilon"]),
                preprocessing_delta=float(preprocessing["delta"]),
                preprocessing_note=str(preprocessing["note"]),
            )
        if isinstance(meta.get("fingerprint"), str):
            object.__setattr__(dataset, "_fingerprint", meta["fingerprint"])
        return dataset
