"""The run YAML: the user's deliverable (`dptune export`) that `dptune train --config` reproduces.

Keys (DESIGN.md "YAML export"); the training keys are TF Privacy's names::

    l2_norm_clip: 1.2            # C
    noise_multiplier: 1.07       # sigma (the noise std is sigma*C)
    num_microbatches: 64         # m (= batch_size: per-example clipping)
    learning_rate: 0.25
    batch_size: 64               # expected examples per step, B (Poisson rate B/N)
    epochs: 5
    optimizer: sgd
    momentum: 0.9                # optional, used by optimizer momentum
    sampling: poisson
    seed: 0                      # initial weights only; noise and batches are always secret
    epsilon: 2.98                # RDP ε of this training run at delta (what `train` recomputes)
    delta: 1.0e-05
    accountant: {method: rdp, epsilon_rdp: 2.98, epsilon_pld: 2.61, rdp_order: 11.0, steps: 113,
                 sampling_rate: 0.044, charged_noise_multiplier: 1.07, microbatched: false,
                 clip_norm_selection: null, epsilon_total: 2.98}
    dataset: {name: digits, builtin: digits, fingerprint: <sha256>, n_train: 1437, workspace: dptune-data}
    model: {kind: mlp, hidden_units: [64], activation: relu, path: null}
    metrics: {val_accuracy: 0.93, val_loss: 0.25, train_seconds: 4.1, ...}
    search: {study: ..., storage: ..., trial: 7, mode: budgeted, tuning_cost: {...}}
    versions: {dptune: 0.1.0, tensorflow: 2.21.0, ...}

Read with `yaml.safe_load` and validated: a wrong type, an unknown key, a missing key or a
value out of range raises `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from dptune.errors import ConfigError
from dptune.spec.config import DPSGDConfig, ModelSpec
from dptune.spec.dataset_ref import DatasetRef
from dptune.spec.limits import short_repr
from dptune.spec.yaml_fields import check_keys, is_number, load_yaml_mapping, number, prefixed, string

TRAINING_KEYS = tuple(f.name for f in dataclasses.fields(DPSGDConfig))  # the YAML keys of a run
OPTIONAL_TRAINING_KEYS = ("momentum", "debug_fixed_noise")
REQUIRED_KEYS = (*(key for key in TRAINING_KEYS if key not in OPTIONAL_TRAINING_KEYS), "delta", "dataset", "model")
OPTIONAL_KEYS = (*OPTIONAL_TRAINING_KEYS, "epsilon", "accountant", "privacy_statement", "metrics", "search",
                 "versions")
ACCOUNTANT_KEYS = (
    "method",
    "epsilon_rdp",
    "epsilon_pld",
    "rdp_order",
    "steps",
    "sampling_rate",
    "noise_multiplier",
    "charged_noise_multiplier",
    "microbatched",
    "delta",
    "clip_norm_selection",
    "epsilon_total",
    "epsilon_total_pld",
    "note",
    "digest",
)
METRIC_KEYS = (
    "val_accuracy",
    "val_loss",
    "train_seconds",
    "seconds_per_step",
    "examples_per_second",
    "device",
    "gradient_path",
    "epochs_done",
    "history",
    "membership",  # the two attacks' summary (dptune.report.export.harms_metrics); informative only
    "fairness",  # per-group accuracy and the gaps on the validation rows; informative only
    "within_fairness_limit",
)
SEARCH_KEYS = ("study", "storage", "trial", "mode", "phase", "target_epsilon", "tuning_cost")
ACCOUNTANT_METHODS = ("rdp", "pld")
VERSION_PACKAGES = ("dptune", "tensorflow", "keras", "dp-accounting", "optuna", "numpy")


@dataclass(frozen=True)
class RunConfig:
    """One reproducible DP-SGD run plus what was measured and how it was chosen.

    `epsilon` is the RDP ε of the training run at `delta`, exactly what the accountant
    returns for this config; `accountant.epsilon_total` adds the cost of choosing C
    privately (recipe mode), when there was one.
    """

    training: DPSGDConfig
    delta: float
    dataset: DatasetRef
    model: ModelSpec
    epsilon: float | None = None
    accountant: dict[str, Any] | None = None
    privacy_statement: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    search: dict[str, Any] | None = None
    versions: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = self.training.to_dict()
        if not self.training.debug_fixed_noise:
            del out["debug_fixed_noise"]  # the normal case: nothing about the noise is written down
        out["epsilon"] = self.epsilon
        out["delta"] = self.delta
        out["accountant"] = self.accountant
        out["privacy_statement"] = self.privacy_statement
        out["dataset"] = self.dataset.to_dict()
        out["model"] = self.model.to_dict()
        out["metrics"] = self.metrics
        out["search"] = self.search
        out["versions"] = self.versions
        return {k: _plain(v) for k, v in out.items() if v is not None}

    def with_digest(self) -> RunConfig:
        """A copy whose accountant block carries `accountant_digest` of this run (export)."""
        if self.accountant is None:
            return self
        accountant = {k: v for k, v in self.accountant.items() if k != "digest"}
        unsigned = dataclasses.replace(self, accountant=accountant)
        return dataclasses.replace(unsigned, accountant={**accountant, "digest": accountant_digest(unsigned.to_dict())})

    def digest_matches(self) -> bool | None:
        """True when the accountant block is as exported; False when it or what it rests on was
        edited; None when there is no accountant block or no digest to check."""
        if not self.accountant or "digest" not in self.accountant:
            return None
        return self.accountant["digest"] == accountant_digest(self.to_dict())

    def dump(self, path: str | os.PathLike) -> Path:
        """Write as YAML (keys in the documented order)."""
        target = Path(path)
        header = (
            "# dptune run: reproduce with `dptune train --config " + target.name + "`\n"
            "# epsilon: RDP ε of this training run at delta; privacy_statement: what every ε covers\n"
            "# (accountant.epsilon_total adds the releases before training; search.tuning_cost is the\n"
            "# whole search). seed fixes the public initial weights only: noise and batches are secret.\n"
        )
        text = header + yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        if target.parent.exists() and not target.parent.is_dir():
            raise ConfigError(f"cannot write the run YAML {target}: {target.parent} is a file, not a folder")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot write the run YAML {target}: {error.strerror or error}") from None
        return target

    @classmethod
    def from_dict(cls, values: Any) -> RunConfig:
        check_keys(values, "", required=REQUIRED_KEYS, optional=OPTIONAL_KEYS)
        training_values = {k: values[k] for k in TRAINING_KEYS if k in values}
        string(values["optimizer"], "optimizer")
        string(values["sampling"], "sampling")
        number(values["epochs"], "epochs", low=0, low_open=True)
        training = DPSGDConfig.from_dict(training_values)
        delta = number(values["delta"], "delta", low=0, high=1, low_open=True, high_open=True)
        epsilon = values.get("epsilon")
        if epsilon is not None:
            epsilon = number(epsilon, "epsilon", low=0)
        model_values = values["model"]
        if isinstance(model_values, dict) and "hidden_units" in model_values:
            if not isinstance(model_values["hidden_units"], (list, tuple)):
                raise ConfigError(f"model.hidden_units must be a list of positive integers, got {short_repr(model_values['hidden_units'])}")
        return cls(
            training=training,
            delta=delta,
            dataset=DatasetRef.from_dict(values["dataset"]),
            model=ModelSpec.from_dict(model_values),
            epsilon=epsilon,
            accountant=_accountant(values.get("accountant")),
            privacy_statement=_mapping(values.get("privacy_statement"), "privacy_statement", None),
            metrics=_mapping(values.get("metrics"), "metrics", METRIC_KEYS),
            search=_mapping(values.get("search"), "search", SEARCH_KEYS),
            versions=_versions(values.get("versions")),
        )


def _accountant(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    check_keys(value, "accountant", required=("method",), optional=ACCOUNTANT_KEYS)
    string(value["method"], "accountant.method", choices=ACCOUNTANT_METHODS)
    for key in ("epsilon_rdp", "epsilon_pld", "rdp_order", "sampling_rate", "noise_multiplier",
                "charged_noise_multiplier", "delta", "epsilon_total", "epsilon_total_pld"):
        if value.get(key) is not None:
            number(value[key], f"accountant.{key}", low=0)
    if value.get("steps") is not None:
        number(value["steps"], "accountant.steps", low=1, integer=True)
    if value.get("microbatched") is not None and not isinstance(value["microbatched"], bool):
        raise ConfigError(f"accountant.microbatched must be true or false, got {short_repr(value['microbatched'])}")
    return dict(value)


def _mapping(value: Any, where: str, keys: tuple[str, ...] | None) -> dict[str, Any] | None:
    """A mapping with only `keys` (None: any keys; the privacy statement is informative only:
    `dptune train` recomputes it)."""
    if value is None:
        return None
    if keys is None:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(value).__name__}")
    else:
        check_keys(value, where, optional=keys)
    return dict(value)


def _versions(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"versions must be a mapping of package names to version strings, got {short_repr(value)}")
    for key, version in value.items():
        if not isinstance(version, str):
            raise ConfigError(f"versions.{key[:60]} must be a version string, got {short_repr(version)}")
    return dict(value)


def _plain(value: Any) -> Any:
    """YAML-safe plain values (tuples -> lists, numpy scalars -> Python, inf kept as .inf)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def accountant_digest(values: dict[str, Any]) -> str:
    """SHA-256 over what the recorded ε rests on: the training keys, δ, the dataset's
    fingerprint, the accountant block (less its digest) and the search block. `dptune export`
    writes it as `accountant.digest`; `dptune train` says when it no longer matches (an edited
    file: e.g. a deleted clip-norm release would silently lower the total)."""
    accountant = {k: v for k, v in (values.get("accountant") or {}).items() if k != "digest"}
    covered = {
        "training": {k: values.get(k) for k in TRAINING_KEYS if k != "debug_fixed_noise"},
        "debug_fixed_noise": bool(values.get("debug_fixed_noise", False)),
        "delta": values.get("delta"),
        "fingerprint": (values.get("dataset") or {}).get("fingerprint"),
        "accountant": accountant,
        "search": values.get("search"),
    }
    return hashlib.sha256(json.dumps(_plain(covered), sort_keys=True, default=str).encode()).hexdigest()


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate a run YAML; errors name the file and the key."""
    values = load_yaml_mapping(path, "run config")
    try:
        return RunConfig.from_dict(values)
    except ConfigError as error:
        raise prefixed(error, str(path)) from None


def portable_workspace(workspace: str | os.PathLike | None, cwd: str | os.PathLike | None = None) -> str | None:
    """The workspace an exported YAML records: no absolute path of the exporting machine.

    A relative path is kept; an absolute one is written relative to the current directory
    when it lies inside it (the usual ./dptune-data), else left out, so that `dptune train`
    uses its --workspace (or ./dptune-data). A run YAML's `dataset.workspace` is only ever
    read from (where `<fingerprint>.npz` is looked up): no command writes there."""
    if workspace is None:
        return None
    path = Path(workspace)
    if not path.is_absolute():
        return str(path)
    base = Path(cwd) if cwd is not None else Path.cwd()
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except (ValueError, OSError):
        return None


def package_versions() -> dict[str, str]:
    """Versions of what a run depends on (for the `versions` key)."""
    out = {"python": platform.python_version()}
    for package in VERSION_PACKAGES:
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return out


def finite_or_none(value: Any) -> float | None:
    return float(value) if is_number(value) and math.isfinite(value) else None
