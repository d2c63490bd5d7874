"""The privacy accountant of one DP-SGD run: every ε dptune shows comes from here, computed with `dp_accounting`.

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
conversion, PLDs and calibration all come from `dp_accounting` (0.6.0). `calibrate_noise`
is the one σ solver: every calibration (one run, a run with the clip-norm release, a whole
search; `search_cost`) hands it the event that must meet the target. Every ε covers the
release of every intermediate model (all checkpoints of the run), not only the final one;
δ is per example.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dp_accounting
import numpy as np
from dp_accounting import mechanism_calibration
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from dptune.errors import PrivacyError
from dptune.spec.config import DPSGDConfig


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
    "DPSGDRun",
    "PrivacyReport",
    "num_steps",
    "default_delta",
    "delta_warning",
    "privacy_report",
    "compute_epsilon",
    "epsilon_curve",
    "calibrate_noise",
    "calibrate_noise_multiplier",
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
# Small helpers: steps, delta, validation
# --------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_n_batch(n: Any, batch_size: Any) -> None:
    if not _is_int(n) or n < 1:
        raise PrivacyError(f"n (number of training examples) must be an integer >= 1, got {n!r}")
    if not _is_int(batch_size) or not 1 <= batch_size <= n:
        raise PrivacyError(
            f"batch_size must be an integer between 1 and n ({n}), got {batch_size!r}"
        )


def _check_delta(delta: Any, n: int) -> float:
    if delta is None:
        return default_delta(n)
    if not _is_real(delta) or not 0 < delta < 1:
        raise PrivacyError(f"delta must be a number in (0, 1), got {delta!r}")
    return float(delta)


def _check_epochs(epochs: Any) -> float:
    if not _is_real(epochs) or not math.isfinite(epochs) or epochs <= 0:
        raise PrivacyError(f"epochs must be a finite number > 0, got {epochs!r}")
    return float(epochs)


def num_steps(n: int, batch_size: int, epochs: float) -> int:
    """Number of DP-SGD steps of `epochs` epochs: ceil(epochs · n / batch_size).

    n: training examples; batch_size: expected batch size B; epochs may be fractional.
    A product that is an integer up to floating-point noise (e.g. 0.1 · 60000 / 250) is not
    rounded up. REFERENCES.md: n=60000, B=256, 60 epochs -> 14063.
    """
    _check_n_batch(n, batch_size)
    epochs = _check_epochs(epochs)
    exact = epochs * n / batch_size
    nearest = round(exact)
    if abs(exact - nearest) <= 1e-9 * max(1.0, exact):
        return max(1, int(nearest))
    return max(1, math.ceil(exact))


def default_delta(n: int) -> float:
    """dptune's default δ for n training examples: 1 / n^1.1 (below 1/n, as δ must be)."""
    if not _is_int(n) or n < 1:
        raise PrivacyError(f"n (number of training examples) must be an integer >= 1, got {n!r}")
    return 1.0 / float(n) ** 1.1


def delta_warning(delta: float, n: int) -> str | None:
    """A warning text when δ ≥ 1/n (a mechanism that publishes one random example is then
    (0, δ)-DP, so the guarantee is meaningless); None when δ < 1/n."""
    if delta >= 1.0 / n:
        return (
            f"Warning: delta = {delta:.3g} is not below 1/N = {1.0 / n:.3g} (N = {n}); a mechanism "
            f"that publishes a random training example meets such a guarantee. Use "
            f"delta < 1/N, e.g. the default 1/N^1.1 = {default_delta(n):.3g}."
        )
    return None


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def _step_event(sampling_rate: float, charged_noise: float) -> dp_accounting.DpEvent:
    """One DP-SGD step: Poisson sampling at rate q, Gaussian noise multiplier σ (charged)."""
    return dp_accounting.PoissonSampledDpEvent(sampling_rate, dp_accounting.GaussianDpEvent(charged_noise))


@dataclass(frozen=True)
class DPSGDRun:
    """One DP-SGD training run as the accountant sees it: the only record of a run in dptune.privacy.

    n_train: N, training examples (the unit of privacy is one of them); batch_size: the
    expected batch size B (1 <= B <= N); noise_multiplier: σ as configured (noise std σC on
    the clipped sum); steps: T (0: a run that never took a step, which costs nothing);
    microbatched: fewer microbatches than B (the accountant then charges σ/2, see
    `charged_noise_multiplier`). Raises PrivacyError for out-of-range values, naming them.
    """

    n_train: int
    batch_size: int
    noise_multiplier: float
    steps: int
    microbatched: bool = False

    def __post_init__(self) -> None:
        _check_n_batch(self.n_train, self.batch_size)
        sigma = self.noise_multiplier
        if not _is_real(sigma) or not math.isfinite(sigma) or sigma < 0:
            raise PrivacyError(f"noise_multiplier must be a finite number >= 0, got {sigma!r}")
        if not _is_int(self.steps) or self.steps < 0:
            raise PrivacyError(f"steps must be an integer >= 0, got {self.steps!r}")
        for name, value in (("n_train", int(self.n_train)), ("batch_size", int(self.batch_size)),
                            ("noise_multiplier", float(sigma)), ("steps", int(self.steps)),
                            ("microbatched", bool(self.microbatched))):
            object.__setattr__(self, name, value)

    @classmethod
    def planned(
        cls,
        n_train: int,
        batch_size: int,
        noise_multiplier: float,
        *,
        epochs: float | None = None,
        steps: int | None = None,
        microbatched: bool = False,
    ) -> DPSGDRun:
        """The run of `epochs` epochs (steps = num_steps(n_train, batch_size, epochs)) or of
        exactly `steps` >= 1 steps: give exactly one."""
        if (epochs is None) == (steps is None):
            raise PrivacyError(f"give exactly one of epochs and steps, got epochs={epochs!r} and steps={steps!r}")
        if steps is None:
            steps = num_steps(n_train, batch_size, epochs)
        elif not _is_int(steps) or steps < 1:
            raise PrivacyError(f"steps must be an integer >= 1, got {steps!r}")
        return cls(n_train, batch_size, noise_multiplier, steps, microbatched)

    @classmethod
    def of_config(cls, config: DPSGDConfig, n_train: int, steps: int | None = None) -> DPSGDRun:
        """The run of `config` on N = `n_train` rows: `steps` steps (default: the whole
        config.epochs); microbatched when config.num_microbatches < config.batch_size."""
        if steps is None:
            steps = num_steps(n_train, config.batch_size, config.epochs)
        return cls(n_train, config.batch_size, config.noise_multiplier, steps, not config.per_example)

    @property
    def sampling_rate(self) -> float:
        """q = B / N: the probability that an example joins a step (Poisson sampling)."""
        return self.batch_size / self.n_train

    @property
    def charged_noise_multiplier(self) -> float:
        """σ the accountant charges: σ/2 when microbatched (one example can change a
        microbatch's clipped gradient by 2C, so the sensitivity doubles), else σ.
        This is the only place in dptune that applies that rule."""
        return self.noise_multiplier / 2.0 if self.microbatched else self.noise_multiplier

    def with_noise(self, noise_multiplier: float) -> DPSGDRun:
        """The same run with noise multiplier σ = `noise_multiplier` (as configured)."""
        return dataclasses.replace(self, noise_multiplier=noise_multiplier)

    def event(self) -> dp_accounting.DpEvent:
        """The run as a dp_accounting event: one step self-composed `steps` times."""
        return dp_accounting.SelfComposedDpEvent(
            _step_event(self.sampling_rate, self.charged_noise_multiplier), self.steps
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


# --------------------------------------------------------------------------------------------
# Calibration: σ for a target ε (the one solver)
# --------------------------------------------------------------------------------------------


def _unreachable(run: DPSGDRun, target: float, delta: float, accountant: str, what: str,
                 hints: Sequence[str]) -> PrivacyError:
    helps = [
        f"more training examples (N = {run.n_train})",
        f"fewer epochs ({run.steps} steps, {run.steps * run.sampling_rate:.3g} epochs)",
        f"a smaller batch size / sampling rate (B = {run.batch_size}, q = {run.sampling_rate:.3g})",
        "a larger target epsilon or delta",
        *hints,
    ]
    if run.microbatched:
        helps.append("per-example clipping (microbatches = batch size), which charges sigma, not sigma/2")
    return PrivacyError(
        f"target epsilon {target:g} at delta {delta:.3g} is unreachable for {what}: it would need a "
        f"noise multiplier above {MAX_NOISE_MULTIPLIER:g} ({accountant.upper()} accountant, "
        f"N = {run.n_train}, B = {run.batch_size}, {run.steps} steps). What would help: " + "; ".join(helps) + "."
    )


def calibrate_noise(
    run: DPSGDRun,
    target_epsilon: float,
    delta: float,
    *,
    make_event: Callable[[DPSGDRun], dp_accounting.DpEvent] = DPSGDRun.event,
    accountant: str = "rdp",
    what: str = "one training run",
    hints: Sequence[str] = (),
) -> float:
    """The smallest noise multiplier σ (to ~1e-5 relative) at which `make_event(run with σ)`
    meets `target_epsilon` at `delta`: the one σ solver behind every calibration.

    run: the run to calibrate (N, B, steps, microbatching); its noise_multiplier is the
    first guess, in [MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER] (1 suits targets near 1).
    The σ returned is the one to configure (the event charges σ/2 when microbatched).
    make_event: the mechanism that must meet the target: the run alone (default), the run
    composed with the clip-norm release, or a whole search of such runs. accountant: "rdp"
    or "pld" (PLD discretized for run.steps, as compute_epsilon does). Guarantee: the ε of
    that event, exactly as event_epsilons computes it, is <= target and >= 0.99 · target.
    Solved by dp_accounting.calibrate_dp_mechanism on a bracket found here (steps of 2× from
    the guess). `what` names the mechanism and `hints` add remedies in the messages.
    Raises PrivacyError when σ would exceed MAX_NOISE_MULTIPLIER (the target is unreachable;
    the message says what would help) or fall below MIN_NOISE_MULTIPLIER (the target is so
    large that it promises nothing).
    """
    if not _is_real(target_epsilon) or not math.isfinite(target_epsilon) or target_epsilon <= 0:
        raise PrivacyError(f"target_epsilon must be a finite number > 0, got {target_epsilon!r}")
    delta = _check_delta(delta, run.n_train)
    if accountant not in ("rdp", "pld"):
        raise PrivacyError(f"accountant must be 'rdp' or 'pld', got {accountant!r}")
    if not MIN_NOISE_MULTIPLIER <= run.noise_multiplier <= MAX_NOISE_MULTIPLIER:
        raise PrivacyError(f"the first guess of sigma must be in [{MIN_NOISE_MULTIPLIER:g}, "
                           f"{MAX_NOISE_MULTIPLIER:g}], got {run.noise_multiplier:g}")
    target = float(target_epsilon)
    use_pld = accountant == "pld"
    # The PLD discretization depends on the event's RDP ε, i.e. on σ: the accountant factory
    # reads the event calibrate_dp_mechanism built just before asking for it.
    last_event: list[dp_accounting.DpEvent] = []

    def event_of(sigma: float) -> dp_accounting.DpEvent:
        last_event[:] = [make_event(run.with_noise(float(sigma)))]
        return last_event[0]

    def epsilon_of(sigma: float) -> float:
        epsilon_rdp, _, epsilon_pld = event_epsilons(event_of(sigma), delta, steps=run.steps, pld=use_pld)
        return epsilon_pld if use_pld else epsilon_rdp

    def make_accountant() -> dp_accounting.PrivacyAccountant:
        if not use_pld:
            return _rdp_accountant()
        return _pld_accountant(rdp_epsilon_of_event(last_event[0], delta)[0], run.steps)

    if epsilon_of(MAX_NOISE_MULTIPLIER) > target:
        raise _unreachable(run, target, delta, accountant, what, hints)
    low = high = run.noise_multiplier  # bracket: epsilon_of(low) > target >= epsilon_of(high)
    if epsilon_of(high) > target:
        while True:
            low, high = high, min(2.0 * high, MAX_NOISE_MULTIPLIER)
            if epsilon_of(high) <= target:
                break
    else:
        while True:
            low, high = low / 2.0, low
            if epsilon_of(low) > target:
                break
            if low < MIN_NOISE_MULTIPLIER:
                raise PrivacyError(
                    f"target epsilon {target:g} is so large that any noise multiplier >= {low:g} meets it "
                    f"for {what}: such a budget promises no meaningful privacy; choose a smaller target epsilon"
                )
    sigma = float(dp_accounting.calibrate_dp_mechanism(
        make_accountant, event_of, target, delta, mechanism_calibration.ExplicitBracketInterval(low, high),
        tol=1e-5 * low,
    ))
    achieved = epsilon_of(sigma)
    for _ in range(200):  # "never above the target", for exactly the ε reported later
        if achieved <= target:
            break
        sigma *= 1 + 1e-6
        achieved = epsilon_of(sigma)
    if not 0.99 * target <= achieved <= target:
        raise PrivacyError(
            f"could not calibrate sigma for {what} to target epsilon {target:g}: got epsilon {achieved:g} "
            f"at sigma {sigma:g} ({accountant.upper()} accountant)"
        )
    return sigma


def calibrate_noise_multiplier(
    target_epsilon: float,
    n: int,
    batch_size: int,
    *,
    epochs: float,
    delta: float | None,
    microbatched: bool = False,
    accountant: str = "rdp",
) -> float:
    """The smallest noise multiplier σ (to ~1e-5 relative) whose run meets `target_epsilon`.

    The run is as in compute_epsilon (`microbatched` charges σ/2; the σ returned is the one
    to configure, not the charged one). `accountant` is "rdp" or "pld": the ε that must meet
    the target, exactly as compute_epsilon computes it. Guarantee: that ε is <= target and
    >= 0.99 · target (calibrate_noise). PLD starts from the RDP answer (it needs a little
    less noise). Raises PrivacyError when σ would exceed MAX_NOISE_MULTIPLIER (target
    unreachable) or fall below MIN_NOISE_MULTIPLIER (target so large it promises nothing).
    """
    run = DPSGDRun.planned(n, batch_size, 1.0, epochs=epochs, microbatched=microbatched)
    delta = _check_delta(delta, n)
    if accountant == "pld":
        try:
            run = run.with_noise(calibrate_noise(run, target_epsilon, delta))
        except PrivacyError:  # RDP cannot reach a target PLD can: search from σ = 1
            pass
    hints = ["the PLD accountant, which is tighter (RDP cannot certify very small epsilon)"] if accountant == "rdp" else []
    return calibrate_noise(run, target_epsilon, delta, accountant=accountant, hints=hints)
