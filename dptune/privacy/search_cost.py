"""The privacy cost of a whole search, and of choosing the clip norm, on dp_accounting.

One trial's ε comes from `dptune.privacy` (the accountant every module shares). What is
here composes several mechanisms, which a single trial's accounting does not do:

- the clip-norm quantile of the recipe (a Laplace histogram, pure ε-DP) composed with a
  training run: `epsilon_with_clip_selection`;
- releasing every trial of a search: the adaptive RDP composition of all trials
  (`naive_search_epsilon`); pruned trials are charged the steps they ran, failed or killed
  trials their whole planned run (what they did after their last recorded epoch is unknown);
- releasing only the best trial when the number of trials K is random (Papernot & Steinke,
  ICLR 2022, Theorem 2 / 6): dp_accounting's `RepeatAndSelectDpEvent`, through
  `privacy.search_cost_repeat_and_select` (`repeat_and_select_epsilon`). It needs every trial to be an independent draw of one
  mechanism with one privacy curve, which the search spec enforces (budgeted mode, fixed
  batch size and epochs, random sampler, no pruning).

Events are built exactly as TF Privacy and `dptune.privacy` do: T self-compositions of a
Poisson-subsampled Gaussian with rate q = B/N and noise multiplier sigma (sigma/2 when
m < B), add-or-remove adjacency, TF Privacy's RDP orders.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import dp_accounting

from dptune import privacy
from dptune.errors import PrivacyError


@dataclass(frozen=True)
class TrainingPrivacy:
    """The privacy-relevant part of one training run: N, B, sigma, steps and m < B."""

    n_train: int
    batch_size: int
    noise_multiplier: float
    steps: int
    microbatched: bool

    @property
    def charged_noise_multiplier(self) -> float:
        return self.noise_multiplier / 2 if self.microbatched else self.noise_multiplier

    def event(self) -> dp_accounting.DpEvent:
        return privacy.dpsgd_run_event(
            min(1.0, self.batch_size / self.n_train), self.charged_noise_multiplier, int(self.steps)
        )

    def accountant_trial(self) -> privacy.TrialPrivacy:
        """The (q, charged sigma, steps) triple dptune.privacy's search-cost functions take."""
        return privacy.trial_privacy(
            self.n_train, self.batch_size, self.noise_multiplier, steps=self.steps, microbatched=self.microbatched
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clip_selection_event(epsilon: float):
    """The private quantile's noisy histogram: one Laplace mechanism with L1 sensitivity 1
    (an example adds or removes one count), pure `epsilon`-DP."""
    return dp_accounting.LaplaceDpEvent(1.0 / epsilon)


def epsilon_with_clip_selection(
    run: TrainingPrivacy, clip_epsilon: float, delta: float, *, pld: bool = False
) -> tuple[float, float | None]:
    """(RDP ε, PLD ε or None) of a training run composed with the clip-norm quantile."""
    if run.noise_multiplier == 0:
        return math.inf, (math.inf if pld else None)
    event = dp_accounting.ComposedDpEvent([run.event(), clip_selection_event(clip_epsilon)])
    rdp, _ = privacy.rdp_epsilon_of_event(event, delta)
    return rdp, (privacy.pld_epsilon_of_event(event, delta, rdp, run.steps + 1) if pld else None)


def naive_search_epsilon(runs: Iterable[TrainingPrivacy], delta: float, *, clip_epsilon: float = 0.0) -> float:
    """RDP ε of releasing every run (adaptive composition), plus the clip selection once.

    Without a clip selection this is `privacy.search_cost_naive_composition`."""
    runs = [run for run in runs if run.steps > 0]
    if any(run.noise_multiplier == 0 for run in runs):
        return math.inf
    if clip_epsilon <= 0:
        if not runs:
            return 0.0
        return float(privacy.search_cost_naive_composition([run.accountant_trial() for run in runs], delta=delta).epsilon)
    clip = dp_accounting.rdp.RdpAccountant(list(privacy.RDP_ORDERS))
    clip.compose(clip_selection_event(clip_epsilon))
    rdp = privacy.trials_rdp([run.accountant_trial() for run in runs]) + clip.rdp
    return privacy.epsilon_of_rdp(rdp, delta)[0]


def repeat_and_select_epsilon(
    runs: TrainingPrivacy | list[TrainingPrivacy], mean: float, shape: float, delta: float, *,
    clip_epsilon: float = 0.0,
) -> float:
    """RDP ε of running a random number of trials (mean `mean`; shape inf = Poisson,
    1 = geometric, else truncated negative binomial) and releasing only the best one
    (`privacy.search_cost_repeat_and_select`; several candidate runs are bounded by the
    order-wise maximum of their RDP curves). With `clip_epsilon`, the clip-norm selection
    made before the search is composed with it (one dp_accounting event, same RDP orders)."""
    runs = [runs] if isinstance(runs, TrainingPrivacy) else list(runs)
    if any(run.noise_multiplier == 0 for run in runs):
        return math.inf
    if clip_epsilon > 0:
        # the most costly candidate bounds every candidate (RDP is monotone in the charged sigma
        # at the fixed q and steps such a search requires)
        worst = min(runs, key=lambda run: run.charged_noise_multiplier)
        event = dp_accounting.ComposedDpEvent([
            dp_accounting.dp_event.RepeatAndSelectDpEvent(worst.event(), float(mean), float(shape)),
            clip_selection_event(clip_epsilon),
        ])
        return privacy.rdp_epsilon_of_event(event, delta)[0]
    trials = [run.accountant_trial() for run in runs]
    if math.isinf(shape):
        cost = privacy.search_cost_repeat_and_select(trials, delta=delta, distribution="poisson", mean_trials=mean)
    else:
        cost = privacy.search_cost_repeat_and_select(
            trials, delta=delta, distribution="truncated_negative_binomial", mean_trials=mean, eta=shape
        )
    return float(cost.epsilon)


def search_epsilon(run: TrainingPrivacy, trials: dict[str, Any], delta: float, *, clip_epsilon: float = 0.0) -> float:
    """ε of the whole search when every trial is `run`: n-fold composition for a fixed
    number of trials, repeat-and-select for a random one (plus the clip selection once)."""
    if trials.get("distribution", "fixed") == "fixed":
        return naive_search_epsilon([run] * int(trials["n"]), delta, clip_epsilon=clip_epsilon)
    shape = math.inf if trials["distribution"] == "poisson" else float(trials["shape"])
    return repeat_and_select_epsilon(run, trials["mean"], shape, delta, clip_epsilon=clip_epsilon)


def calibrate_search_noise(
    target_epsilon: float, n_train: int, batch_size: int, *, epochs: float, delta: float, microbatched: bool,
    trials: dict[str, Any], tolerance: float = 0.01, clip_epsilon: float = 0.0,
) -> float:
    """sigma such that the whole search (every trial with this sigma, plus the clip-norm
    selection) costs at most `target_epsilon`, and at least (1 - tolerance) of it. Raises
    PrivacyError if no sigma up to 1e4 does."""
    steps = privacy.num_steps(n_train, batch_size, epochs)

    def cost(sigma: float) -> float:
        run = TrainingPrivacy(n_train, batch_size, sigma, steps, microbatched)
        return search_epsilon(run, trials, delta, clip_epsilon=clip_epsilon)

    return _bisect_sigma(cost, target_epsilon, tolerance, what="the whole search")


def _bisect_sigma(cost, target: float, tolerance: float, *, what: str) -> float:
    low, high = 1e-3, 1.0
    while cost(high) > target:
        low, high = high, high * 2
        if high > 1e4:
            raise PrivacyError(f"no noise multiplier up to 1e4 keeps {what} within ε = {target:g}")
    if cost(low) <= target:
        return low
    for _ in range(100):
        middle = math.sqrt(low * high)
        if cost(middle) > target:
            low = middle
        else:
            high = middle
        if cost(high) >= target * (1 - tolerance) or high / low < 1 + 1e-9:
            break
    return high


def calibrate_with_clip_selection(
    target_epsilon: float, n_train: int, batch_size: int, *, epochs: float, delta: float, microbatched: bool,
    clip_epsilon: float, tolerance: float = 0.01,
) -> float:
    """sigma such that training composed with the clip selection has RDP ε <= target."""
    if clip_epsilon <= 0:
        return privacy.calibrate_noise_multiplier(
            target_epsilon, n_train, batch_size, epochs=epochs, delta=delta, microbatched=microbatched
        )
    steps = privacy.num_steps(n_train, batch_size, epochs)

    def cost(sigma: float) -> float:
        run = TrainingPrivacy(n_train, batch_size, sigma, steps, microbatched)
        return epsilon_with_clip_selection(run, clip_epsilon, delta)[0]

    return _bisect_sigma(cost, target_epsilon, tolerance, what="training plus the clip-norm selection")
