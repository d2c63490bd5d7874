"""Which examples each DP-SGD step sees, as fixed-size chunks (static shapes, no drops).

`poisson`: every example joins a step independently with probability q = B/N (the
Poisson subsampling the accountant assumes). The count is Binomial(N, q) and, given the
count, the subset is uniform, which is the same distribution. Each chunk has a fixed
number of rows (`poisson_chunk_sizes`); unused rows are padding (mask 0). A step whose
sample overflows one chunk is split over several chunks, so no sampled example is ever dropped.
`shuffle`: fixed batches of exactly B from a stream of per-epoch permutations, as
TF Privacy does; microbatch j holds consecutive positions, as TF Privacy's reshape does. A
batch never holds one example twice, also where it straddles two permutations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    """Rows of one step: example indices, mask (1 = sampled, 0 = padding), microbatch ids."""

    indices: np.ndarray  # int32 [rows]
    mask: np.ndarray  # float32 [rows]
    microbatch: np.ndarray  # int32 [rows], in [0, m)


def poisson_chunk_rows(n: int, batch_size: int, headroom_sd: float = 2.0) -> int:
    """Rows for B plus `headroom_sd` standard deviations of the Binomial count, rounded up to
    a multiple of 8, at most N (a Poisson sample exceeds headroom 2 in about 2% of steps,
    headroom 3 in about 0.1%)."""
    q = batch_size / n
    rows = math.ceil(batch_size + headroom_sd * math.sqrt(n * q * (1 - q)))
    return min(n, 8 * math.ceil(rows / 8))


POISSON_LADDER_SD = (-1.0, 0.0, 1.0, 2.0, 3.0)


def poisson_chunk_sizes(n: int, batch_size: int) -> tuple[int, ...]:
    """The row counts a Poisson chunk is computed at: `poisson_chunk_rows` at B − 1 to B + 3
    standard deviations of the Binomial count, one sd apart (increasing, distinct; the last
    one is the chunk's padded size, so a second chunk is needed in about 0.1% of steps). The
    DP step computes each chunk at the smallest of these that holds its sampled rows (the
    rows left out are padding), so a step costs about the rows it samples (on average about
    B + 0.6 sd rather than the padded B + 3 sd), all sizes traced once as one function."""
    return tuple(sorted({poisson_chunk_rows(n, batch_size, sd) for sd in POISSON_LADDER_SD} - {0}))


class PoissonSampler:
    def __init__(self, n: int, batch_size: int, num_microbatches: int, rng: np.random.Generator,
                 chunk_rows: int | None = None):
        self.n, self.q, self.num_microbatches, self.rng = n, batch_size / n, num_microbatches, rng
        self.chunk_rows = chunk_rows or poisson_chunk_sizes(n, batch_size)[-1]

    def next_step(self) -> list[Chunk]:
        count = self.rng.binomial(self.n, self.q)
        indices = self.rng.choice(self.n, size=count, replace=False).astype(np.int32)
        microbatch = self.rng.integers(0, self.num_microbatches, size=count, dtype=np.int32)
        return _into_chunks(indices, microbatch, self.chunk_rows)


class ShuffleSampler:
    def __init__(self, n: int, batch_size: int, num_microbatches: int, rng: np.random.Generator):
        self.n, self.batch_size, self.rng = n, batch_size, rng
        self.chunk_rows = batch_size
        self._microbatch = (np.arange(batch_size) // (batch_size // num_microbatches)).astype(np.int32)
        self._order = np.empty(0, dtype=np.int32)

    def next_step(self) -> list[Chunk]:
        while len(self._order) < self.batch_size:
            self._order = np.concatenate([self._order, self._next_permutation(self._order)])
        indices, self._order = self._order[: self.batch_size], self._order[self.batch_size :]
        return _into_chunks(indices, self._microbatch, self.chunk_rows)


    def _next_permutation(self, leftover: np.ndarray) -> np.ndarray:
        """A fresh permutation of all examples, reordered so that the batch that straddles the
        epoch boundary (`leftover` + its head) never holds one example twice (which would double
        that step's sensitivity): the head is filled with examples not in `leftover`, and the
        rest keeps its random order. Every example still appears once per permutation."""
        fresh = self.rng.permutation(self.n).astype(np.int32)
        if len(leftover) == 0:
            return fresh
        candidates = fresh[~np.isin(fresh, leftover)]
        head = candidates[: self.batch_size - len(leftover)]
        return np.concatenate([head, fresh[~np.isin(fresh, head)]])


def _into_chunks(indices: np.ndarray, microbatch: np.ndarray, rows: int) -> list[Chunk]:
    chunks = []
    for start in range(0, max(len(indices), 1), rows):
        part = indices[start : start + rows]
        used = len(part)
        chunk = Chunk(indices=np.zeros(rows, np.int32), mask=np.zeros(rows, np.float32),
                      microbatch=np.zeros(rows, np.int32))
        chunk.indices[:used] = part
        chunk.mask[:used] = 1.0
        chunk.microbatch[:used] = microbatch[start : start + rows]
        chunks.append(chunk)
    return chunks


def make_sampler(sampling: str, n: int, batch_size: int, num_microbatches: int, rng: np.random.Generator):
    if sampling == "poisson":
        return PoissonSampler(n, batch_size, num_microbatches, rng)
    return ShuffleSampler(n, batch_size, num_microbatches, rng)
