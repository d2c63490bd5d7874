"""Participant shards of one Dataset, for the collaborative mode (`dptune.spec.collaborative`).

Each participant gets a disjoint subset of the training rows (together: all of them); every
participant is evaluated on the dataset's common validation rows. The split is a public
choice fixed by a seed: `iid` (a random partition into near-equal shards), `dirichlet` (label
skew: for each class, participant shares ~ Dirichlet(α, …, α)), `by_column` (rows sharing a
value of a column, a site id say, stay together; groups go to the participant with the fewest
rows so far, largest group first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dptune.data.dataset import Dataset
from dptune.errors import ConfigError, DataError
from dptune.spec.collaborative import ShardSpec


@dataclass(frozen=True)
class Shards:
    """Row indices into `dataset.x_train` of each participant's shard.

    indices[i]: int64 indices of participant i's rows (sorted); split: how they were drawn.
    """

    indices: tuple[np.ndarray, ...]
    split: ShardSpec

    @property
    def sizes(self) -> tuple[int, ...]:
        """N_i, the number of training rows of each participant (what its q = B/N_i uses)."""
        return tuple(int(len(part)) for part in self.indices)

    def shard(self, dataset: Dataset, participant: int) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) training arrays of one participant."""
        rows = self.indices[participant]
        return dataset.x_train[rows], dataset.y_train[rows]

    def class_counts(self, dataset: Dataset) -> np.ndarray:
        """[participants, classes] row counts (what the label skew looks like)."""
        return np.stack([np.bincount(dataset.y_train[rows], minlength=dataset.num_classes) for rows in self.indices])


def _column_values(dataset: Dataset, column: str) -> np.ndarray:
    if dataset.sensitive_name == column and dataset.sensitive_train is not None:
        return np.asarray(dataset.sensitive_train).astype(str)
    if column in dataset.feature_names and dataset.x_train.ndim == 2:
        return dataset.x_train[:, dataset.feature_names.index(column)]
    choices = [*dataset.feature_names[:20], *([dataset.sensitive_name] if dataset.sensitive_name else [])]
    raise DataError(f"the dataset {dataset.name!r} has no column {column!r} to split by; its columns: "
                    f"{', '.join(choices) or 'none (use split iid or dirichlet)'}")


def _by_column(values: np.ndarray, participants: int) -> list[np.ndarray]:
    groups, inverse = np.unique(values, return_inverse=True)
    if len(groups) < participants:
        raise DataError(f"the split column has {len(groups)} distinct value(s), fewer than the {participants} "
                        "participants; use fewer participants or another split")
    counts = np.bincount(inverse, minlength=len(groups))
    owner = np.empty(len(groups), np.int64)
    loads = np.zeros(participants, np.int64)
    for group in np.argsort(-counts, kind="stable"):  # one step per group (site), not per row
        owner[group] = int(np.argmin(loads))
        loads[owner[group]] += counts[group]
    row_owner = owner[inverse]
    return [np.flatnonzero(row_owner == i) for i in range(participants)]


def _dirichlet(labels: np.ndarray, participants: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    owner = np.empty(len(labels), np.int64)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(participants, alpha))
        cuts = np.round(np.cumsum(shares)[:-1] * len(rows)).astype(np.int64)
        owner[rows] = np.repeat(np.arange(participants), np.diff(np.concatenate([[0], cuts, [len(rows)]])))
    return [np.flatnonzero(owner == i) for i in range(participants)]


def split_shards(dataset: Dataset, participants: int, split: ShardSpec, *, seed: int = 0,
                 min_rows: int = 1) -> Shards:
    """Split the training rows of `dataset` into `participants` disjoint shards (see the module).

    seed: fixes the (public) split. min_rows: the fewest rows a shard may have (a DP-SGD
    participant needs at least its batch size); DataError naming the shard sizes otherwise.
    """
    problems = split.problems("split")
    if problems:
        raise ConfigError("; ".join(problems))
    if participants > dataset.n_train:
        raise DataError(f"{participants} participants cannot share {dataset.n_train} training rows")
    rng = np.random.default_rng(seed)
    if split.kind == "iid":
        parts = np.array_split(rng.permutation(dataset.n_train), participants)
    elif split.kind == "dirichlet":
        parts = _dirichlet(dataset.y_train, participants, float(split.alpha), rng)
    else:
        parts = _by_column(_column_values(dataset, split.column), participants)
    shards = Shards(tuple(np.sort(part).astype(np.int64) for part in parts), split)
    if min(shards.sizes) < min_rows:
        raise DataError(f"the {split.kind} split gives shards of {', '.join(map(str, shards.sizes))} rows; each "
                        f"participant needs at least {min_rows}: use fewer participants, a larger Dirichlet alpha "
                        "or a smaller batch size")
    return shards
