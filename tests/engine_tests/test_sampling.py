"""Samplers: Poisson batch sizes have the right distribution and no example is ever dropped."""

import numpy as np
import pytest

from dptune.engine.sampling import PoissonSampler, ShuffleSampler, poisson_chunk_rows


def _sampled(chunks):
    return np.concatenate([c.indices[c.mask == 1] for c in chunks])


def test_poisson_batch_sizes_have_mean_qn_and_variance_qn_1_minus_q():
    n, batch_size, steps = 2000, 100, 4000
    sampler = PoissonSampler(n, batch_size, batch_size, np.random.default_rng(0))
    sizes = np.array([len(_sampled(sampler.next_step())) for _ in range(steps)])
    q = batch_size / n
    mean, variance = n * q, n * q * (1 - q)
    assert abs(sizes.mean() - mean) < 4 * np.sqrt(variance / steps)
    # the sample variance of a near-normal count has relative std sqrt(2/(steps-1))
    assert sizes.var(ddof=1) == pytest.approx(variance, rel=4 * np.sqrt(2 / (steps - 1)))


def test_each_example_joins_a_step_with_probability_q():
    n, batch_size, steps = 50, 10, 4000
    sampler = PoissonSampler(n, batch_size, 2, np.random.default_rng(1))
    counts = np.zeros(n)
    for _ in range(steps):
        counts[_sampled(sampler.next_step())] += 1
    q = batch_size / n
    assert np.all(np.abs(counts / steps - q) < 5 * np.sqrt(q * (1 - q) / steps))


def test_an_overflowing_step_is_split_into_chunks_and_drops_nothing():
    n = 1000
    sampler = PoissonSampler(n, 200, 7, np.random.default_rng(2), chunk_rows=64)
    for _ in range(50):
        chunks = sampler.next_step()
        sampled = _sampled(chunks)
        assert len(chunks) == max(1, -(-len(sampled) // 64))
        assert len(np.unique(sampled)) == len(sampled)  # each sampled example exactly once
        assert all(len(c.indices) == 64 for c in chunks)  # static shapes
        microbatch = np.concatenate([c.microbatch[c.mask == 1] for c in chunks])
        assert microbatch.min() >= 0 and microbatch.max() < 7


def test_microbatch_assignment_is_uniform_and_independent_of_membership():
    sampler = PoissonSampler(4000, 400, 4, np.random.default_rng(3))
    ids = np.concatenate([np.concatenate([c.microbatch[c.mask == 1] for c in sampler.next_step()]) for _ in range(200)])
    frequencies = np.bincount(ids, minlength=4) / len(ids)
    assert np.all(np.abs(frequencies - 0.25) < 0.01)


def test_chunk_rows_leave_headroom_above_the_batch_size():
    rows = poisson_chunk_rows(60000, 250)
    assert rows % 8 == 0 and 250 + 2 * 15.7 <= rows < 250 + 2 * 15.7 + 8
    assert poisson_chunk_rows(100, 100) == 100  # never more rows than examples


def test_shuffle_sampler_uses_every_example_once_per_epoch_in_fixed_batches():
    sampler = ShuffleSampler(100, 20, 4, np.random.default_rng(4))
    epoch = [sampler.next_step() for _ in range(5)]
    assert sorted(_sampled([c for step in epoch for c in step]).tolist()) == list(range(100))
    assert epoch[0][0].microbatch.tolist() == [i // 5 for i in range(20)]  # TF Privacy's reshape


def test_shuffle_batches_never_hold_an_example_twice_across_epoch_boundaries():
    """N = 50, B = 16: most epochs end inside a batch. An example twice in one batch doubles
    that step's sensitivity; the old stream (concatenated permutations) did this often."""
    sampler = ShuffleSampler(50, 16, 4, np.random.default_rng(0))
    steps = [_sampled(sampler.next_step()) for _ in range(500)]
    assert all(len(np.unique(batch)) == 16 for batch in steps)
    # every example still appears once per permutation: 500 batches = 8000 rows = 160 permutations
    assert np.bincount(np.concatenate(steps), minlength=50).tolist() == [160] * 50

    rng = np.random.default_rng(0)  # the broken variant the check must catch
    stream = np.concatenate([rng.permutation(50) for _ in range(160)])
    assert any(len(np.unique(stream[i:i + 16])) < 16 for i in range(0, 8000, 16))

