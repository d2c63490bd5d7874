"""The privacy accountant of one DP-SGD run (`dptune.privacy.run.DPSGDRun`): every ε dptune
shows comes from here, computed with `dp_accounting`; σ for a target ε is `calibration`.

Model of one DP-SGD step (../shared/DESIGN.md): the Poisson-subsampled Gaussian mechanism
with sampling rate q = batch_size / n and noise multiplier σ (σ/2 when microbatched, because
one example can change a microbatch term by 2C), under add-or-remove-one adjacency.
A run (`DPSGDRun`, the one record of a run the accountant sees) is that step composed
`steps` times. Two accountants:

- RDP (Rényi DP at TF Privacy's orders, converted to (ε, δ) with dp_accounting's improved
  conversion): the one TF Privacy reports, fast, used for live curves;
- PLD (privacy loss distributions): tighter, pessimistic (an upper bound) at the chosen
  discretization.

No RDP formula is written here: the RDP of a step, composition, the RDP → (ε, δ)
conversion, PLDs and calibration all come from `dp_accounting` (0.6.0). Every ε covers the
release of every intermediate model (all checkpoints of the run), not only the final one;
δ is per example.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dp_accounting
import numpy as np
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from dptune.errors import PrivacyError
from dptune.privacy.run import DPSGDRun, _check_delta, _is_int, _step_event, delta_warning, num_steps


class ExcludedOrderFilter(logging.Filter):
    """Drops dp_accounting's "_compute_log_a_frac failed to converge … Excluding this order"
    warnings. They come from fractional RDP orders at tiny σ (which calibration probes many
    times, filling the terminal with hundreds of lines); dp_accounting then excludes that
    order, which can only make ε larger, never smaller, so nothing is lost by not printing it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "_compute_log_a_frac failed to converge" not in record.getMessage()


EXCLUDED_ORDER_FILTER = ExcludedOrderFilter()
logging.getLogger("absl").addFilter(EXCLUDED_ORDER_FILTER)

__all__ = [
    "RDP_ORDERS",
    "MIN_NOISE_MULTIPLIER",
    "MAX_NOISE_MULTIPLIER",
    "PrivacyReport",
    "privacy_report",
    "compute_epsilon",
    "epsilon_curve",
    "runs_rdp",
    "epsilon_of_rdp",
    "rdp_epsilon_of_event",
    "pld_epsilon_of_event",
    "event_epsilons",
    "pld_value_discretization",
]

# TF Privacy's RDP orders (compute_dp_sgd_privacy_lib): 1.1, 1.2, ..., 10.9, 11, ..., 63,
# 128, 256, 512. See ../shared/REFERENCES.md.
RDP_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + [float(o) for o in range(11, 64)] + [128.0, 256.0, 512.0]
)

# Calibration gives up above this noise multiplier: the target is then unreachable in practice.
MAX_NOISE_MULTIPLIER = 1000.0
# ... and below this one (the target ε is so large that it promises nothing).
MIN_NOISE_MULTIPLIER = 1e-3

# PLD discretization (value_discretization_interval, in nats of privacy loss): relative to
# the RDP ε of the run, and finer for long runs because rounding error grows with the number
# of compositions. Measured against a 10x finer grid: PLD ε at most ~0.12 % above it for runs
# of 10 to 1e5 steps; 0.1 s for MNIST-sized runs (14063 steps).
_PLD_RELATIVE_INTERVAL = 5e-4
_PLD_STEPS_FACTOR = 2.0
_PLD_MIN_INTERVAL = 2e-5
_PLD_MAX_INTERVAL = 1.0

_MICROBATCH_NOTE = (
    "Microbatched (fewer microbatches than the batch size): one example can change a "
    "microbatch's clipped gradient by up to 2C, so the sensitivity doubles and the "
    "accountant charges noise multiplier sigma/2 = {charged:g} instead of sigma = {sigma:g}."
)


# --------------------------------------------------------------------------------------------
# dp_accounting glue
# --------------------------------------------------------------------------------------------


def _rdp_accountant() -> rdp_privacy_accountant.RdpAccountant:
    return rdp_privacy_accountant.RdpAccountant(list(RDP_ORDERS))


@functools.lru_cache(maxsize=65536)
def _step_rdp(sampling_rate: float, charged_noise: float) -> np.ndarray:
    """RDP of one DP-SGD step at RDP_ORDERS, from dp_accounting (cached: the fractional
    orders take tens of milliseconds, and a search re-composes the same trials often)."""
    accountant = _rdp_accountant()
    accountant.compose(_step_event(sampling_rate, charged_noise))
    rdp = np.asarray(accountant.rdp, dtype=float)
    rdp.setflags(write=False)
    return rdp


def runs_rdp(runs: Iterable[DPSGDRun], repeat: int = 1) -> np.ndarray:
    """RDP at RDP_ORDERS of running every run `repeat` times (runs of 0 steps cost nothing).

    RDP composes additively: runs with the same step (q, charged σ) add up their steps, and
    each step's RDP is cached. This is the RdpAccountant's own arithmetic (count × the step's
    RDP), so for copies of one run it equals composing their events exactly, fast."""
    steps_of_step: dict[tuple[float, float], int] = {}
    for run in runs:
        if run.steps > 0:
            key = (run.sampling_rate, run.charged_noise_multiplier)
            steps_of_step[key] = steps_of_step.get(key, 0) + run.steps
    rdp = np.zeros(len(RDP_ORDERS))
    for (sampling_rate, charged), steps in steps_of_step.items():
        rdp = rdp + (repeat * steps) * _step_rdp(sampling_rate, charged)
    return rdp


def epsilon_of_rdp(rdp: np.ndarray, delta: float) -> tuple[float, float | None]:
    """(ε, optimal order) of an RDP curve at RDP_ORDERS, by dp_accounting's conversion."""
    epsilon, order = rdp_privacy_accountant.compute_epsilon(RDP_ORDERS, rdp, delta)
    epsilon = float(epsilon)
    return epsilon, (float(order) if math.isfinite(epsilon) else None)


def rdp_epsilon_of_event(event: dp_accounting.DpEvent, delta: float) -> tuple[float, float | None]:
    """(ε, optimal order) of `event` by the RDP accountant; order None when ε is infinite."""
    accountant = _rdp_accountant()
    accountant.compose(event)
    epsilon, order = accountant.get_epsilon_and_optimal_order(delta)
    epsilon = float(epsilon)
    return epsilon, (float(order) if math.isfinite(epsilon) else None)


def pld_value_discretization(epsilon_rdp: float, steps: int) -> float:
    """PLD value_discretization_interval dptune uses for a run of `steps` steps whose RDP ε
    is `epsilon_rdp`: ε · min(5e-4, 2/steps), clipped to [2e-5, 1]. PLD ε is an upper bound
    at any interval; this one keeps it within ~0.1 % of the exact value and fast."""
    if not math.isfinite(epsilon_rdp):
        return _PLD_MAX_INTERVAL
    interval = epsilon_rdp * min(_PLD_RELATIVE_INTERVAL, _PLD_STEPS_FACTOR / max(1, steps))
    return min(_PLD_MAX_INTERVAL, max(_PLD_MIN_INTERVAL, interval))


def _pld_accountant(epsilon_rdp: float, steps: int) -> pld_privacy_accountant.PLDAccountant:
    return pld_privacy_accountant.PLDAccountant(
        value_discretization_interval=pld_value_discretization(epsilon_rdp, steps)
    )


def pld_epsilon_of_event(
    event: dp_accounting.DpEvent, delta: float, epsilon_rdp: float, total_steps: int
) -> float:
    """ε of `event` by the PLD accountant, discretized for `total_steps` steps whose RDP ε is
    `epsilon_rdp` (math.inf when RDP already says ε is infinite)."""
    if not math.isfinite(epsilon_rdp):
        return math.inf
    accountant = _pld_accountant(epsilon_rdp, total_steps)
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def event_epsilons(
    event: dp_accounting.DpEvent, delta: float, *, steps: int, pld: bool
) -> tuple[float, float | None, float | None]:
    """(RDP ε, its order, PLD ε or None) of `event` at `delta`: what every ε of a run (alone,
    or with the clip-norm release) is, and what calibration solves for. PLD (when `pld`) is
    discretized for `steps` steps (pld_value_discretization of the RDP ε)."""
    epsilon_rdp, order = rdp_epsilon_of_event(event, delta)
    return epsilon_rdp, order, (pld_epsilon_of_event(event, delta, epsilon_rdp, steps) if pld else None)


# --------------------------------------------------------------------------------------------
# ε of one run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivacyReport:
    """The (ε, δ) guarantee of one DP-SGD run (example-level, add-or-remove-one adjacency,
    Poisson sampling), covering every intermediate model of the run.

    run: the run; delta: δ; epochs: as given to compute_epsilon (None when steps were given);
    epsilon_rdp: ε by the RDP accountant (math.inf when σ = 0); rdp_order: the Rényi order
    attaining it (None when ε is infinite); epsilon_pld: ε by the PLD accountant (None when
    not computed); notes: human-readable remarks (microbatching, δ warning). The run's
    fields read through: n, batch_size, noise_multiplier (σ as configured),
    charged_noise_multiplier (σ/2 when microbatched), microbatched, steps, sampling_rate.
    """

    run: DPSGDRun
    delta: float
    epochs: float | None
    epsilon_rdp: float
    rdp_order: float | None
    epsilon_pld: float | None
    notes: tuple[str, ...] = ()

    @property
    def epsilon(self) -> float:
        """The tightest ε computed: PLD when available, else RDP."""
        return self.epsilon_pld if self.epsilon_pld is not None else self.epsilon_rdp

    @property
    def n(self) -> int:
        return self.run.n_train

    @property
    def batch_size(self) -> int:
        return self.run.batch_size

    @property
    def noise_multiplier(self) -> float:
        return self.run.noise_multiplier

    @property
    def charged_noise_multiplier(self) -> float:
        return self.run.charged_noise_multiplier

    @property
    def microbatched(self) -> bool:
        return self.run.microbatched

    @property
    def steps(self) -> int:
        return self.run.steps

    @property
    def sampling_rate(self) -> float:
        return self.run.sampling_rate

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (floats may be inf; `notes` as a list)."""
        return {
            "epsilon_rdp": self.epsilon_rdp,
            "rdp_order": self.rdp_order,
            "epsilon_pld": self.epsilon_pld,
            "steps": self.steps,
            "delta": self.delta,
            "sampling_rate": self.sampling_rate,
            "noise_multiplier": self.noise_multiplier,
            "charged_noise_multiplier": self.charged_noise_multiplier,
            "microbatched": self.microbatched,
            "n": self.n,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "notes": list(self.notes),
        }


def privacy_report(
    run: DPSGDRun, delta: float | None, *, pld: bool = True, epochs: float | None = None
) -> PrivacyReport:
    """ε of `run` at `delta` (None: default_delta(N)), RDP and, when `pld`, PLD, with notes on
    microbatching, σ = 0 and δ ≥ 1/N. `epochs` is only recorded (the run's steps are charged)."""
    delta = _check_delta(delta, run.n_train)
    epsilon_rdp, order, epsilon_pld = event_epsilons(run.event(), delta, steps=run.steps, pld=pld)
    notes = []
    if run.microbatched:
        notes.append(_MICROBATCH_NOTE.format(charged=run.charged_noise_multiplier, sigma=run.noise_multiplier))
    if run.noise_multiplier == 0:
        notes.append("noise_multiplier = 0: no noise, no privacy (epsilon is infinite).")
    warning = delta_warning(delta, run.n_train)
    if warning:
        notes.append(warning)
    return PrivacyReport(run, delta, epochs, epsilon_rdp, order, epsilon_pld, tuple(notes))


def compute_epsilon(
    n: int,
    batch_size: int,
    noise_multiplier: float,
    *,
    epochs: float | None = None,
    steps: int | None = None,
    delta: float | None,
    microbatched: bool = False,
    pld: bool = True,
) -> PrivacyReport:
    """ε of DP-SGD on n examples, expected batch size B, noise multiplier σ, for `epochs`
    epochs (steps = ceil(epochs·n/B)) or exactly `steps` steps (give one), at `delta`
    (None means default_delta(n)).

    The run is the Poisson-subsampled Gaussian (q = B/n, σ; σ/2 when `microbatched`, i.e.
    fewer microbatches than B) self-composed `steps` times. RDP ε is dp_accounting's
    RdpAccountant at RDP_ORDERS with the order that attains it; PLD ε (when `pld`) is its
    PLDAccountant, discretized by pld_value_discretization. σ = 0 gives ε = inf.
    Raises PrivacyError for out-of-range inputs, naming the value.
    """
    run = DPSGDRun.planned(n, batch_size, noise_multiplier, epochs=epochs, steps=steps, microbatched=microbatched)
    return privacy_report(run, delta, pld=pld, epochs=None if epochs is None else float(epochs))


def epsilon_curve(
    n: int,
    batch_size: int,
    noise_multiplier: float,
    *,
    epochs: float,
    delta: float | None,
    microbatched: bool = False,
    every: str | int = "epoch",
) -> list[tuple[int, float]]:
    """RDP ε after each checkpoint of a run: [(steps done, ε), ...], ending at the full run.

    every="epoch": after each epoch e = 1, 2, ... (steps num_steps(n, B, e)) and after the
    last, possibly partial, epoch; every=k (int): after k, 2k, ... steps and the last step.
    The RDP of one step comes from dp_accounting once; t steps have t times that RDP
    (composition), converted to (ε, δ) by dp_accounting.rdp.compute_epsilon, so the last
    point equals compute_epsilon(...).epsilon_rdp. σ = 0 gives ε = inf at every point.
    """
    run = DPSGDRun.planned(n, batch_size, noise_multiplier, epochs=epochs, microbatched=microbatched)
    delta = _check_delta(delta, n)
    if every == "epoch":
        checkpoints = [num_steps(n, batch_size, e) for e in range(1, math.ceil(epochs))]
    elif _is_int(every) and every >= 1:
        checkpoints = list(range(int(every), run.steps, int(every)))
    else:
        raise PrivacyError(f"every must be 'epoch' or an integer >= 1 (steps), got {every!r}")
    checkpoints = sorted({s for s in checkpoints if s < run.steps} | {run.steps})
    if run.charged_noise_multiplier == 0:
        return [(step, math.inf) for step in checkpoints]
    rdp_one_step = _step_rdp(run.sampling_rate, run.charged_noise_multiplier)
    return [(step, epsilon_of_rdp(step * rdp_one_step, delta)[0]) for step in checkpoints]
