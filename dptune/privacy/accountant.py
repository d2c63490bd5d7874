"""The privacy accountant: every ε dptune shows comes from here, computed with `dp_accounting`.

Model of one DP-SGD step (../shared/DESIGN.md): the Poisson-subsampled Gaussian mechanism
with sampling rate q = batch_size / n and noise multiplier σ (σ/2 when microbatched, because
one example can change a microbatch term by 2C), under add-or-remove-one adjacency.
A run is that step composed `steps` times. Two accountants:

- RDP (Rényi DP at TF Privacy's orders, converted to (ε, δ) with dp_accounting's improved
  conversion): the one TF Privacy reports, fast, used for live curves;
- PLD (privacy loss distributions): tighter, pessimistic (an upper bound) at the chosen
  discretization.

No RDP formula is written here: the RDP of a step, composition, the RDP → (ε, δ)
conversion, PLDs, calibration and the cost of hyperparameter search all come from
`dp_accounting` (0.6.0). Every ε covers the release of every intermediate model (all
checkpoints of the run), not only the final one; δ is per example.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import dp_accounting
import numpy as np
from dp_accounting import mechanism_calibration
from dp_accounting.pld import pld_privacy_accountant
from dp_accounting.rdp import rdp_privacy_accountant

from dptune.errors import PrivacyError

__all__ = [
    "RDP_ORDERS",
    "MAX_NOISE_MULTIPLIER",
    "PrivacyReport",
    "TrialPrivacy",
    "SearchCost",
    "num_steps",
    "default_delta",
    "delta_warning",
    "compute_epsilon",
    "epsilon_curve",
    "calibrate_noise_multiplier",
    "trial_privacy",
    "search_cost_repeat_and_select",
    "search_cost_naive_composition",
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


def _check_noise(noise_multiplier: Any) -> float:
    if not _is_real(noise_multiplier) or not math.isfinite(noise_multiplier) or noise_multiplier < 0:
        raise PrivacyError(
            f"noise_multiplier must be a finite number >= 0, got {noise_multiplier!r}"
        )
    return float(noise_multiplier)


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


def _resolve_steps(n: int, batch_size: int, epochs: Any, steps: Any) -> int:
    if (epochs is None) == (steps is None):
        raise PrivacyError(
            f"give exactly one of epochs and steps, got epochs={epochs!r} and steps={steps!r}"
        )
    if steps is not None:
        if not _is_int(steps) or steps < 1:
            raise PrivacyError(f"steps must be an integer >= 1, got {steps!r}")
        return int(steps)
    return num_steps(n, batch_size, epochs)


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


def _charged_noise(noise_multiplier: float, microbatched: bool) -> float:
    """σ the accountant charges: σ/2 when microbatched (sensitivity 2C), else σ."""
    return noise_multiplier / 2.0 if microbatched else noise_multiplier


# --------------------------------------------------------------------------------------------
# dp_accounting glue
# --------------------------------------------------------------------------------------------


def _step_event(sampling_rate: float, charged_noise: float) -> dp_accounting.DpEvent:
    """One DP-SGD step: Poisson sampling at rate q, Gaussian noise multiplier σ (charged)."""
    return dp_accounting.PoissonSampledDpEvent(
        sampling_rate, dp_accounting.GaussianDpEvent(charged_noise)
    )


def dpsgd_run_event(sampling_rate: float, charged_noise: float, steps: int) -> dp_accounting.DpEvent:
    """A DP-SGD run: one step self-composed `steps` times."""
    return dp_accounting.SelfComposedDpEvent(_step_event(sampling_rate, charged_noise), steps)


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


def trials_rdp(trials: Sequence[TrialPrivacy]) -> np.ndarray:
    """RDP of running every trial once: RDP composes additively, T steps = T x one step."""
    return sum(t.steps * _step_rdp(t.sampling_rate, t.charged_noise_multiplier) for t in trials)


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


def pld_epsilon_of_event(
    event: dp_accounting.DpEvent, delta: float, epsilon_rdp: float, total_steps: int
) -> float:
    """ε of `event` by the PLD accountant (math.inf when RDP already says ε is infinite)."""
    if not math.isfinite(epsilon_rdp):
        return math.inf
    accountant = pld_privacy_accountant.PLDAccountant(
        value_discretization_interval=pld_value_discretization(epsilon_rdp, total_steps)
    )
    accountant.compose(event)
    return float(accountant.get_epsilon(delta))


def _epsilons(
    sampling_rate: float, charged_noise: float, steps: int, delta: float, pld: bool
) -> tuple[float, float | None, float | None]:
    """(RDP ε, RDP order, PLD ε or None) of one DP-SGD run."""
    if charged_noise == 0:
        return math.inf, None, (math.inf if pld else None)
    event = dpsgd_run_event(sampling_rate, charged_noise, steps)
    epsilon_rdp, order = rdp_epsilon_of_event(event, delta)
    epsilon_pld = pld_epsilon_of_event(event, delta, epsilon_rdp, steps) if pld else None
    return epsilon_rdp, order, epsilon_pld


# --------------------------------------------------------------------------------------------
# ε of one run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrivacyReport:
    """The (ε, δ) guarantee of one DP-SGD run (example-level, add-or-remove-one adjacency,
    Poisson sampling), covering every intermediate model of the run.

    epsilon_rdp: ε by the RDP accountant (math.inf when σ = 0); rdp_order: the Rényi order
    attaining it (None when ε is infinite); epsilon_pld: ε by the PLD accountant (None when
    not computed); steps: number of steps T; delta: δ; sampling_rate: q = batch_size / n;
    noise_multiplier: σ as configured; charged_noise_multiplier: σ the accountant charged
    (σ/2 when microbatched); notes: human-readable remarks (microbatching, δ warning).
    """

    epsilon_rdp: float
    rdp_order: float | None
    epsilon_pld: float | None
    steps: int
    delta: float
    sampling_rate: float
    noise_multiplier: float
    charged_noise_multiplier: float
    microbatched: bool
    n: int
    batch_size: int
    epochs: float | None
    notes: tuple[str, ...] = ()

    @property
    def epsilon(self) -> float:
        """The tightest ε computed: PLD when available, else RDP."""
        return self.epsilon_pld if self.epsilon_pld is not None else self.epsilon_rdp

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
    _check_n_batch(n, batch_size)
    sigma = _check_noise(noise_multiplier)
    delta = _check_delta(delta, n)
    epochs_value = _check_epochs(epochs) if epochs is not None and steps is None else None
    total_steps = _resolve_steps(n, batch_size, epochs, steps)
    sampling_rate = batch_size / n
    charged = _charged_noise(sigma, bool(microbatched))
    epsilon_rdp, order, epsilon_pld = _epsilons(sampling_rate, charged, total_steps, delta, pld)
    notes = []
    if microbatched:
        notes.append(_MICROBATCH_NOTE.format(charged=charged, sigma=sigma))
    if sigma == 0:
        notes.append("noise_multiplier = 0: no noise, no privacy (epsilon is infinite).")
    warning = delta_warning(delta, n)
    if warning:
        notes.append(warning)
    return PrivacyReport(
        epsilon_rdp=epsilon_rdp,
        rdp_order=order,
        epsilon_pld=epsilon_pld,
        steps=total_steps,
        delta=delta,
        sampling_rate=sampling_rate,
        noise_multiplier=sigma,
        charged_noise_multiplier=charged,
        microbatched=bool(microbatched),
        n=int(n),
        batch_size=int(batch_size),
        epochs=epochs_value,
        notes=tuple(notes),
    )


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
    _check_n_batch(n, batch_size)
    sigma = _check_noise(noise_multiplier)
    delta = _check_delta(delta, n)
    epochs = _check_epochs(epochs)
    total_steps = num_steps(n, batch_size, epochs)
    if every == "epoch":
        checkpoints = [num_steps(n, batch_size, e) for e in range(1, math.ceil(epochs))]
    elif _is_int(every) and every >= 1:
        checkpoints = list(range(int(every), total_steps, int(every)))
    else:
        raise PrivacyError(f"every must be 'epoch' or an integer >= 1 (steps), got {every!r}")
    checkpoints = sorted({s for s in checkpoints if s < total_steps} | {total_steps})
    charged = _charged_noise(sigma, bool(microbatched))
    if charged == 0:
        return [(step, math.inf) for step in checkpoints]
    rdp_one_step = _step_rdp(batch_size / n, charged)
    return [(step, epsilon_of_rdp(step * rdp_one_step, delta)[0]) for step in checkpoints]


# --------------------------------------------------------------------------------------------
# Calibration: σ for a target ε
# --------------------------------------------------------------------------------------------


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
    >= 0.99 · target. Uses dp_accounting.calibrate_dp_mechanism on a bracket found here.
    Raises PrivacyError when σ would exceed MAX_NOISE_MULTIPLIER (target unreachable) or
    fall below MIN_NOISE_MULTIPLIER (target so large it promises nothing).
    """
    _check_n_batch(n, batch_size)
    delta = _check_delta(delta, n)
    epochs = _check_epochs(epochs)
    if not _is_real(target_epsilon) or not math.isfinite(target_epsilon) or target_epsilon <= 0:
        raise PrivacyError(f"target_epsilon must be a finite number > 0, got {target_epsilon!r}")
    if accountant not in ("rdp", "pld"):
        raise PrivacyError(f"accountant must be 'rdp' or 'pld', got {accountant!r}")
    target = float(target_epsilon)
    steps = num_steps(n, batch_size, epochs)
    sampling_rate = batch_size / n
    microbatched = bool(microbatched)
    use_pld = accountant == "pld"

    def epsilon_of(sigma: float) -> float:
        charged = _charged_noise(sigma, microbatched)
        rdp_eps, _, pld_eps = _epsilons(sampling_rate, charged, steps, delta, use_pld)
        return pld_eps if use_pld else rdp_eps

    if epsilon_of(MAX_NOISE_MULTIPLIER) > target:
        hints = [
            f"more training examples (N = {n})",
            f"fewer epochs ({epochs:g}, {steps} steps)",
            f"a smaller batch size / sampling rate (B = {batch_size}, q = {sampling_rate:.3g})",
            "a larger target epsilon or delta",
        ]
        if microbatched:
            hints.append("per-example clipping (microbatches = batch size), which charges sigma, not sigma/2")
        if not use_pld:
            hints.append("the PLD accountant, which is tighter (RDP cannot certify very small epsilon)")
        raise PrivacyError(
            f"target epsilon {target:g} at delta {delta:.3g} is unreachable: it would need a "
            f"noise multiplier above {MAX_NOISE_MULTIPLIER:g} ({accountant.upper()} accountant, "
            f"N = {n}, B = {batch_size}, {epochs:g} epochs). What would help: "
            + "; ".join(hints)
            + "."
        )
    # Bracket [low, high] with epsilon_of(low) > target >= epsilon_of(high), stepping by
    # `factor` from `start`. PLD needs a little less noise than RDP: start from the RDP answer.
    start, factor = 1.0, 2.0
    if use_pld:
        try:
            start = calibrate_noise_multiplier(
                target, n, batch_size, epochs=epochs, delta=delta, microbatched=microbatched, accountant="rdp"
            )
            factor = 1.25
        except PrivacyError:  # RDP cannot reach a target PLD can: search from scratch
            pass
    low = high = start
    if epsilon_of(start) > target:
        while True:
            low, high = high, min(factor * high, MAX_NOISE_MULTIPLIER)
            if epsilon_of(high) <= target:
                break
    else:
        while True:
            low, high = low / factor, low
            if epsilon_of(low) > target:
                break
            if low < MIN_NOISE_MULTIPLIER:
                raise PrivacyError(
                    f"target epsilon {target:g} is so large that any noise multiplier >= "
                    f"{low:g} meets it: such a budget promises no meaningful privacy; "
                    "choose a smaller target epsilon"
                )

    # The PLD discretization depends on the run's RDP ε, i.e. on σ: the accountant factory
    # reads the σ of the event calibrate_dp_mechanism built just before asking for it.
    last_charged: list[float] = [1.0]

    def make_event(sigma: float) -> dp_accounting.DpEvent:
        last_charged[0] = _charged_noise(sigma, microbatched)
        return dpsgd_run_event(sampling_rate, last_charged[0], steps)

    def make_accountant() -> dp_accounting.PrivacyAccountant:
        if not use_pld:
            return _rdp_accountant()
        rdp_eps, _ = rdp_epsilon_of_event(dpsgd_run_event(sampling_rate, last_charged[0], steps), delta)
        return pld_privacy_accountant.PLDAccountant(
            value_discretization_interval=pld_value_discretization(rdp_eps, steps)
        )

    sigma = float(
        dp_accounting.calibrate_dp_mechanism(
            make_accountant,
            make_event,
            target,
            delta,
            mechanism_calibration.ExplicitBracketInterval(low, high),
            tol=1e-5 * low,
        )
    )
    # Guarantee "never above the target" for exactly what compute_epsilon will report.
    for _ in range(200):
        if epsilon_of(sigma) <= target:
            break
        sigma *= 1 + 1e-6
    achieved = epsilon_of(sigma)
    if not (0.99 * target <= achieved <= target):
        raise PrivacyError(
            f"could not calibrate sigma to target epsilon {target:g}: got epsilon {achieved:g} "
            f"at sigma {sigma:g} ({accountant.upper()} accountant)"
        )
    return sigma


# --------------------------------------------------------------------------------------------
# Privacy cost of the hyperparameter search
# --------------------------------------------------------------------------------------------


class TrialPrivacy(NamedTuple):
    """One training run as the accountant sees it (a plain (q, σ, steps) tuple also works).

    sampling_rate: q = batch_size / n; charged_noise_multiplier: σ the accountant charges
    (already σ/2 for a microbatched run, see trial_privacy); steps: number of steps T.
    """

    sampling_rate: float
    charged_noise_multiplier: float
    steps: int


def trial_privacy(
    n: int,
    batch_size: int,
    noise_multiplier: float,
    *,
    epochs: float | None = None,
    steps: int | None = None,
    microbatched: bool = False,
) -> TrialPrivacy:
    """TrialPrivacy of a DP-SGD run given as in compute_epsilon (σ halved when microbatched)."""
    _check_n_batch(n, batch_size)
    sigma = _check_noise(noise_multiplier)
    total_steps = _resolve_steps(n, batch_size, epochs, steps)
    return TrialPrivacy(batch_size / n, _charged_noise(sigma, bool(microbatched)), total_steps)


def _check_trial(trial: Any) -> TrialPrivacy:
    try:
        sampling_rate, charged, steps = trial
    except (TypeError, ValueError):
        raise PrivacyError(
            f"a trial must be (sampling_rate, charged_noise_multiplier, steps), got {trial!r}"
        ) from None
    if not _is_real(sampling_rate) or not 0 < sampling_rate <= 1:
        raise PrivacyError(f"trial sampling_rate must be in (0, 1], got {sampling_rate!r}")
    _check_noise(charged)
    if not _is_int(steps) or steps < 1:
        raise PrivacyError(f"trial steps must be an integer >= 1, got {steps!r}")
    return TrialPrivacy(float(sampling_rate), float(charged), int(steps))


def _check_trials(trials: Any) -> list[TrialPrivacy]:
    """One trial or a non-empty sequence of trials -> list of TrialPrivacy."""
    if isinstance(trials, tuple) and len(trials) == 3 and all(_is_real(v) for v in trials):
        return [_check_trial(trials)]
    try:
        items = list(trials)
    except TypeError:
        raise PrivacyError(f"trials must be a TrialPrivacy or a list of them, got {trials!r}") from None
    if not items:
        raise PrivacyError("trials must not be empty")
    return [_check_trial(t) for t in items]


@dataclass(frozen=True)
class SearchCost:
    """The (ε, δ) guarantee of a hyperparameter search (see `covers` for what it protects).

    epsilon: ε of the whole search by the RDP accountant (math.inf when a trial has σ = 0);
    rdp_order: the order attaining it; epsilon_pld: PLD ε (naive composition only, when
    asked); single_trial_epsilon: RDP ε of the most expensive single trial at the same δ;
    method: "repeat_and_select" or "naive_composition"; distribution: "poisson",
    "truncated_negative_binomial" or None; mean_trials: E[K]; eta, gamma: the truncated
    negative binomial's parameters (None for Poisson); num_trials: K (naive composition).
    """

    epsilon: float
    rdp_order: float | None
    delta: float
    method: str
    single_trial_epsilon: float
    trials: tuple[TrialPrivacy, ...]
    covers: str
    distribution: str | None = None
    mean_trials: float | None = None
    eta: float | None = None
    gamma: float | None = None
    num_trials: int | None = None
    epsilon_pld: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "rdp_order": self.rdp_order,
            "epsilon_pld": self.epsilon_pld,
            "delta": self.delta,
            "method": self.method,
            "single_trial_epsilon": self.single_trial_epsilon,
            "distribution": self.distribution,
            "mean_trials": self.mean_trials,
            "eta": self.eta,
            "gamma": self.gamma,
            "num_trials": self.num_trials,
            "trials": [list(t) for t in self.trials],
            "covers": self.covers,
        }


def _single_trial_epsilon(trials: Sequence[TrialPrivacy], delta: float) -> float:
    """The largest RDP ε of one trial."""
    if any(t.charged_noise_multiplier == 0 for t in trials):
        return math.inf
    return max(epsilon_of_rdp(trials_rdp([t]), delta)[0] for t in trials)


def search_cost_repeat_and_select(
    trials: TrialPrivacy | Iterable[TrialPrivacy],
    *,
    delta: float,
    distribution: str = "poisson",
    mean_trials: float | None = None,
    eta: float | None = None,
    gamma: float | None = None,
) -> SearchCost:
    """ε of releasing only the best of a random number K of trials (Papernot & Steinke 2022).

    What ε covers: the output of the selected trial (its model, every checkpoint of it, its
    hyperparameters and score). It does NOT cover the outputs or scores of the other trials
    (publish those and use search_cost_naive_composition), and it holds only if K really is
    random with the stated distribution (drawn independently of the data; the search must not
    stop early because of results) and the candidate hyperparameters are chosen without
    looking at the private data. Each trial is a DP-SGD run (see TrialPrivacy).

    trials: one TrialPrivacy (or (q, σ_charged, steps) tuple), or several when candidates
    differ; then every candidate is bounded by the order-wise maximum of their RDP curves.
    distribution "poisson": K ~ Poisson(mean_trials). "truncated_negative_binomial": shape
    eta >= 0 (1: geometric, 0: logarithmic) and either mean_trials = E[K] >= 1 or
    gamma in (0, 1) (E[K] = η(1−γ)/(γ(1−γ^η))). Computed by the RDP accountant with
    dp_accounting.dp_event.RepeatAndSelectDpEvent (several candidates: the same dp_accounting
    routine on the maximum RDP curve).
    """
    trial_list = _check_trials(trials)
    if not _is_real(delta) or not 0 < delta < 1:
        raise PrivacyError(f"delta must be a number in (0, 1), got {delta!r}")
    delta = float(delta)
    if distribution == "poisson":
        if eta is not None or gamma is not None:
            raise PrivacyError(
                f"eta and gamma apply to the truncated negative binomial only, got eta={eta!r}, gamma={gamma!r}"
            )
        if not _is_real(mean_trials) or not math.isfinite(mean_trials) or mean_trials < 1:
            raise PrivacyError(f"mean_trials must be a number >= 1, got {mean_trials!r}")
        shape, mean = math.inf, float(mean_trials)
    elif distribution == "truncated_negative_binomial":
        if not _is_real(eta) or not math.isfinite(eta) or eta < 0:
            raise PrivacyError(f"eta (shape) must be a finite number >= 0, got {eta!r}")
        shape = float(eta)
        if (mean_trials is None) == (gamma is None):
            raise PrivacyError(
                f"give exactly one of mean_trials and gamma, got mean_trials={mean_trials!r}, gamma={gamma!r}"
            )
        if gamma is not None:
            if not _is_real(gamma) or not 0 < gamma < 1:
                raise PrivacyError(f"gamma must be a number in (0, 1), got {gamma!r}")
            mean = float(rdp_privacy_accountant._truncated_negative_binomial_mean(float(gamma), shape))
        else:
            if not _is_real(mean_trials) or not math.isfinite(mean_trials) or mean_trials < 1:
                raise PrivacyError(f"mean_trials must be a number >= 1, got {mean_trials!r}")
            mean = float(mean_trials)
            gamma = float(rdp_privacy_accountant._gamma_truncated_negative_binomial(shape, mean))
    else:
        raise PrivacyError(
            f"distribution must be 'poisson' or 'truncated_negative_binomial', got {distribution!r}"
        )

    single = _single_trial_epsilon(trial_list, delta)
    if not math.isfinite(single):
        epsilon, order = math.inf, None
    elif len(trial_list) == 1:
        t = trial_list[0]
        event = dp_accounting.dp_event.RepeatAndSelectDpEvent(
            dpsgd_run_event(t.sampling_rate, t.charged_noise_multiplier, t.steps), mean, shape
        )
        epsilon, order = rdp_epsilon_of_event(event, delta)
    else:
        curves = []
        for t in trial_list:
            accountant = _rdp_accountant()
            accountant.compose(dpsgd_run_event(t.sampling_rate, t.charged_noise_multiplier, t.steps))
            curves.append(accountant.rdp)
        orders = np.asarray(RDP_ORDERS)
        rdp = rdp_privacy_accountant._compute_rdp_repeat_and_select(
            orders, np.max(curves, axis=0), mean, shape
        )
        epsilon, order = rdp_privacy_accountant.compute_epsilon(orders, rdp, delta)
        epsilon = float(epsilon)
        order = float(order) if math.isfinite(epsilon) else None
    covers = (
        "the release of the single best trial (its model and all its checkpoints, its "
        f"hyperparameters and score) out of a random number of trials K ~ {distribution}"
        f" with E[K] = {mean:g}; not the other trials' outputs or scores"
    )
    return SearchCost(
        epsilon=epsilon,
        rdp_order=order,
        delta=delta,
        method="repeat_and_select",
        single_trial_epsilon=single,
        trials=tuple(trial_list),
        covers=covers,
        distribution=distribution,
        mean_trials=mean,
        eta=None if distribution == "poisson" else shape,
        gamma=None if distribution == "poisson" else float(gamma),
    )


def search_cost_naive_composition(
    trials: TrialPrivacy | Iterable[TrialPrivacy],
    *,
    delta: float,
    num_trials: int = 1,
    pld: bool = False,
) -> SearchCost:
    """ε of releasing the outputs of all trials: plain composition of every trial.

    What ε covers: everything every trial produced (all models, checkpoints, scores), so it
    also covers releasing all results of an Optuna study and any adaptive choice of the next
    trial. trials: one TrialPrivacy (or (q, σ_charged, steps) tuple), repeated `num_trials`
    times, or a list of them (one per trial, configurations may differ; `num_trials` then
    repeats the whole list). RDP ε by dp_accounting's RdpAccountant on the composed events,
    PLD ε too when `pld`.
    """
    trial_list = _check_trials(trials)
    if not _is_real(delta) or not 0 < delta < 1:
        raise PrivacyError(f"delta must be a number in (0, 1), got {delta!r}")
    if not _is_int(num_trials) or num_trials < 1:
        raise PrivacyError(f"num_trials must be an integer >= 1, got {num_trials!r}")
    delta = float(delta)
    single = _single_trial_epsilon(trial_list, delta)
    total_steps = int(num_trials) * sum(t.steps for t in trial_list)
    if not math.isfinite(single):
        epsilon, order, epsilon_pld = math.inf, None, (math.inf if pld else None)
    else:
        epsilon, order = epsilon_of_rdp(int(num_trials) * trials_rdp(trial_list), delta)
        epsilon_pld = None
        if pld:
            event = dp_accounting.SelfComposedDpEvent(
                dp_accounting.ComposedDpEvent(
                    [dpsgd_run_event(t.sampling_rate, t.charged_noise_multiplier, t.steps) for t in trial_list]
                ),
                int(num_trials),
            )
            epsilon_pld = pld_epsilon_of_event(event, delta, epsilon, total_steps)
    count = int(num_trials) * len(trial_list)
    return SearchCost(
        epsilon=epsilon,
        rdp_order=order,
        delta=delta,
        method="naive_composition",
        single_trial_epsilon=single,
        trials=tuple(trial_list),
        covers=f"the release of all outputs and scores of all {count} trials",
        num_trials=count,
        epsilon_pld=epsilon_pld,
    )
