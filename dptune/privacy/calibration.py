"""Calibration: σ for a target ε, the one solver (dp_accounting's `calibrate_dp_mechanism` on
the event that must meet the target: one run, a run with the clip-norm release, or a search)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import dp_accounting
from dp_accounting import mechanism_calibration

from dptune.errors import PrivacyError
from dptune.privacy.accountant import (
    MAX_NOISE_MULTIPLIER,
    MIN_NOISE_MULTIPLIER,
    _pld_accountant,
    _rdp_accountant,
    event_epsilons,
    rdp_epsilon_of_event,
)
from dptune.privacy.run import DPSGDRun, _check_delta, _is_real

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
    low, high = _bracket(epsilon_of, run.noise_multiplier, target, what)
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


def _bracket(epsilon_of: Callable[[float], float], guess: float, target: float, what: str) -> tuple[float, float]:
    """(low, high) with epsilon_of(low) > target >= epsilon_of(high), by steps of 2× from the
    guess (epsilon_of(MAX_NOISE_MULTIPLIER) <= target is known). Raises PrivacyError when even
    σ below MIN_NOISE_MULTIPLIER meets the target."""
    low = high = guess
    if epsilon_of(high) > target:
        while True:
            low, high = high, min(2.0 * high, MAX_NOISE_MULTIPLIER)
            if epsilon_of(high) <= target:
                return low, high
    while True:
        low, high = low / 2.0, low
        if epsilon_of(low) > target:
            return low, high
        if low < MIN_NOISE_MULTIPLIER:
            raise PrivacyError(
                f"target epsilon {target:g} is so large that any noise multiplier >= {low:g} meets it "
                f"for {what}: such a budget promises no meaningful privacy; choose a smaller target epsilon"
            )


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
