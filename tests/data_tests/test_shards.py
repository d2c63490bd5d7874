"""Participant shards (dptune.data.shards): disjoint, covering, sized as the split says."""

from __future__ import annotations

import numpy as np
import pytest

from dptune.data import builtin_dataset
from dptune.data.dataset import Dataset
from dptune.data.shards import split_shards
from dptune.errors import ConfigError, DataError
from dptune.spec.collaborative import ShardSpec


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return builtin_dataset("digits")


def _check_partition(shards, n: int) -> None:
    rows = np.concatenate(shards.indices)
    assert len(rows) == n and len(np.unique(rows)) == n  # disjoint and covering
    assert sum(shards.sizes) == n


def test_iid_split_is_a_near_equal_partition(digits):
    shards = split_shards(digits, 5, ShardSpec("iid"), seed=3)
    _check_partition(shards, digits.n_train)
    assert max(shards.sizes) - min(shards.sizes) <= 1
    assert shards.sizes == split_shards(digits, 5, ShardSpec("iid"), seed=3).sizes  # the seed fixes it
    # every class appears in every iid shard of digits (about 29 rows per class per shard)
    assert (shards.class_counts(digits) > 0).all()


def test_dirichlet_small_alpha_skews_labels_and_large_alpha_does_not(digits):
    skewed = split_shards(digits, 4, ShardSpec("dirichlet", alpha=0.05), seed=0)
    even = split_shards(digits, 4, ShardSpec("dirichlet", alpha=1000.0), seed=0)
    _check_partition(skewed, digits.n_train)
    _check_partition(even, digits.n_train)

    def largest_class_share(shards):
        counts = shards.class_counts(digits)
        return float(np.mean(counts.max(axis=1) / np.maximum(counts.sum(axis=1), 1)))

    assert largest_class_share(skewed) > 0.3  # a shard is dominated by few classes
    assert largest_class_share(even) < 0.15  # about 1/10, as in the pooled data


def test_by_column_keeps_each_site_together():
    rng = np.random.default_rng(0)
    sites = np.repeat(np.array(["a", "b", "c", "d", "e"]), [50, 40, 30, 20, 10])
    data = Dataset(name="sites", x_train=rng.normal(size=(150, 3)), y_train=rng.integers(0, 2, 150),
                   x_val=rng.normal(size=(10, 3)), y_val=rng.integers(0, 2, 10), class_names=("no", "yes"),
                   sensitive_train=sites, sensitive_val=np.array(["a"] * 10), sensitive_name="site")
    shards = split_shards(data, 3, ShardSpec("by_column", column="site"))
    _check_partition(shards, 150)
    for rows in shards.indices:
        for site in np.unique(sites[rows]):
            assert set(np.flatnonzero(sites == site)) <= set(rows)  # a site is never cut
    assert shards.sizes == (50, 50, 50)  # largest site first to the lightest: a | b + e | c + d
    with pytest.raises(DataError, match="fewer than the 6 participants"):
        split_shards(data, 6, ShardSpec("by_column", column="site"))
    with pytest.raises(DataError, match="no column 'hospital'"):
        split_shards(data, 3, ShardSpec("by_column", column="hospital"))


def test_too_small_shards_are_refused_with_their_sizes(digits):
    with pytest.raises(DataError, match="each participant needs at least 1000"):
        split_shards(digits, 3, ShardSpec("iid"), min_rows=1000)


def test_an_invalid_split_spec_is_a_config_error(digits):
    with pytest.raises(ConfigError, match="split.alpha"):
        split_shards(digits, 3, ShardSpec("dirichlet"))
