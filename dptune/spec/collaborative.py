"""The collaborative-mode YAML: distributed selective SGD (DSSGD; Shokri & Shmatikov, CCS 2015).

N participants, each holding one shard of one dataset, train the same network and share a
fraction of their parameter updates through a parameter server (`dptune.engine.collaborative`
runs it; `dptune collab --config X.yaml` prints it). Keys::

    dataset: {builtin: digits}                 # dptune.spec.dataset_ref.DatasetRef
    model: {kind: mlp, hidden_units: [64]}     # dptune.spec.config.ModelSpec
    delta: 1.0e-05                             # optional, dp_sgd only (default 1/N_i^1.1 per participant)
    collaborative:
      participants: 5
      split: {kind: iid}                       # or {kind: dirichlet, alpha: 0.5} or {kind: by_column, column: site}
      theta_upload: 0.1                        # θu, fraction of the parameters uploaded per local round
      theta_download: 1.0                      # θd, fraction downloaded before each local round
      download: most_updated                   # or random
      tau: 0.0                                 # τ, |Δw| threshold of random_above_threshold
      selection: largest                       # or random_above_threshold
      order: round_robin                       # or random (a fresh order every round)
      rounds: 20                               # global rounds; every participant trains once per round
      local_epochs: 1                          # epochs over its own shard per local round
      learning_rate: 0.1
      batch_size: 32                           # plain local SGD's mini-batch size
      seed: 0                                  # initial weights, split, orders (public choices)
      privacy: {kind: none}                    # or {kind: laplace_svt, epsilon: 10, gamma: 0.01}
                                               # or {kind: dp_sgd, noise_multiplier: 1.0, l2_norm_clip: 1.0, batch_size: 32}
    search: {trials: 12, theta_upload: [0.01, 1]}   # optional: what `dptune collab --search` tunes
                                               # (dptune.spec.collaborative_search)

Every problem of a file is reported at once, in one `ConfigError`, one line per key.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dptune.errors import ConfigError
from dptune.spec.collaborative_search import CollaborativeSearch, collaborative_search_from_dict
from dptune.spec.config import ModelSpec
from dptune.spec.dataset_ref import DatasetRef
from dptune.spec.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_PROTOCOL_VALUE, short_repr
from dptune.spec.yaml_fields import is_int, is_number, load_yaml_mapping

SPLITS = ("iid", "by_column", "dirichlet")
SELECTIONS = ("largest", "random_above_threshold")
DOWNLOADS = ("most_updated", "random")
ORDERS = ("round_robin", "random")
PRIVACY_KINDS = ("none", "laplace_svt", "dp_sgd")
MAX_PARTICIPANTS = 1000
MAX_ROUNDS = 10_000
TOP_KEYS = ("dataset", "model", "delta", "collaborative", "search")
COLLABORATIVE_KEYS = ("participants", "split", "theta_upload", "theta_download", "download", "tau", "selection",
                      "order", "rounds", "local_epochs", "learning_rate", "batch_size", "seed", "privacy")
SPLIT_KEYS = {"iid": ("kind",), "dirichlet": ("kind", "alpha"), "by_column": ("kind", "column")}
PRIVACY_KEYS = {"none": ("kind",), "laplace_svt": ("kind", "epsilon", "gamma"),
                "dp_sgd": ("kind", "noise_multiplier", "l2_norm_clip", "batch_size")}


class _Problems:
    """Collects every problem of a config, to raise them together."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def require(self, condition: bool, message: str) -> None:
        if not condition:
            self.lines.append(message)

    def raise_if_any(self, source: str) -> None:
        if self.lines:
            count = len(self.lines)
            raise ConfigError(f"{source}: {count} problem{'s' if count > 1 else ''}:\n"
                              + "\n".join(f"  - {line}" for line in self.lines))


def _number_in(value: Any, low: float, high: float, *, low_open: bool = False, integer: bool = False) -> bool:
    if not (is_int(value) if integer else is_number(value)):
        return False
    return (value > low if low_open else value >= low) and value <= high


@dataclass(frozen=True)
class ShardSpec:
    """How one dataset's training rows are split into participant shards (`dptune.data.shards`).

    kind: "iid" (a uniformly random partition into near-equal shards), "dirichlet" (label
    skew: for each class, the shares of the participants are drawn from Dirichlet(alpha, …,
    alpha); small alpha, e.g. 0.1, gives each participant few classes; large alpha tends to
    iid) or "by_column" (rows sharing a value of `column`, a site id say, stay together; the
    column is the dataset's sensitive attribute or one of its feature names).
    """

    kind: str = "iid"
    alpha: float | None = None
    column: str | None = None

    def problems(self, where: str) -> list[str]:
        found = _Problems()
        found.require(self.kind in SPLITS, f"{where}.kind must be one of {', '.join(SPLITS)}; got {short_repr(self.kind)}")
        found.require(self.kind != "dirichlet" or _number_in(self.alpha, 0, MAX_PROTOCOL_VALUE, low_open=True),
                      f"{where}.alpha (Dirichlet concentration) must be a number > 0, got {short_repr(self.alpha)}")
        found.require(self.kind != "by_column" or (isinstance(self.column, str) and bool(self.column)),
                      f"{where}.column must name a column (a feature or the sensitive attribute), "
                      f"got {short_repr(self.column)}")
        return found.lines


@dataclass(frozen=True)
class CollaborativePrivacy:
    """What protects each participant's rows (the unit of privacy: one row of its shard).

    kind "none": nothing (ε = ∞). kind "laplace_svt" (the paper's mechanism): `epsilon` is the
    participant's total pure-DP budget for the whole run, split evenly over the rounds; each
    uploaded value is clipped to [-gamma, gamma] (so one value moves by at most 2·gamma),
    selected by the sparse vector technique and released with Laplace noise
    (`dptune.privacy.collaborative` says exactly how the budget is split). kind "dp_sgd": each
    participant trains locally with dptune's DP-SGD (per-example clipping to `l2_norm_clip`,
    noise multiplier `noise_multiplier`, Poisson sampling with expected batch `batch_size`);
    what it uploads is post-processing, so its ε is that of its own DP-SGD run (q = B/N_i).
    """

    kind: str = "none"
    epsilon: float | None = None
    gamma: float | None = None
    noise_multiplier: float | None = None
    l2_norm_clip: float | None = None
    batch_size: int | None = None

    def problems(self, where: str) -> list[str]:
        found = _Problems()
        found.require(self.kind in PRIVACY_KINDS,
                      f"{where}.kind must be one of {', '.join(PRIVACY_KINDS)}; got {short_repr(self.kind)}")
        if self.kind == "laplace_svt":
            found.require(_number_in(self.epsilon, 0, MAX_PROTOCOL_VALUE, low_open=True),
                          f"{where}.epsilon (each participant's total budget) must be a number in (0, {MAX_PROTOCOL_VALUE:,}], "
                          f"got {short_repr(self.epsilon)}")
            found.require(_number_in(self.gamma, 0, MAX_PROTOCOL_VALUE, low_open=True),
                          f"{where}.gamma (the bound of each uploaded value) must be a number in (0, {MAX_PROTOCOL_VALUE:,}], "
                          f"got {short_repr(self.gamma)}")
        if self.kind == "dp_sgd":
            found.require(_number_in(self.noise_multiplier, 0, MAX_PROTOCOL_VALUE),
                          f"{where}.noise_multiplier must be a number in [0, {MAX_PROTOCOL_VALUE:,}], got {short_repr(self.noise_multiplier)}")
            found.require(_number_in(self.l2_norm_clip, 0, MAX_PROTOCOL_VALUE, low_open=True),
                          f"{where}.l2_norm_clip must be a number in (0, {MAX_PROTOCOL_VALUE:,}], got {short_repr(self.l2_norm_clip)}")
            found.require(_number_in(self.batch_size, 1, MAX_BATCH_SIZE, integer=True),
                          f"{where}.batch_size must be an integer between 1 and {MAX_BATCH_SIZE:,}, "
                          f"got {short_repr(self.batch_size)}")
        return found.lines


@dataclass(frozen=True)
class CollaborativeConfig:
    """One DSSGD simulation (the protocol of Shokri & Shmatikov 2015, Section 4).

    participants: N >= 2. split: `ShardSpec`. theta_upload (θu) and theta_download (θd):
    fractions in (0, 1] of the P parameters uploaded (ceil(θu·P) values) and downloaded
    (ceil(θd·P)) per local round. download: "most_updated" (the parameters the server updated
    most often since this participant's last download) or "random". selection: "largest"
    (the ceil(θu·P) largest |Δw|) or "random_above_threshold" (a random subset, of at most
    that size, of the values with |Δw| >= tau; the only rule laplace_svt allows). tau: τ >= 0,
    in parameter units. order: "round_robin" (participants 0..N-1 every round) or "random"
    (a fresh random order every round). rounds: global rounds; local_epochs: epochs over the
    participant's own shard per local round. learning_rate, batch_size: local SGD's (plain
    SGD; dp_sgd uses its own batch size). seed: fixes the public choices (initial weights, the
    split, the orders and random selections); the privacy noise never comes from it.
    """

    participants: int = 5
    split: ShardSpec = dataclasses.field(default_factory=ShardSpec)
    theta_upload: float = 0.1
    theta_download: float = 1.0
    download: str = "most_updated"
    tau: float = 0.0
    selection: str = "largest"
    order: str = "round_robin"
    rounds: int = 20
    local_epochs: float = 1.0
    learning_rate: float = 0.1
    batch_size: int = 32
    seed: int = 0
    privacy: CollaborativePrivacy = dataclasses.field(default_factory=CollaborativePrivacy)

    def __post_init__(self) -> None:
        found = _Problems()
        found.lines += self.problems("collaborative")
        found.raise_if_any("collaborative config")

    def problems(self, where: str) -> list[str]:
        """One line per invalid value (empty when the config is valid)."""
        found = _Problems()
        checks: list[tuple[bool, str]] = [
            (_number_in(self.participants, 2, MAX_PARTICIPANTS, integer=True),
             f"participants must be an integer between 2 and {MAX_PARTICIPANTS:,}"),
            (_number_in(self.theta_upload, 0, 1, low_open=True), "theta_upload (θu) must be a number in (0, 1]"),
            (_number_in(self.theta_download, 0, 1, low_open=True), "theta_download (θd) must be a number in (0, 1]"),
            (self.download in DOWNLOADS, f"download must be one of {', '.join(DOWNLOADS)}"),
            (_number_in(self.tau, 0, MAX_PROTOCOL_VALUE), f"tau (τ) must be a number in [0, {MAX_PROTOCOL_VALUE:,}]"),
            (self.selection in SELECTIONS, f"selection must be one of {', '.join(SELECTIONS)}"),
            (self.order in ORDERS, f"order must be one of {', '.join(ORDERS)}"),
            (_number_in(self.rounds, 1, MAX_ROUNDS, integer=True), f"rounds must be an integer between 1 and {MAX_ROUNDS:,}"),
            (_number_in(self.local_epochs, 0, MAX_EPOCHS, low_open=True),
             f"local_epochs must be a number in (0, {MAX_EPOCHS:,}]"),
            (_number_in(self.learning_rate, 0, MAX_PROTOCOL_VALUE, low_open=True), f"learning_rate must be a number in (0, {MAX_PROTOCOL_VALUE:,}]"),
            (_number_in(self.batch_size, 1, MAX_BATCH_SIZE, integer=True),
             f"batch_size must be an integer between 1 and {MAX_BATCH_SIZE:,}"),
            (_number_in(self.seed, 0, 2**63 - 1, integer=True), "seed must be an integer >= 0"),
        ]
        names = ("participants", "theta_upload", "theta_download", "download", "tau", "selection", "order", "rounds",
                 "local_epochs", "learning_rate", "batch_size", "seed")
        for name, (ok, message) in zip(names, checks):
            found.require(ok, f"{where}.{message}, got {short_repr(getattr(self, name))}")
        found.lines += self.split.problems(f"{where}.split") + self.privacy.problems(f"{where}.privacy")
        found.require(self.privacy.kind != "laplace_svt" or self.selection == "random_above_threshold",
                      f"{where}.selection must be random_above_threshold with privacy laplace_svt (the sparse vector "
                      f"technique picks values above a noisy threshold; picking the largest is not private), "
                      f"got {short_repr(self.selection)}")
        return found.lines

    @property
    def private(self) -> bool:
        return self.privacy.kind != "none"

    def replace(self, **changes: Any) -> CollaborativeConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The `collaborative` YAML mapping (split and privacy without their unset keys)."""
        out = {name: getattr(self, name) for name in COLLABORATIVE_KEYS if name not in ("split", "privacy")}
        out["split"] = {k: v for k, v in dataclasses.asdict(self.split).items() if v is not None}
        out["privacy"] = {k: v for k, v in dataclasses.asdict(self.privacy).items() if v is not None}
        return out


@dataclass(frozen=True)
class CollaborativeRun:
    """A collaborative YAML file: the data, the model, δ (None: each participant's default
    1/N_i^1.1), the protocol and, optionally, the search over it."""

    dataset: DatasetRef
    model: ModelSpec
    collaborative: CollaborativeConfig
    delta: float | None = None
    search: CollaborativeSearch | None = None

    def to_dict(self) -> dict[str, Any]:
        """The YAML mapping of this run (what `collaborative_run_from_dict` reads back)."""
        out: dict[str, Any] = {"dataset": self.dataset.to_dict(), "model": self.model.to_dict(),
                               "collaborative": self.collaborative.to_dict()}
        if self.delta is not None:
            out["delta"] = self.delta
        if self.search is not None:
            out["search"] = self.search.to_dict()
        return out


def _section(values: dict, key: str, allowed: tuple[str, ...], found: _Problems, where: str) -> dict:
    section = values.get(key, {})
    if section is None:
        return {}
    if not isinstance(section, dict):
        found.lines.append(f"{where}.{key} must be a mapping of keys to values, got {short_repr(section)}")
        return {}
    unknown = sorted(str(k)[:60] for k in section if k not in allowed)
    found.require(not unknown, f"unknown key(s) in {where}.{key}: {', '.join(unknown[:10])}; "
                               f"allowed: {', '.join(allowed)}")
    return {k: v for k, v in section.items() if k in allowed}


def _privacy_kind(values: Any) -> str:
    """The privacy kind a (possibly invalid) `collaborative` mapping asks for ("none" when unclear)."""
    privacy = values.get("privacy") if isinstance(values, dict) else None
    kind = privacy.get("kind", "none") if isinstance(privacy, dict) else "none"
    return kind if kind in PRIVACY_KINDS else "none"


def collaborative_config_from_dict(values: Any, where: str = "collaborative") -> CollaborativeConfig:
    """The `collaborative` mapping of a YAML as a config; every problem at once in one ConfigError."""
    found = _Problems()
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping of keys to values, got {short_repr(values)}")
    unknown = sorted(str(k)[:60] for k in values if k not in COLLABORATIVE_KEYS)
    found.require(not unknown, f"unknown key(s) in {where}: {', '.join(unknown[:10])}; "
                               f"allowed: {', '.join(COLLABORATIVE_KEYS)}")
    split_kind = (values.get("split") or {}).get("kind", "iid") if isinstance(values.get("split"), dict) else "iid"
    privacy_kind = _privacy_kind(values)
    split = _section(values, "split", SPLIT_KEYS.get(split_kind, ("kind",)), found, where)
    privacy = _section(values, "privacy", PRIVACY_KEYS.get(privacy_kind, ("kind",)), found, where)
    fields = {k: v for k, v in values.items() if k in COLLABORATIVE_KEYS and k not in ("split", "privacy")}
    try:
        config = CollaborativeConfig(**fields, split=ShardSpec(**split), privacy=CollaborativePrivacy(**privacy))
    except ConfigError as error:  # its own problems, one per line after the heading
        found.lines += [line.removeprefix("  - ") for line in str(error).splitlines()[1:]]
    found.raise_if_any(where)
    return config


def _guarded(build: Callable[[], Any], found: _Problems) -> Any:
    try:
        return build()
    except ConfigError as error:
        found.lines.append(str(error))
        return None


def collaborative_run_from_dict(values: Any, source: str = "collaborative YAML") -> CollaborativeRun:
    """A whole collaborative YAML (dataset, model, delta, collaborative); every problem at once."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values, got {short_repr(values)}")
    found = _Problems()
    unknown = sorted(str(k)[:60] for k in values if k not in TOP_KEYS)
    found.require(not unknown, f"unknown key(s): {', '.join(unknown[:10])}; allowed: {', '.join(TOP_KEYS)}")
    missing = [key for key in ("dataset", "collaborative") if key not in values]
    found.require(not missing, f"missing key(s): {', '.join(missing)}")
    dataset = _guarded(lambda: DatasetRef.from_dict(values["dataset"]), found) if "dataset" in values else None
    model = _guarded(lambda: ModelSpec.from_dict(values.get("model") or {}), found)
    delta = values.get("delta")
    found.require(delta is None or (_number_in(delta, 0, 1, low_open=True) and delta < 1),
                  f"delta must be a number in (0, 1) or left out, got {short_repr(delta)}")
    collaborative = None
    if "collaborative" in values:
        try:
            collaborative = collaborative_config_from_dict(values["collaborative"])
        except ConfigError as error:
            found.lines += [line.removeprefix("  - ") for line in str(error).splitlines()[1:]] or [str(error)]
    search = None
    if "search" in values:
        search, lines = collaborative_search_from_dict(values["search"], _privacy_kind(values.get("collaborative")))
        found.lines += lines
    found.raise_if_any(source)
    return CollaborativeRun(dataset=dataset, model=model, collaborative=collaborative,
                            delta=None if delta is None else float(delta), search=search)


def load_collaborative_run(path: str | os.PathLike) -> CollaborativeRun:
    """Read and validate a collaborative YAML file (safe, bounded YAML: dptune.spec.yaml_fields)."""
    return collaborative_run_from_dict(load_yaml_mapping(path, "collaborative config"), str(path))
