"""Can a search meet its privacy budget? Checked before any trial runs, by the dashboard and
by `dptune tune` alike (pure: a spec and the dataset's N in, messages out).

`check_budget(spec, n_train)` returns every problem at once, as (errors, warnings):

- δ: a warning when δ ≥ 1/N or δ is large in absolute terms
  (dptune.privacy.statement.delta_warnings).
- σ calibrated to the target (budgeted, unless the target covers the whole search): each
  corner of the ranges (smallest and largest B and epochs, with and without microbatching)
  is feasible when σ = MAX_NOISE_MULTIPLIER meets the target and σ = MIN_NOISE_MULTIPLIER
  does not. No feasible corner is an error (the target is unreachable, or so large that it
  promises nothing); some infeasible corners are a warning naming them (their trials fail).
- σ searched (pareto): a warning when even the largest σ of the range misses the target at
  the smallest B and epochs (no trial would be within it).

`privacy_notes(spec, n_train)` says, before anything runs, what will not be private or will
cost more than it seems: the recipe's non-private baseline, microbatching (σ/2 charged),
batch sizes above N (capped), and targets so small that the noise swamps the gradients.

ε is what a trial is charged: its training run composed with the clip-norm histograms already
released on the data (`clip_selection_epsilon`), as trials calibrate and record it. A target
that covers the whole search (`epsilon_includes_search_cost`) is calibrated when the trials
start; this module does not check it.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

from dptune import privacy
from dptune.errors import PrivacyError
from dptune.privacy.search_cost import epsilon_with_clip_selection
from dptune.privacy.statement import delta_warnings
from dptune.spec.ranges import PER_EXAMPLE
from dptune.spec.search import SearchSpec
from dptune.study.modes import NoisePolicy, mode_for


class BudgetCheck(NamedTuple):
    """Messages for the user: any error means no trial could meet the budget (start nothing);
    warnings leave the search possible."""

    errors: list[str]
    warnings: list[str]


def resolve_delta(spec: SearchSpec, n_train: int) -> float:
    """The search's δ: the spec's, else dptune's default 1/N^1.1."""
    return spec.delta if spec.delta is not None else privacy.default_delta(n_train)


def check_budget(spec: SearchSpec, n_train: int) -> BudgetCheck:
    """Every problem of the spec's privacy budget on a dataset of `n_train` training examples."""
    delta = resolve_delta(spec, n_train)
    check = BudgetCheck(errors=[], warnings=list(delta_warnings(delta, n_train)))
    policy = mode_for(spec.mode).noise_policy
    if policy is NoisePolicy.CALIBRATED and not spec.epsilon_includes_search_cost:
        _check_calibrated(spec, n_train, delta, check)
    elif policy is NoisePolicy.SEARCHED:
        _check_searched(spec, n_train, delta, check)
    return check


def _corners(spec: SearchSpec, n_train: int) -> tuple[list[int], list[int], list[bool]]:
    """The ends of the B and epochs ranges (B capped at N) and the microbatching choices
    (False: per-example clipping), each sorted."""
    ranges = spec.ranges
    batches = sorted({min(int(b), n_train) for b in ranges.batch_size})
    epochs = sorted({int(e) for e in ranges.epochs})
    microbatching = sorted({choice != PER_EXAMPLE for choice in ranges.num_microbatches})
    return batches, epochs, microbatching


def _epsilon(spec: SearchSpec, n_train: int, batch_size: int, sigma: float, epochs: int, delta: float,
             microbatched: bool) -> float:
    """RDP ε charged to a trial: the run, composed with the clip selections already spent."""
    if spec.clip_selection_epsilon > 0:
        run = privacy.DPSGDRun.planned(n_train, batch_size, sigma, epochs=float(epochs), microbatched=microbatched)
        return epsilon_with_clip_selection(run, spec.clip_selection_epsilon, delta)[0]
    return privacy.compute_epsilon(n_train, batch_size, sigma, epochs=float(epochs), delta=delta,
                                   microbatched=microbatched, pld=False).epsilon_rdp


def _check_calibrated(spec: SearchSpec, n_train: int, delta: float, check: BudgetCheck) -> None:
    """σ is calibrated per trial in [MIN, MAX]_NOISE_MULTIPLIER: two ε evaluations per corner
    tell whether that calibration can succeed there."""
    target = spec.target_epsilon
    unreachable, meaningless = [], []
    corners = list(itertools.product(*_corners(spec, n_train)))
    for batch, epochs, microbatched in corners:
        if _epsilon(spec, n_train, batch, privacy.MAX_NOISE_MULTIPLIER, epochs, delta, microbatched) > target:
            unreachable.append((batch, epochs, microbatched))
        elif _epsilon(spec, n_train, batch, privacy.MIN_NOISE_MULTIPLIER, epochs, delta, microbatched) <= target:
            meaningless.append((batch, epochs, microbatched))
    if len(unreachable) == len(corners):
        spent = spec.clip_selection_epsilon
        check.errors.append(
            f"Impossible budget: ε = {target:g} at δ = {delta:.2g} cannot be met by any trial, even "
            f"with σ = {privacy.MAX_NOISE_MULTIPLIER:g} (N = {n_train:,}). Raise the target ε, use fewer epochs or "
            "smaller batches (a smaller sampling rate), or more data."
            + (f" The clip-norm histograms already released on this data cost ε_C = {spent:g}, composed into "
               "every trial." if spent > 0 else "")
        )
    elif len(meaningless) == len(corners):
        check.errors.append(
            f"ε = {target:g} is so large that even σ = {privacy.MIN_NOISE_MULTIPLIER:g} meets it: "
            "such a budget promises no meaningful privacy. Choose a smaller target ε (1–10 is usual)."
        )
    else:
        for failures, what in ((unreachable, "cannot meet"), (meaningless, "need no noise to meet")):
            if failures:
                listed = ", ".join(f"B={b}, {e} epochs{' (m < B)' if mb else ''}" for b, e, mb in failures)
                check.warnings.append(
                    f"Some trials {what} ε = {target:g} and will fail ({listed}); narrow the "
                    "batch-size or epochs range to avoid wasting them."
                )


def _check_searched(spec: SearchSpec, n_train: int, delta: float, check: BudgetCheck) -> None:
    """The most private trial the ranges allow: the largest σ at the smallest B and epochs."""
    batches, epochs, microbatching = _corners(spec, n_train)
    sigma = float(spec.ranges.noise_multiplier[1])
    best = _epsilon(spec, n_train, batches[0], sigma, epochs[0], delta, microbatching[0])
    if best > spec.target_epsilon:
        check.warnings.append(
            f"Even σ = {sigma:g} with B = {batches[0]} and {epochs[0]} epoch(s) gives ε = {best:.3g} > target "
            f"{spec.target_epsilon:g}: no trial will be within the target. Raise the σ range, lower B or epochs."
        )


# Effective noise σ/B (std of the noise on the averaged gradient, in units of C) above which
# a model is expected to stay near chance: digits at ε = 3 trains with σ/B ≈ 0.02 (0.9
# accuracy); ε = 0.01 needed σ = 45–91 at B ≤ 256 (σ/B ≥ 0.2) and gave the majority class.
CHANCE_LEVEL_NOISE = 0.2


def privacy_notes(spec: SearchSpec, n_train: int) -> list[str]:
    """What a user should know before Start: what will not be private, and what costs more."""
    notes = []
    mode = mode_for(spec.mode)
    if mode.noise_policy is NoisePolicy.RECIPE:
        notes.append("The recipe first trains a non-private baseline (σ = 0): the search as a whole has no privacy "
                     "guarantee (its ε is ∞); only the chosen configuration's own training run is private.")
    if any(choice != PER_EXAMPLE for choice in spec.ranges.num_microbatches) and mode.noise_policy is not \
            NoisePolicy.RECIPE:
        notes.append("Microbatches m < B are charged σ/2 (one example can change a microbatch's clipped gradient by "
                     "2C): the same σ buys less privacy than per-example clipping.")
    too_large = [int(b) for b in spec.ranges.batch_size if int(b) > n_train]
    if too_large:
        notes.append(f"Batch sizes above N = {n_train:,} ({', '.join(map(str, too_large))}) are capped at N.")
    if mode.noise_policy is NoisePolicy.CALIBRATED and not spec.epsilon_includes_search_cost:
        batch = min(max(int(b) for b in spec.ranges.batch_size), n_train)
        epochs = min(int(e) for e in spec.ranges.epochs)
        try:
            sigma = privacy.calibrate_noise_multiplier(spec.target_epsilon, n_train, batch, epochs=float(epochs),
                                                       delta=resolve_delta(spec, n_train))
        except PrivacyError:
            return notes  # check_budget reports an unreachable target
        if sigma / batch > CHANCE_LEVEL_NOISE:
            notes.append(f"ε = {spec.target_epsilon:g} needs σ ≥ {sigma:.3g} even at B = {batch}, {epochs} epoch(s): "
                         f"noise of {sigma / batch:.2f}·C on every averaged gradient is likely to leave the model near "
                         "chance level. Raise the target ε, use more data or fewer epochs.")
    return notes
