"""The `search` block of a collaborative YAML: what `dptune collab --search` tunes.

Optuna samples θu, θd and the privacy parameters of a DSSGD run (`dptune.spec.collaborative`)
like any other hyperparameters; each trial is one whole collaborative run, recorded with its
worst participant's ε and the bytes each participant uploads per round. Keys (all optional)::

    search:
      trials: 12                       # collaborative runs to try
      objective: accuracy              # or pareto: accuracy against worst ε (and bytes per round)
      target_epsilon: 3                # each participant's ε: dp_sgd's σ is calibrated to it (worst
                                       # participant), laplace_svt's epsilon is set to it
      theta_upload: [0.01, 1.0]        # θu range, log scale (default [0.01, 1], the paper's)
      theta_download: [0.1, 1.0]       # θd range, log scale (default [0.1, 1])
      learning_rate: [0.01, 1.0]       # left out: fixed at the collaborative block's value
      noise_multiplier: [0.5, 4]       # dp_sgd, without target_epsilon
      l2_norm_clip: [0.1, 10]          # dp_sgd
      epsilon: [1, 100]                # laplace_svt, without target_epsilon
      gamma: [0.001, 0.1]              # laplace_svt
      study_name: my-collab            # default: <dataset>-collab-<time>
      storage: sqlite:///studies.db    # default: the workspace's studies.db

A range is [low, high] (sampled on a log scale) or one number (fixed). Every problem is
reported at once, together with the rest of the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dptune.errors import ConfigError
from dptune.spec.limits import MAX_PROTOCOL_VALUE, MAX_TRIALS, short_repr
from dptune.spec.ranges import range_pair
from dptune.spec.yaml_fields import is_int, is_number

OBJECTIVES = ("accuracy", "pareto")
RANGE_KEYS = ("theta_upload", "theta_download", "learning_rate", "noise_multiplier", "l2_norm_clip", "epsilon",
              "gamma")
SEARCH_KEYS = ("trials", "objective", "target_epsilon", *RANGE_KEYS, "study_name", "storage")
#: the ranges each privacy kind can search (the others do not exist for it)
PRIVACY_RANGES = {"none": (), "dp_sgd": ("noise_multiplier", "l2_norm_clip"), "laplace_svt": ("epsilon", "gamma")}
#: the upper end of a range (θ are fractions of the parameters; the others MAX_PROTOCOL_VALUE)
RANGE_HIGHS = {"theta_upload": 1.0, "theta_download": 1.0}
DEFAULT_THETA_UPLOAD = (0.01, 1.0)
DEFAULT_THETA_DOWNLOAD = (0.1, 1.0)


@dataclass(frozen=True)
class CollaborativeSearch:
    """A search over collaborative runs.

    trials: how many runs (Optuna trials). objective: "accuracy" (maximize the server model's
    validation accuracy) or "pareto" (maximize accuracy, minimize the worst participant's ε and
    the bytes a participant uploads per round). target_epsilon: every participant's ε (None:
    ε is whatever the sampled parameters give). ranges: {name: (low, high)} for the keys in
    RANGE_KEYS that are searched; a key left out is fixed at the collaborative block's value
    (θu and θd default to DEFAULT_THETA_UPLOAD / DEFAULT_THETA_DOWNLOAD). study_name,
    storage: where the study lives (None: the defaults of `dptune.study.collaborative`).
    """

    trials: int = 10
    objective: str = "accuracy"
    target_epsilon: float | None = None
    ranges: tuple[tuple[str, tuple[float, float]], ...] = ()
    study_name: str | None = None
    storage: str | None = None

    def range_of(self, name: str) -> tuple[float, float] | None:
        """The (low, high) range of `name`, or None when it is fixed at the config's value."""
        return dict(self.ranges).get(name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"trials": self.trials, "objective": self.objective}
        if self.target_epsilon is not None:
            out["target_epsilon"] = self.target_epsilon
        out.update({name: list(pair) for name, pair in self.ranges})
        out.update({key: getattr(self, key) for key in ("study_name", "storage") if getattr(self, key)})
        return out


def _privacy_problems(ranges: dict[str, Any], objective: Any, target: Any, privacy_kind: str, where: str) -> list[str]:
    """What a search with these ranges, objective and target cannot do with a run whose
    privacy is `privacy_kind` (one line each)."""
    lines = []
    searchable = PRIVACY_RANGES.get(privacy_kind, ())
    foreign = [name for name in ranges if name in ("noise_multiplier", "l2_norm_clip", "epsilon", "gamma")
               and name not in searchable]
    if foreign:
        lines.append(f"{where}.{', {where}.'.join(foreign)}: privacy {privacy_kind} has no such parameter "
                     f"(it can search {', '.join(searchable) or 'no privacy parameter'})")
    if target is not None:
        if privacy_kind == "none":
            lines.append(f"{where}.target_epsilon needs privacy dp_sgd or laplace_svt (privacy none has ε = ∞)")
        calibrated = [name for name in ("noise_multiplier", "epsilon") if name in ranges]
        if calibrated:
            lines.append(f"{where}.{calibrated[0]} cannot be searched with target_epsilon: it is set from the target "
                         "(leave one of them out)")
        if objective == "pareto":
            lines.append(f"{where}.objective pareto needs no target_epsilon (every trial would spend the target)")
    return lines


def collaborative_search_from_dict(values: Any, privacy_kind: str,
                                   where: str = "search") -> tuple[CollaborativeSearch | None, list[str]]:
    """The `search` mapping of a run whose privacy is `privacy_kind` as a CollaborativeSearch,
    and every problem found (one line each; the search is None when there are any)."""
    if not isinstance(values, dict):
        return None, [f"{where} must be a mapping of keys to values, got {short_repr(values)}"]
    lines = []
    unknown = sorted(str(key)[:60] for key in values if key not in SEARCH_KEYS)
    if unknown:
        lines.append(f"unknown key(s) in {where}: {', '.join(unknown[:10])}; allowed: {', '.join(SEARCH_KEYS)}")
    trials = values.get("trials", 10)
    if not (is_int(trials) and 1 <= trials <= MAX_TRIALS):
        lines.append(f"{where}.trials must be an integer between 1 and {MAX_TRIALS:,}, got {short_repr(trials)}")
    objective = values.get("objective", "accuracy")
    if objective not in OBJECTIVES:
        lines.append(f"{where}.objective must be one of {', '.join(OBJECTIVES)}, got {short_repr(objective)}")
    target = values.get("target_epsilon")
    if target is not None and not (is_number(target) and 0 < target <= MAX_PROTOCOL_VALUE):
        lines.append(f"{where}.target_epsilon must be a number > 0 or left out, got {short_repr(target)}")
    ranges = {"theta_upload": DEFAULT_THETA_UPLOAD, "theta_download": DEFAULT_THETA_DOWNLOAD}
    for name in RANGE_KEYS:
        if name not in values:
            continue
        try:
            ranges[name] = range_pair(values[name], f"{where}.{name}", integer=False, high=RANGE_HIGHS.get(name, MAX_PROTOCOL_VALUE))
        except ConfigError as error:
            lines.append(str(error))
    lines += _privacy_problems({name: values[name] for name in RANGE_KEYS if name in values}, objective, target,
                               privacy_kind, where)
    names = {key: values.get(key) for key in ("study_name", "storage")}
    for key, value in names.items():
        if value is not None and not (isinstance(value, str) and value.strip()):
            lines.append(f"{where}.{key} must be a non-empty string or left out, got {short_repr(value)}")
    if lines:
        return None, lines
    return CollaborativeSearch(trials=int(trials), objective=objective,
                               target_epsilon=None if target is None else float(target),
                               ranges=tuple((name, ranges[name]) for name in RANGE_KEYS if name in ranges),
                               **names), []
