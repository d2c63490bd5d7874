"""The privacy statement: the one owner of what a run's ε covers and how it is shown.

Every face of dptune (the Export and Trade-offs pages, `dptune export`, the exported YAML,
`dptune train`, the README) renders a `PrivacyStatement` built here, so they say the same
thing in the same words. It states, for one training run:

- the ε of training (RDP and PLD, at δ) of its `DPSGDRun` (T steps of the Poisson-subsampled
  Gaussian, σ/2 charged when microbatched);
- the ε of each data-dependent release made before training: the clip-norm histograms
  (pure ε-DP Laplace releases, composed with training by dp_accounting) and the
  preprocessing statistics (composed by adding ε and δ);
- the total over training and those releases, and, when the run came from a search, the
  ε of the whole search;
- δ, with warnings when δ ≥ 1/N or δ is large in absolute terms;
- the unit of privacy, the sampler (shuffle: "accounted as Poisson, as TF Privacy does"),
  whether the noise is secret (debug_fixed_noise voids ε), and what ε does not cover.

Numbers are rounded conservatively: ε up, σ up (`format_epsilon`, `format_sigma`), ∞ is
"∞ (no privacy)" and a void ε is "void (noise is public)".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dptune.privacy.accountant import privacy_report
from dptune.privacy.run import DPSGDRun, delta_warning
from dptune.privacy.search_cost import epsilon_with_clip_selection
from dptune.spec.config import DPSGDConfig

UNIT_OF_PRIVACY = (
    "one row of the uploaded file (one example): the guarantee compares any two datasets that "
    "differ by adding or removing one row"
)
NOT_COVERED = (
    "validation rows: they drive pruning, the search's sampler and the choice of the best trial, without DP",
    "the membership-inference and fairness measurements stored with each trial (the attack's AUC, rates and "
    "slices are computed from the losses of training rows; the group metrics from the validation rows and "
    "their sensitive attribute) and the results of `dptune audit` (a run with canaries): statistics for the data "
    "owner, outside the mechanism",
    "the per-epoch training loss stored in the study, and what only the data owner sees: row counts, class "
    "balance, previews, the preparation report and the refusals of an upload (limits, empty splits)",
    "the schema (column names and types, the list of classes) when it was read from the data rather than "
    "declared: treated as public",
    "anything the data owner chose after looking at the data",
)
SHUFFLE_NOTE = "accounted as Poisson, as TF Privacy does"
NO_PRIVACY = "∞ (no privacy)"
VOID = "void (noise is public)"
# δ above this is large in absolute terms, whatever N is (1/N^1.1 is 0.079 at N = 10).
LARGE_DELTA = 1e-3


def _round_up(value: float, digits: int) -> float:
    scale = 10.0**digits
    return math.ceil(value * scale - 1e-9) / scale


def format_epsilon(value: float | None, digits: int = 3, *, void: bool = False) -> str:
    """ε for display, rounded up (never shows less than was spent); None or ∞: no privacy."""
    if void:
        return VOID
    if value is None or not math.isfinite(value):
        return NO_PRIVACY
    return f"{_round_up(value, digits):.{digits}f}"


def format_sigma(value: float, digits: int = 4) -> str:
    """σ for display, rounded up to `digits` significant figures (more noise, never less)."""
    if value <= 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(value)))
    return f"{_round_up(value, decimals):.{decimals}f}"


def delta_warnings(delta: float, n: int) -> tuple[str, ...]:
    """Warnings for a δ that promises little: δ ≥ 1/N, or δ > LARGE_DELTA."""
    out = []
    too_large = delta_warning(delta, n)
    if too_large:
        out.append(too_large)
    if delta > LARGE_DELTA:
        out.append(f"Warning: delta = {delta:.3g} is large in absolute terms (above {LARGE_DELTA:g}): with "
                   f"probability up to delta the guarantee may fail completely; use a smaller delta.")
    return tuple(out)


def is_unsafe_delta(delta: float, n: int) -> bool:
    """δ ≥ 1/N: publishing one random row meets such a guarantee (`dptune train` refuses it)."""
    return delta_warning(delta, n) is not None


@dataclass(frozen=True)
class Release:
    """A data-dependent release made before training and charged on top of it."""

    name: str
    epsilon: float
    delta: float = 0.0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "epsilon": _plain(self.epsilon), "delta": self.delta, "detail": self.detail}


def preprocessing_release(record: dict[str, Any] | None) -> Release:
    """The preprocessing release described by `record` ({epsilon, delta, note}, as
    `Dataset.preprocessing_record()` gives it and a study stores it); None means it is unknown (data prepared before dptune recorded
    it, possibly with statistics fitted on the rows): charged ∞."""
    if record is None:
        return Release("preprocessing", math.inf, 0.0,
                       "unknown: prepared before dptune recorded what preprocessing read; prepare the data again")
    return Release("preprocessing", float(record["epsilon"]), float(record.get("delta") or 0.0),
                   str(record.get("note") or ""))


@dataclass(frozen=True)
class SearchPart:
    """What the search that chose the run spent, as `dptune.study.results.search_cost` reports it."""

    epsilon_all_trials: float | None  # composition over every trial (None: infinite)
    epsilon_selected_release: float | None  # the smaller bound on releasing only this trial
    trials_charged: int
    note: str = ""


@dataclass(frozen=True)
class PrivacyStatement:
    """What one training run's ε covers; build it with `statement_for_run`.

    run: the run as the accountant charged it (N, B, σ, steps, microbatching); delta: δ of
    training; sampling: the sampler ("poisson" or "shuffle"); noise_is_secret: False voids
    every ε; epsilon_training_rdp / _pld: ε of training alone (RDP at rdp_order, PLD);
    clip, preprocessing: the releases before training; epsilon_total, delta_total: training
    and those releases together; search: what the search that chose the run spent.
    """

    run: DPSGDRun
    delta: float
    sampling: str
    noise_is_secret: bool
    epsilon_training_rdp: float
    epsilon_training_pld: float | None
    rdp_order: float | None
    clip: Release | None
    preprocessing: Release
    epsilon_total: float
    delta_total: float
    search: SearchPart | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def void(self) -> bool:
        """True when the noise is public (debug option): no ε holds."""
        return not self.noise_is_secret

    @property
    def sampler_text(self) -> str:
        if self.sampling == "shuffle":
            return f"shuffled fixed batches ({SHUFFLE_NOTE})"
        return "Poisson sampling (each row joins a step independently with probability q = B/N)"

    def lines(self) -> list[str]:
        """The statement as text lines (CLI, Export page, README): identical everywhere."""
        eps = lambda value: format_epsilon(value, 4, void=self.void)  # noqa: E731
        out = [
            "Privacy statement: " + ("(ε, δ)-differential privacy" if not self.void else "VOID, no guarantee")
            + f"; unit of privacy: {UNIT_OF_PRIVACY}",
            f"  training: ε = {eps(self.epsilon_training_rdp)} (RDP"
            + (f", order {self.rdp_order:g}" if self.rdp_order else "")
            + f"), ε = {eps(self.epsilon_training_pld)} (PLD) at δ = {self.delta:.3g}; {self.run.steps} steps, "
            f"σ = {format_sigma(self.run.noise_multiplier)}"
            + (f" charged as σ/2 = {format_sigma(self.run.charged_noise_multiplier)} (microbatched: sensitivity 2C)"
               if self.run.microbatched else "")
            + f", {self.sampler_text}",
        ]
        if self.clip is not None:
            out.append(f"  clip-norm releases before training: ε = {eps(self.clip.epsilon)} ({self.clip.detail})")
        out.append(f"  preprocessing: ε = {eps(self.preprocessing.epsilon)}"
                   + (f", δ = {self.preprocessing.delta:.3g}" if self.preprocessing.delta else "")
                   + (f" ({self.preprocessing.detail})" if self.preprocessing.detail else ""))
        out.append(f"  total for this run: ε = {eps(self.epsilon_total)} at δ = {self.delta_total:.3g}")
        if self.search is not None:
            out.append(
                f"  the search that chose it: ε = {eps(self.search.epsilon_all_trials)} over all "
                f"{self.search.trials_charged} trials; releasing only this trial: "
                f"ε = {eps(self.search.epsilon_selected_release)}"
                + (f" ({self.search.note})" if self.search.note else "")
            )
        out.append(
            "  noise and sampling: secret, fresh from the operating system for every run"
            if self.noise_is_secret else
            "  noise and sampling: PUBLIC (debug_fixed_noise derives them from the seed): ε is void"
        )
        out.append("  not covered by ε:")
        out.extend(f"    - {item}" for item in NOT_COVERED)
        out.extend(f"  {warning}" for warning in self.warnings)
        return out

    def text(self) -> str:
        return "\n".join(self.lines())

    def to_dict(self) -> dict[str, Any]:
        """For the run YAML (`privacy_statement`); ε values are None when infinite or void."""
        value = lambda v: None if self.void else _plain(v)  # noqa: E731
        return {
            "epsilon_total": value(self.epsilon_total),
            "delta_total": self.delta_total,
            "epsilon_training": value(self.epsilon_training_rdp),
            "epsilon_training_pld": value(self.epsilon_training_pld),
            "clip_norm_releases": None if self.clip is None else self.clip.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "search": None if self.search is None else {
                "epsilon_all_trials": value(self.search.epsilon_all_trials),
                "epsilon_selected_release": value(self.search.epsilon_selected_release),
                "trials_charged": self.search.trials_charged,
            },
            "unit": UNIT_OF_PRIVACY,
            "sampler": self.sampler_text,
            "noise": "secret" if self.noise_is_secret else "public (debug_fixed_noise): epsilon is void",
            "not_covered": list(NOT_COVERED),
            "warnings": list(self.warnings),
            "text": self.text(),
        }


def _plain(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def statement_for_run(
    *,
    n_train: int,
    config: DPSGDConfig,
    steps: int,
    delta: float,
    clip_epsilon: float = 0.0,
    clip_detail: str = "",
    preprocessing: Release | None = None,
    search: SearchPart | None = None,
) -> PrivacyStatement:
    """The statement of one run of `config` on N = `n_train` rows for `steps` steps.

    clip_epsilon: the total pure ε of every clip-norm histogram released on this dataset
    before training (0: C cost nothing). preprocessing: the release of preprocessing
    statistics (default: none fitted, ε = 0)."""
    preprocessing = preprocessing or Release("preprocessing", 0.0, 0.0, "nothing fitted on the rows")
    run = DPSGDRun.of_config(config, n_train, steps)
    report = privacy_report(run, delta)
    with_clip = epsilon_with_clip_selection(run, clip_epsilon, delta)[0] if clip_epsilon > 0 else report.epsilon_rdp
    return PrivacyStatement(
        run=run,
        delta=delta,
        sampling=config.sampling,
        noise_is_secret=config.noise_is_secret,
        epsilon_training_rdp=report.epsilon_rdp,
        epsilon_training_pld=report.epsilon_pld,
        rdp_order=report.rdp_order,
        clip=Release("clip-norm histograms", clip_epsilon, 0.0, clip_detail or "Laplace, pure DP")
        if clip_epsilon > 0 else None,
        preprocessing=preprocessing,
        epsilon_total=with_clip + preprocessing.epsilon,
        delta_total=delta + preprocessing.delta,
        search=search,
        warnings=delta_warnings(delta, n_train),
    )
