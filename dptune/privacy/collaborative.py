"""ε of each participant of a collaborative (DSSGD) run, on dp_accounting (Shokri & Shmatikov, CCS 2015).

The unit of privacy is one row of a participant's shard; each participant's ε bounds what
everything it uploads during the run (every round) reveals about one of its rows, whatever
the others do. The run reports every participant's ε and the worst one.

**laplace_svt** (the paper's mechanism, Section 5 of Shokri & Shmatikov 2015): each uploaded
value is clipped to [-γ, γ], so whatever the data one value moves by at most Δ = 2γ (its
sensitivity). The participant's total budget ε is split evenly over the R rounds,
ε_round = ε / R, and each round's budget between choosing and releasing, 8 : 1 as in the
paper's selective upload: ε_select = 8/9 · ε_round for choosing which values to upload and
ε_value = 1/9 · ε_round for the values themselves (SELECT_SHARE and VALUE_SHARE, the one
place this split is written). Per round, with c = ceil(θu·P) uploads:

- choosing: the sparse vector technique as Lyu, Su & Li (VLDB 2017, Alg. 1) prove it
  ε_select-DP for c positive answers: threshold noise Lap(Δ/ε_thr) drawn once per round,
  noise Lap(2cΔ/ε_query) on every |clip(Δw_j)| in a random order, stop after c values are
  above the noisy τ; ε_thr = ε_query = ε_select / 2. Charged its pure ε_select per round
  (dp_accounting has no event for the sparse vector technique; its cost is that theorem).
- releasing: each chosen value is clip(clip(Δw_j, γ) + Lap(cΔ/ε_value), γ) (clipping again
  after the noise is post-processing): c Laplace mechanisms of sensitivity Δ and
  noise multiplier (scale / sensitivity) c/ε_value, the dp_accounting events
  `SelfComposedDpEvent(LaplaceDpEvent(c/ε_value), c)`, pure ε_value per round.

The run is pure ε-DP with ε = R·(ε_select + ε_value) by basic composition (δ = 0). A
tighter (ε, δ) composition is not claimed: the sparse vector technique's privacy profile is
not a Laplace mechanism's, and a pure-DP mechanism's worst case (randomized response) has no
PLD in this version of dp_accounting.

**dp_sgd** (the modern alternative): each participant trains locally with dptune's DP-SGD
(Poisson rate q = B/N_i, noise multiplier σ, per-example clipping), T_i = R · steps of one
local round; what it uploads is a function of its already private parameters (post-processing),
so its ε is that of its own DP-SGD run (`DPSGDRun`), at δ = 1/N_i^1.1 unless given.

**none**: ε = ∞.

**Tuning** (`dptune collab --search`): every trial is a whole run on the same shards, so a
participant that took part in T trials is charged them all by composition
(`search_charges`: pure ε adds up for laplace_svt; dp_sgd's T runs compose on the RDP
accountant at δ). That is an upper bound on releasing every trial's model; choosing the best
trial by validation accuracy is post-processing of those releases and of the validation rows.

**Not covered** (`NOT_COVERED`, shown wherever the numbers are): the baselines (standalone and
centralized are plain SGD on the same private rows, without noise) and every accuracy (measured
on the dataset's validation rows, which no ε protects), as in dptune's privacy statement.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import dp_accounting

from dptune.errors import PrivacyError
from dptune.privacy.accountant import epsilon_of_rdp, privacy_report, runs_rdp
from dptune.privacy.calibration import calibrate_noise
from dptune.privacy.run import DPSGDRun, default_delta, num_steps
from dptune.spec.collaborative import CollaborativeConfig

NOT_COVERED = (
    "epsilon covers what each participant uploads; it does not cover the baselines (standalone and centralized "
    "are trained without noise on the same rows) or the accuracies (measured on the validation rows): they are for "
    "the data owner, not for publication"
)
"""What a collaborative run's ε does not cover (module docstring), said beside its numbers."""

SELECT_SHARE = 8 / 9
"""Share of each round's budget spent choosing which values to upload (the paper's split)."""
VALUE_SHARE = 1 / 9
"""Share of each round's budget spent releasing the chosen values."""


def upload_count(theta_upload: float, parameter_count: int) -> int:
    """c = ceil(θu · P): the most values a participant uploads per local round (at least 1)."""
    return max(1, math.ceil(theta_upload * parameter_count - 1e-9))


@dataclass(frozen=True)
class SvtUploadNoise:
    """The Laplace scales of one participant's round under laplace_svt (module docstring).

    gamma: γ, the clip bound of every value; uploads: c; threshold_scale: Δ/ε_thr of the
    noise on τ; query_scale: 2cΔ/ε_query of the noise on each |clip(Δw_j)|; value_scale:
    cΔ/ε_value of the noise on each released value (all in parameter units, Δ = 2γ);
    epsilon_select, epsilon_value: the round's pure ε for choosing and for releasing.
    """

    gamma: float
    uploads: int
    threshold_scale: float
    query_scale: float
    value_scale: float
    epsilon_select: float
    epsilon_value: float


def svt_upload_noise(epsilon: float, gamma: float, rounds: int, uploads: int) -> SvtUploadNoise:
    """The noise of one round for a participant whose total budget is `epsilon` over `rounds`
    rounds of `uploads` values each, values clipped to [-gamma, gamma]."""
    if not (epsilon > 0 and gamma > 0 and rounds >= 1 and uploads >= 1):
        raise PrivacyError(f"laplace_svt needs epsilon > 0, gamma > 0, rounds >= 1 and uploads >= 1; got {epsilon!r}, "
                           f"{gamma!r}, {rounds!r}, {uploads!r}")
    sensitivity = 2.0 * gamma
    per_round = epsilon / rounds
    epsilon_select, epsilon_value = SELECT_SHARE * per_round, VALUE_SHARE * per_round
    return SvtUploadNoise(
        gamma=gamma,
        uploads=uploads,
        threshold_scale=sensitivity / (epsilon_select / 2),
        query_scale=2 * uploads * sensitivity / (epsilon_select / 2),
        value_scale=uploads * sensitivity / epsilon_value,
        epsilon_select=epsilon_select,
        epsilon_value=epsilon_value,
    )


def value_release_event(noise: SvtUploadNoise) -> dp_accounting.DpEvent:
    """One round's release of the c chosen values: c Laplace mechanisms of sensitivity 2γ,
    noise multiplier value_scale / (2γ) = c/ε_value."""
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.LaplaceDpEvent(noise.value_scale / (2.0 * noise.gamma)), noise.uploads
    )


def pure_epsilon(event: dp_accounting.DpEvent) -> float:
    """Pure ε (δ = 0) of a tree of Laplace events by basic composition: a Laplace mechanism
    of noise multiplier b is (1/b)-DP; ε adds up over compositions. PrivacyError for events
    without a pure ε."""
    if isinstance(event, dp_accounting.NoOpDpEvent):
        return 0.0
    if isinstance(event, dp_accounting.LaplaceDpEvent):
        return math.inf if event.noise_multiplier == 0 else 1.0 / event.noise_multiplier
    if isinstance(event, dp_accounting.SelfComposedDpEvent):
        return event.count * pure_epsilon(event.event)
    if isinstance(event, dp_accounting.ComposedDpEvent):
        return sum(pure_epsilon(part) for part in event.events)
    raise PrivacyError(f"{type(event).__name__} has no pure epsilon")


@dataclass(frozen=True)
class ParticipantPrivacy:
    """What one participant is charged for a whole collaborative run.

    participant: its index; n_train: N_i, its rows; mechanism: "none", "laplace_svt" or
    "dp_sgd"; epsilon: its ε (∞ without privacy; laplace_svt: pure, δ = 0; dp_sgd: RDP at
    `delta`); epsilon_pld: dp_sgd's PLD ε (None otherwise); delta: δ of `epsilon`; steps:
    dp_sgd's local steps over the run (0 otherwise); note: how it was computed, one sentence.
    """

    participant: int
    n_train: int
    mechanism: str
    epsilon: float
    epsilon_pld: float | None
    delta: float
    steps: int
    note: str


def participant_privacy(config: CollaborativeConfig, shard_sizes: tuple[int, ...], parameter_count: int,
                        delta: float | None = None) -> tuple[ParticipantPrivacy, ...]:
    """Every participant's charge for the run `config` on shards of `shard_sizes` rows, for a
    model of `parameter_count` parameters (module docstring). delta: dp_sgd's δ (None:
    1/N_i^1.1 for each participant)."""
    out = []
    privacy = config.privacy
    for participant, n_train in enumerate(shard_sizes):
        if privacy.kind == "none":
            out.append(ParticipantPrivacy(participant, n_train, "none", math.inf, None, 0.0, 0,
                                          "no privacy: the uploads are exact parameter changes"))
        elif privacy.kind == "laplace_svt":
            noise = svt_upload_noise(privacy.epsilon, privacy.gamma, config.rounds,
                                     upload_count(config.theta_upload, parameter_count))
            values = dp_accounting.SelfComposedDpEvent(value_release_event(noise), config.rounds)
            epsilon = config.rounds * noise.epsilon_select + pure_epsilon(values)
            out.append(ParticipantPrivacy(
                participant, n_train, "laplace_svt", epsilon, None, 0.0, 0,
                f"pure DP: {config.rounds} rounds x (sparse vector selection {noise.epsilon_select:.4g} + "
                f"{noise.uploads} Laplace values {noise.epsilon_value:.4g}), values clipped to ±{noise.gamma:g}",
            ))
        else:
            run = local_dpsgd_run(config, n_train)
            steps = run.steps
            report = privacy_report(run, delta)
            out.append(ParticipantPrivacy(
                participant, n_train, "dp_sgd", report.epsilon_rdp, report.epsilon_pld, report.delta, steps,
                f"its own DP-SGD run: q = {privacy.batch_size}/{n_train}, sigma = {privacy.noise_multiplier:g}, "
                f"{steps} steps; uploads are post-processing",
            ))
    return tuple(out)


def worst_epsilon(charges: tuple[ParticipantPrivacy, ...]) -> float:
    """The largest ε any participant is charged (what the run's privacy is shown as)."""
    return max(charge.epsilon for charge in charges)


def local_dpsgd_run(config: CollaborativeConfig, n_train: int) -> DPSGDRun:
    """The DP-SGD run of a dp_sgd participant with `n_train` rows over the whole collaborative
    run: q = B/N_i, the config's σ, rounds × the steps of one local round."""
    privacy = config.privacy
    steps = config.rounds * num_steps(n_train, privacy.batch_size, config.local_epochs)
    return DPSGDRun(n_train, privacy.batch_size, privacy.noise_multiplier, steps)


def calibrate_participants(config: CollaborativeConfig, shard_sizes: tuple[int, ...], target_epsilon: float,
                           delta: float | None = None) -> float:
    """The smallest σ at which every dp_sgd participant's own run meets `target_epsilon` (at
    `delta`; None: each participant's 1/N_i^1.1): the largest of the σ each shard size needs
    (ε falls as σ grows, so that σ keeps every participant within the target)."""
    if config.privacy.kind != "dp_sgd":
        raise PrivacyError(f"only dp_sgd participants have a noise multiplier to calibrate, not {config.privacy.kind}")
    return max(
        calibrate_noise(local_dpsgd_run(config.replace(privacy=dataclasses.replace(config.privacy, noise_multiplier=1.0)),
                                        n_train), target_epsilon, delta if delta is not None else default_delta(n_train),
                        what="a participant's local DP-SGD run")
        for n_train in sorted(set(shard_sizes))
    )


def search_charges(configs: list[CollaborativeConfig], shard_sizes: tuple[int, ...], parameter_count: int,
                   delta: float | None = None) -> tuple[ParticipantPrivacy, ...]:
    """Every participant's charge for taking part in all the runs `configs` (one per trial of a
    search, on the same shards), by composition (module docstring, "Tuning")."""
    if not configs:
        return ()
    kinds = {config.privacy.kind for config in configs}
    if len(kinds) != 1:
        raise PrivacyError(f"the trials of one search share one privacy kind, got {sorted(kinds)}")
    kind = kinds.pop()
    trials = len(configs)
    out = []
    for participant, n_train in enumerate(shard_sizes):
        if kind == "none":
            out.append(ParticipantPrivacy(participant, n_train, kind, math.inf, None, 0.0, 0, "no privacy"))
        elif kind == "laplace_svt":
            epsilon = sum(participant_privacy(config, (n_train,), parameter_count)[0].epsilon for config in configs)
            out.append(ParticipantPrivacy(participant, n_train, kind, epsilon, None, 0.0, 0,
                                          f"pure DP: the {trials} trials' budgets added up"))
        else:
            runs = [local_dpsgd_run(config, n_train) for config in configs]
            used = delta if delta is not None else default_delta(n_train)
            epsilon, _order = epsilon_of_rdp(runs_rdp(runs), used)
            out.append(ParticipantPrivacy(participant, n_train, kind, epsilon, None, used,
                                          sum(run.steps for run in runs),
                                          f"its {trials} local DP-SGD runs composed (RDP)"))
    return tuple(out)
