"""Composing runs: with the clip-norm release, and into a whole search, on dp_accounting.

One run's ε comes from `accountant` (`DPSGDRun`, `compute_epsilon`). What is here composes
several mechanisms, each built as a dp_accounting event:

- the clip-norm quantile of the recipe (a Laplace histogram, pure ε-DP) composed with a
  training run: `epsilon_with_clip_selection`, calibrated by `calibrate_with_clip_selection`;
- releasing every trial of a search (`search_cost_naive_composition`): the adaptive RDP
  composition of all trials; pruned trials are charged the steps they ran, failed or killed
  trials their whole planned run (what they did after their last recorded epoch is unknown);
- releasing only the best trial when the number of trials K is random (Papernot & Steinke,
  ICLR 2022, Theorem 2 / 6; `search_cost_repeat_and_select`): dp_accounting's
  `RepeatAndSelectDpEvent`. It needs every trial to be an independent draw of one mechanism
  with one privacy curve, which the search spec enforces (budgeted mode, fixed batch size and
  epochs, random sampler, no pruning);
- a whole search whose trials all run one configuration (`search_event`), calibrated by
  `calibrate_search_noise` so that the search as a whole meets the target.

Every calibration is `accountant.calibrate_noise` on the composed event; the search costs
are the RDP accountant's arithmetic on cached step curves (`runs_rdp`), equal to composing
the events.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import dp_accounting
import numpy as np
from dp_accounting.rdp import rdp_privacy_accountant

from dptune.errors import PrivacyError
from dptune.privacy.accountant import RDP_ORDERS, epsilon_of_rdp, event_epsilons, pld_epsilon_of_event, runs_rdp
from dptune.privacy.calibration import calibrate_noise
from dptune.privacy.run import DPSGDRun, _is_int, _is_real

__all__ = [
    "SearchCost",
    "clip_selection_event",
    "with_clip_selection",
    "epsilon_with_clip_selection",
    "calibrate_with_clip_selection",
    "search_cost_naive_composition",
    "search_cost_repeat_and_select",
    "search_event",
    "calibrate_search_noise",
]


# --------------------------------------------------------------------------------------------
# The clip-norm release composed with a run
# --------------------------------------------------------------------------------------------


def clip_selection_event(epsilon: float) -> dp_accounting.DpEvent:
    """The private quantile's noisy histogram: one Laplace mechanism with L1 sensitivity 1
    (an example adds or removes one count), pure `epsilon`-DP."""
    return dp_accounting.LaplaceDpEvent(1.0 / epsilon)


def with_clip_selection(event: dp_accounting.DpEvent, clip_epsilon: float) -> dp_accounting.DpEvent:
    """`event` composed with the clip-norm histograms (their total pure ε, `clip_epsilon`;
    0: none were released, `event` itself)."""
    if clip_epsilon <= 0:
        return event
    return dp_accounting.ComposedDpEvent([event, clip_selection_event(clip_epsilon)])


@functools.lru_cache(maxsize=1024)
def _clip_rdp(clip_epsilon: float) -> np.ndarray:
    """RDP at RDP_ORDERS of the clip-norm release (zeros when none was made)."""
    accountant = rdp_privacy_accountant.RdpAccountant(list(RDP_ORDERS))
    if clip_epsilon > 0:
        accountant.compose(clip_selection_event(clip_epsilon))
    rdp = np.asarray(accountant.rdp, dtype=float)
    rdp.setflags(write=False)
    return rdp


def epsilon_with_clip_selection(
    run: DPSGDRun, clip_epsilon: float, delta: float, *, pld: bool = False
) -> tuple[float, float | None]:
    """(RDP ε, PLD ε or None) of a training run composed with the clip-norm quantile
    (pure ε = `clip_epsilon`; 0: the run alone)."""
    epsilon_rdp, _, epsilon_pld = event_epsilons(
        with_clip_selection(run.event(), clip_epsilon), delta, steps=run.steps, pld=pld
    )
    return epsilon_rdp, epsilon_pld


def calibrate_with_clip_selection(
    target_epsilon: float, n_train: int, batch_size: int, *, epochs: float, delta: float, microbatched: bool,
    clip_epsilon: float,
) -> float:
    """σ such that training composed with the clip selection has RDP ε in
    [0.99 · target, target] (`calibrate_noise` on that composed event; 0: training alone).
    Raises PrivacyError when no σ in [MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER] does."""
    run = DPSGDRun.planned(n_train, batch_size, 1.0, epochs=epochs, microbatched=microbatched)
    return calibrate_noise(
        run, target_epsilon, delta, make_event=lambda r: with_clip_selection(r.event(), clip_epsilon),
        what=f"training plus the clip-norm selection (epsilon {clip_epsilon:g})",
        hints=[f"a smaller epsilon for the clip-norm selection ({clip_epsilon:g}), or C from public data"],
    )


# --------------------------------------------------------------------------------------------
# The cost of a search
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchCost:
    """The (ε, δ) guarantee of a hyperparameter search (see `covers` for what it protects).

    epsilon: ε of the whole search by the RDP accountant (math.inf when a trial has σ = 0),
    the clip-norm selection included; rdp_order: the order attaining it; epsilon_pld: PLD ε
    (naive composition only, when asked); single_trial_epsilon: RDP ε of the most expensive
    single run at the same δ, without the clip selection; method: "repeat_and_select" or
    "naive_composition"; runs: the runs charged; clip_epsilon: the clip selection's pure ε;
    distribution: "poisson", "truncated_negative_binomial" or None; mean_trials: E[K];
    eta: the truncated negative binomial's shape (None for Poisson); num_trials: K (naive
    composition).
    """

    epsilon: float
    rdp_order: float | None
    delta: float
    method: str
    single_trial_epsilon: float
    runs: tuple[DPSGDRun, ...]
    covers: str
    clip_epsilon: float = 0.0
    distribution: str | None = None
    mean_trials: float | None = None
    eta: float | None = None
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
            "clip_epsilon": self.clip_epsilon,
            "distribution": self.distribution,
            "mean_trials": self.mean_trials,
            "eta": self.eta,
            "num_trials": self.num_trials,
            "runs": [run.to_dict() for run in self.runs],
            "covers": self.covers,
        }


def _check_runs(runs: DPSGDRun | Iterable[DPSGDRun]) -> list[DPSGDRun]:
    """One run or an iterable of runs -> a list of the runs that took a step."""
    items = [runs] if isinstance(runs, DPSGDRun) else list(runs)
    for run in items:
        if not isinstance(run, DPSGDRun):
            raise PrivacyError(f"runs must be a DPSGDRun or a list of them, got {run!r}")
    return [run for run in items if run.steps > 0]


def _check_cost_inputs(delta: Any, clip_epsilon: Any) -> tuple[float, float]:
    if not _is_real(delta) or not 0 < delta < 1:
        raise PrivacyError(f"delta must be a number in (0, 1), got {delta!r}")
    if not _is_real(clip_epsilon) or not 0 <= clip_epsilon < math.inf:
        raise PrivacyError(f"clip_epsilon must be a finite number >= 0, got {clip_epsilon!r}")
    return float(delta), float(clip_epsilon)


def _single_trial_epsilon(runs: list[DPSGDRun], delta: float) -> float:
    """The largest RDP ε of one run (0 when no run took a step)."""
    if any(run.charged_noise_multiplier == 0 for run in runs):
        return math.inf
    return max((epsilon_of_rdp(runs_rdp([run]), delta)[0] for run in runs), default=0.0)


def search_cost_naive_composition(
    runs: DPSGDRun | Iterable[DPSGDRun],
    *,
    delta: float,
    num_trials: int = 1,
    pld: bool = False,
    clip_epsilon: float = 0.0,
) -> SearchCost:
    """ε of releasing the outputs of all trials: plain composition of every run.

    What ε covers: everything every trial produced (all models, checkpoints, scores), so it
    also covers releasing all results of an Optuna study and any adaptive choice of the next
    trial. runs: one DPSGDRun repeated `num_trials` times, or a list of them (one per trial,
    configurations may differ; `num_trials` then repeats the whole list); runs of 0 steps
    never trained and cost nothing. clip_epsilon: the clip-norm selection made once before
    the search, composed in. RDP ε by dp_accounting's RDP arithmetic (runs_rdp), PLD ε too
    on the composed events when `pld`. No run and no clip selection: ε = 0.
    """
    trained = _check_runs(runs)
    delta, clip_epsilon = _check_cost_inputs(delta, clip_epsilon)
    if not _is_int(num_trials) or num_trials < 1:
        raise PrivacyError(f"num_trials must be an integer >= 1, got {num_trials!r}")
    single = _single_trial_epsilon(trained, delta)
    epsilon, order, epsilon_pld = 0.0, None, (0.0 if pld else None)
    if not math.isfinite(single):
        epsilon, epsilon_pld = math.inf, (math.inf if pld else None)
    elif trained or clip_epsilon > 0:
        epsilon, order = epsilon_of_rdp(runs_rdp(trained, int(num_trials)) + _clip_rdp(clip_epsilon), delta)
        if pld:
            event = dp_accounting.SelfComposedDpEvent(
                dp_accounting.ComposedDpEvent([run.event() for run in trained]), int(num_trials)
            )
            total_steps = int(num_trials) * sum(run.steps for run in trained)
            epsilon_pld = pld_epsilon_of_event(with_clip_selection(event, clip_epsilon), delta, epsilon, total_steps)
    count = int(num_trials) * len(trained)
    return SearchCost(
        epsilon=epsilon, rdp_order=order, delta=delta, method="naive_composition", single_trial_epsilon=single,
        runs=tuple(trained), covers=f"the release of all outputs and scores of all {count} trials",
        clip_epsilon=clip_epsilon, num_trials=count, epsilon_pld=epsilon_pld,
    )


def _check_mean_trials(mean_trials: Any) -> float:
    if not _is_real(mean_trials) or not 1 <= mean_trials < math.inf:
        raise PrivacyError(f"mean_trials must be a number >= 1, got {mean_trials!r}")
    return float(mean_trials)


def _repeat_shape(distribution: str, eta: Any) -> float:
    """dp_accounting's RepeatAndSelectDpEvent shape of a random trial count: inf for Poisson,
    η >= 0 for the truncated negative binomial (1: geometric, 0: logarithmic)."""
    if distribution == "poisson":
        if eta is not None:
            raise PrivacyError(f"eta applies to the truncated negative binomial only, got eta={eta!r}")
        return math.inf
    if distribution != "truncated_negative_binomial":
        raise PrivacyError(
            f"distribution must be 'poisson' or 'truncated_negative_binomial', got {distribution!r}"
        )
    if not _is_real(eta) or not 0 <= eta < math.inf:
        raise PrivacyError(f"eta (shape) must be a finite number >= 0, got {eta!r}")
    return float(eta)


def search_cost_repeat_and_select(
    runs: DPSGDRun | Iterable[DPSGDRun],
    *,
    delta: float,
    distribution: str = "poisson",
    mean_trials: float | None = None,
    eta: float | None = None,
    clip_epsilon: float = 0.0,
) -> SearchCost:
    """ε of releasing only the best of a random number K of trials (Papernot & Steinke 2022).

    What ε covers: the output of the selected trial (its model, every checkpoint of it, its
    hyperparameters and score). It does NOT cover the outputs or scores of the other trials
    (publish those and use search_cost_naive_composition), and it holds only if K really is
    random with the stated distribution (drawn independently of the data; the search must not
    stop early because of results) and the candidate hyperparameters are chosen without
    looking at the private data.

    runs: the run every trial is (one DPSGDRun), or every candidate run when they differ;
    then every candidate is bounded by the order-wise maximum of their RDP curves.
    mean_trials: E[K] >= 1. distribution "poisson": K ~ Poisson(mean_trials);
    "truncated_negative_binomial": shape eta >= 0 (1: geometric, 0: logarithmic; its
    halting probability γ follows from E[K], see dptune.spec.trial_count.tnb_mean), as
    dp_accounting's RepeatAndSelectDpEvent takes them. clip_epsilon: the clip-norm selection
    made once before the search, composed in. RDP of dp_accounting's RepeatAndSelectDpEvent
    (its own routine on the maximum curve), by the accountant's arithmetic: for one run it
    equals composing RepeatAndSelectDpEvent(run.event()) with the clip selection.
    """
    candidates = _check_runs(runs)
    if not candidates:
        raise PrivacyError("repeat-and-select needs at least one candidate run with steps >= 1")
    delta, clip_epsilon = _check_cost_inputs(delta, clip_epsilon)
    shape = _repeat_shape(distribution, eta)
    mean = _check_mean_trials(mean_trials)
    single = _single_trial_epsilon(candidates, delta)
    if math.isfinite(single):
        curve = np.max([runs_rdp([run]) for run in candidates], axis=0)
        rdp = rdp_privacy_accountant._compute_rdp_repeat_and_select(np.asarray(RDP_ORDERS), curve, mean, shape)
        epsilon, order = epsilon_of_rdp(rdp + _clip_rdp(clip_epsilon), delta)
    else:
        epsilon, order = math.inf, None
    return SearchCost(
        epsilon=epsilon, rdp_order=order, delta=delta, method="repeat_and_select", single_trial_epsilon=single,
        runs=tuple(candidates),
        covers=(
            "the release of the single best trial (its model and all its checkpoints, its hyperparameters "
            f"and score) out of a random number of trials K ~ {distribution} with E[K] = {mean:g}; not the "
            "other trials' outputs or scores"
        ),
        clip_epsilon=clip_epsilon, distribution=distribution, mean_trials=mean,
        eta=None if math.isinf(shape) else shape,
    )


def search_event(run: DPSGDRun, trials: dict[str, Any], clip_epsilon: float = 0.0) -> dp_accounting.DpEvent:
    """The whole search when every trial is `run`, as one dp_accounting event, with the
    clip-norm selection (pure ε = `clip_epsilon`) composed in.

    trials {"distribution": "fixed", "n": n}: n trials, every output released, so the
    n-fold composition of the run. A random count as dptune.spec.trial_count.TrialCount.to_dict()
    writes it, {"distribution": "poisson" | "truncated_negative_binomial", "mean": E[K],
    "shape": η (the latter only)}: only the best trial released, RepeatAndSelectDpEvent.
    """
    distribution = trials.get("distribution", "fixed")
    if distribution == "fixed":
        if not _is_int(trials.get("n")) or trials["n"] < 1:
            raise PrivacyError(f"a fixed number of trials must be an integer >= 1, got {trials.get('n')!r}")
        search = dp_accounting.SelfComposedDpEvent(run.event(), int(trials["n"]))
    else:
        search = dp_accounting.dp_event.RepeatAndSelectDpEvent(
            run.event(), _check_mean_trials(trials.get("mean")), _repeat_shape(distribution, trials.get("shape"))
        )
    return with_clip_selection(search, clip_epsilon)


def calibrate_search_noise(
    target_epsilon: float, n_train: int, batch_size: int, *, epochs: float, delta: float, microbatched: bool,
    trials: dict[str, Any], clip_epsilon: float = 0.0,
) -> float:
    """σ such that the whole search (every trial this run, `trials` as TrialCount.to_dict()
    or {"distribution": "fixed", "n": n}, plus the clip-norm selection) has RDP ε in
    [0.99 · target, target]: `calibrate_noise` on `search_event`. Raises PrivacyError when
    no σ in [MIN_NOISE_MULTIPLIER, MAX_NOISE_MULTIPLIER] does."""
    run = DPSGDRun.planned(n_train, batch_size, 1.0, epochs=epochs, microbatched=microbatched)
    fixed = trials.get("distribution", "fixed") == "fixed"
    size = f"{trials.get('n')} trials" if fixed else f"a mean of {trials.get('mean')} trials"
    clip = f", with the clip-norm selection (epsilon {clip_epsilon:g})" if clip_epsilon > 0 else ""
    return calibrate_noise(
        run, target_epsilon, delta, make_event=lambda r: search_event(r, trials, clip_epsilon),
        what=f"the whole search ({size}{clip})",
        hints=["fewer trials", "a random number of trials, releasing only the best one (repeat-and-select)"],
    )
