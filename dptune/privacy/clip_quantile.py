"""The private clip-norm quantile (step 1 of TF Privacy's tuning recipe), pure numpy.

Per-example gradient norms (`dptune.engine.profile`) are counted in a histogram over fixed,
data-independent log-spaced bins, and Laplace noise of scale 1/ε_C is added to every count:
one example adds or removes one count, so the histogram is pure ε_C-DP. Quantiles are read
off the noisy cumulative counts (post-processing, free). ε_C is composed with every run
trained with that C (`dptune.privacy.search_cost.epsilon_with_clip_selection`). A public or
proxy dataset can be profiled instead, exactly and at no privacy cost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dptune.errors import PrivacyError

# Fixed, data-independent bins for the private histogram: 5 per decade from 1e-3 to 1e3,
# plus one bin below and one above (32 counts). Few bins keep the total Laplace noise small
# next to the counts; 5 per decade resolve C within a factor 1.6.
BIN_EDGES = np.logspace(-3, 3, 31)
PROFILE_QUANTILES = (0.5, 0.75, 0.9)



def histogram(norms: np.ndarray) -> np.ndarray:
    """Counts over BIN_EDGES with an underflow and an overflow bin (len(BIN_EDGES) + 1)."""
    inner, _ = np.histogram(np.clip(norms, BIN_EDGES[0], BIN_EDGES[-1]), bins=BIN_EDGES)
    below = int(np.sum(norms < BIN_EDGES[0]))
    above = int(np.sum(norms > BIN_EDGES[-1]))
    inner[0] -= below
    inner[-1] -= above
    return np.concatenate([[below], inner, [above]]).astype(np.float64)


def quantile_from_histogram(counts: np.ndarray, quantile: float) -> float:
    """The `quantile` of the norms a histogram over BIN_EDGES describes: the first bin where
    the cumulative count reaches `quantile` of the total, interpolated log-linearly inside
    it. Noisy counts are used as they are (negative ones too): clamping them at 0 would
    bias the quantile upwards. Values beyond the outer edges are read as the edge."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        return 1.0  # nothing survives the noise: TF Privacy's "1.0 often works"
    target = quantile * total
    cumulative = np.cumsum(counts)
    reached = cumulative >= target
    index = int(np.argmax(reached)) if reached.any() else len(counts) - 1
    if index == 0:
        return float(BIN_EDGES[0])
    if index == len(counts) - 1:
        return float(BIN_EDGES[-1])
    lower, upper = BIN_EDGES[index - 1], BIN_EDGES[index]
    before = cumulative[index - 1]
    inside = counts[index]
    fraction = 1.0 if inside <= 0 else float(np.clip((target - before) / inside, 0.0, 1.0))
    return float(lower * (upper / lower) ** fraction)


@dataclass(frozen=True)
class ClipSelection:
    """How C was chosen and what that cost.

    source: "private" (noisy histogram of the training data), "public" (exact, on a public
    or proxy dataset), "fixed" (given). epsilon: the (pure, δ = 0) ε spent. counts: the
    histogram released (noisy when private, so possibly negative), one count below
    bin_edges[0], one per bin, one above bin_edges[-1].
    quantiles: {"0.5": ..., "0.75": ..., "0.9": ...} read from that histogram.
    """

    source: str
    l2_norm_clip: float
    quantile: float | None
    epsilon: float
    examples: int = 0
    counts: list[float] = field(default_factory=list)
    bin_edges: list[float] = field(default_factory=list)
    quantiles: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def private_clip_norm(
    norms: np.ndarray, quantile: float, epsilon: float, *, rng: np.random.Generator | None = None
) -> ClipSelection:
    """C = the `quantile` of `norms`, released with pure `epsilon`-DP (Laplace histogram).

    rng: None draws the noise from the OS (what a real release needs); tests pass a seeded one.
    """
    if epsilon <= 0:
        raise PrivacyError(f"the private clip-norm quantile needs an epsilon > 0, got {epsilon}")
    rng = rng or np.random.default_rng()
    noisy = histogram(norms) + rng.laplace(scale=1.0 / epsilon, size=len(BIN_EDGES) + 1)
    return ClipSelection(
        source="private",
        l2_norm_clip=quantile_from_histogram(noisy, quantile),
        quantile=quantile,
        epsilon=float(epsilon),
        examples=int(len(norms)),
        counts=[round(float(c), 3) for c in noisy],
        bin_edges=[float(e) for e in BIN_EDGES],
        quantiles={str(q): quantile_from_histogram(noisy, q) for q in PROFILE_QUANTILES},
    )


def public_clip_norm(norms: np.ndarray, quantile: float) -> ClipSelection:
    """C = the exact `quantile` of norms measured on public/proxy data (no privacy cost)."""
    return ClipSelection(
        source="public",
        l2_norm_clip=float(np.quantile(norms, quantile)),
        quantile=quantile,
        epsilon=0.0,
        examples=int(len(norms)),
        counts=[float(c) for c in histogram(norms)],
        bin_edges=[float(e) for e in BIN_EDGES],
        quantiles={str(q): float(np.quantile(norms, q)) for q in PROFILE_QUANTILES},
    )
