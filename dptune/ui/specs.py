"""The page choices (saved in the workspace) and the specs built from them (no Streamlit).

The dashboard's state is a small JSON document, `<workspace>/ui_state.json`, with one
section per page: `dataset`, `model`, `clip`, `search`, plus `study` (the study the
Search, Trade-offs and Export pages show). Widgets write it; `search_spec_from_state`
turns it into the `dptune.spec.search.SearchSpec` a study is created from.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from typing import Any

from dptune.errors import ConfigError
from dptune.spec import modes as spec_modes
from dptune.spec.config import OPTIMIZERS, ModelSpec
from dptune.spec.ranges import DEFAULT_LEARNING_RATES, PER_EXAMPLE
from dptune.spec.search import SearchSpec

#: the Search page's mode choices (dptune.spec.modes.MODES, the default first) and their captions
MODES = {name: rules.summary for name, rules in spec_modes.MODES.items()}
MICROBATCH_CHOICES = (1, 4, 8, 16, 32, 64, PER_EXAMPLE)
#: the optimizer choices of the Search page (DPSGDConfig.optimizer; momentum is used by
#: "momentum" only) and the learning-rate range to offer for each (the spec's defaults,
#: dptune.spec.ranges.DEFAULT_LEARNING_RATES).
OPTIMIZER_LABELS = {
    "sgd": "SGD",
    "momentum": "SGD with momentum",
    "adam": "Adam",
}
LEARNING_RATE_RANGES: dict[str, list[float]] = {name: list(pair) for name, pair in DEFAULT_LEARNING_RATES.items()}

DEFAULT_STATE: dict[str, Any] = {
    "dataset": {"source": "builtin", "builtin": "digits", "upload": None, "options": {}},
    "model": {"source": "suggested", "spec": None, "upload": None},
    "clip": {
        "method": "private",  # private: a noisy quantile on the training data; manual: a C typed in
        "quantile": 0.75,
        "clip_epsilon": 0.1,
        "l2_norm_clip": None,  # the chosen C once known
        "use": "range",  # range: search C in [C/4, 4C]; fix: every trial uses C
        "selection": None,  # the released ClipSelection (dptune.study.recipe), as a dict
        "spent": {},  # per dataset fingerprint: {"releases": k, "epsilon": total ε_C} (spent_on)
        "dataset": None,  # fingerprint the selection was made on
    },
    "search": {
        "mode": spec_modes.BUDGETED.name,
        "target_epsilon": 3.0,
        "delta": None,
        "n_trials": 12,
        "workers": 1,
        "l2_norm_clip": [0.1, 10.0],
        "learning_rate": list(LEARNING_RATE_RANGES["sgd"]),
        "optimizer": "sgd",
        "momentum": 0.9,  # used by optimizer "momentum" only
        "batch_size": [32, 256],
        "epochs": [1, 5],
        "num_microbatches": [8, 32, PER_EXAMPLE],
        "noise_multiplier": list(spec_modes.PARETO.noise_range),  # pareto mode
        "max_trial_epsilon": None,  # pareto mode: no trial spends more; None = MAX_TRIAL_EPSILON_FACTOR x target
        "recipe_noise_multiplier": list(spec_modes.RECIPE.noise_range),  # recipe mode, at m = 1 (noise σ·C)
        "sampler": "tpe",
        "pruner": "median",
        "seed": 0,
    },
    "study": None,
    "selected": {"study": None, "trial": None},  # the trial chosen on Trade-offs, for Export
}

QUICK_START_SEARCH: dict[str, Any] = {
    "mode": spec_modes.BUDGETED.name,
    "target_epsilon": 3.0,
    "delta": None,
    "n_trials": 3,
    "workers": 1,
    "l2_norm_clip": [0.5, 3.0],
    "learning_rate": [0.3, 1.0],
    "optimizer": "sgd",
    "batch_size": [64, 64],
    "epochs": [2, 2],
    "num_microbatches": [PER_EXAMPLE],
    "sampler": "random",
    "pruner": "none",
    "seed": 0,
}


def default_state() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_STATE)


def merged_state(saved: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults overlaid with what was saved (unknown keys dropped, sections merged)."""
    state = default_state()
    for section, values in (saved or {}).items():
        if section not in state:
            continue
        if isinstance(state[section], dict) and isinstance(values, dict):
            state[section].update({k: v for k, v in values.items() if k in state[section]})
        else:
            state[section] = values
    return state


def model_spec_from_state(state: dict[str, Any], suggested: ModelSpec) -> ModelSpec:
    section = state["model"]
    if section.get("source") == "suggested" or not section.get("spec"):
        return suggested
    return ModelSpec.from_dict(section["spec"])


def _pair(values: Any, key: str, integer: bool = False) -> list:
    low, high = values
    if integer:
        low, high = int(low), int(high)
    else:
        low, high = float(low), float(high)
    if low > high:
        raise ConfigError(f"{key}: the lower end ({low:g}) is above the upper end ({high:g}); swap them")
    return [low, high]


def clip_range(state: dict[str, Any]) -> list[float]:
    """The C range the search uses: the Clip norm page's C (fixed or within a factor 4), else the Search page's."""
    clip = state["clip"]
    chosen = clip.get("l2_norm_clip")
    if chosen:
        chosen = float(chosen)
        return [chosen, chosen] if clip.get("use") == "fix" else [round(chosen / 4, 6), round(chosen * 4, 6)]
    return _pair(state["search"]["l2_norm_clip"], "C range")


def default_study_name(dataset_name: str, mode: str, target_epsilon: float, now: dt.datetime | None = None) -> str:
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_name or "data").strip("-")[:40] or "data"
    return f"{base}-{mode}-eps{target_epsilon:g}-{stamp}"


def spent_on(clip: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """{"releases": k, "epsilon": Σ ε_C} of the histograms released on one dataset (by
    fingerprint). Spending is per dataset and never undone: a histogram once shown stays
    spent whichever C is used afterwards."""
    ledger = clip.get("spent") or {}
    if not ledger and clip.get("releases") and clip.get("dataset"):  # state written before the ledger
        ledger = {clip["dataset"]: {"releases": int(clip["releases"]), "epsilon": float(clip["epsilon_spent"])}}
    return dict(ledger.get(fingerprint) or {"releases": 0, "epsilon": 0.0})


def search_spec_dict(
    state: dict[str, Any],
    *,
    dataset_ref: dict[str, Any],
    model_spec: ModelSpec,
    workspace: str,
    storage: str,
    study_name: str,
) -> dict[str, Any]:
    """The SearchSpec mapping (the keys of the search YAML) for the current page choices."""
    search = state["search"]
    rules = spec_modes.mode_rules(search["mode"])
    choices = list(search.get("num_microbatches") or [])
    if not choices:
        raise ConfigError("choose at least one number of microbatches (m), e.g. per_example")
    ranges: dict[str, Any] = {
        "l2_norm_clip": clip_range(state),
        "learning_rate": _pair(search["learning_rate"], "learning-rate range"),
        "batch_size": _pair(search["batch_size"], "batch-size range", integer=True),
        "epochs": _pair(search["epochs"], "epochs range", integer=True),
        "num_microbatches": choices,
    }
    if rules.searches_noise:  # the recipe's σ range (at m = 1) is a state key of its own
        key = "recipe_noise_multiplier" if rules.runs_recipe else "noise_multiplier"
        ranges["noise_multiplier"] = _pair(search.get(key) or rules.noise_range, "σ range")
    if rules.microbatches is not None:
        ranges["num_microbatches"] = list(rules.microbatches)
    optimizer = search.get("optimizer") or "sgd"
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    fixed: dict[str, Any] = {"optimizer": optimizer, "seed": int(search.get("seed") or 0)}
    if optimizer == "momentum":  # the other optimizers ignore it: not written, so the YAML does not mislead
        momentum = float(search.get("momentum", 0.9))
        if not 0 <= momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {momentum:g}")
        fixed["momentum"] = momentum
    pruner = search.get("pruner", "median") if rules.prune_by_default else "none"
    values: dict[str, Any] = {
        "mode": rules.name,
        "dataset": dataset_ref,
        "model": model_spec.to_dict(),
        "target_epsilon": float(search["target_epsilon"]),
        "delta": None if search.get("delta") in (None, 0, 0.0) else float(search["delta"]),
        "n_trials": int(search["n_trials"]),
        "ranges": ranges,
        "fixed": fixed,
        "sampler": search.get("sampler", "tpe"),
        "pruner": pruner,
        "study_name": study_name,
        "storage": storage,
        "workspace": workspace,
        "workers": int(search.get("workers") or 1),
        # every histogram released on this dataset stays spent, whichever C the search uses
        "clip_selection_epsilon": spent_on(state["clip"], str(dataset_ref.get("fingerprint")))["epsilon"],
    }
    # written out, so the search YAML shows the cap the trials run under
    cap = rules.trial_epsilon_cap(float(search["target_epsilon"]), search.get("max_trial_epsilon") or None)
    if cap is not None:
        values["max_trial_epsilon"] = cap
    if rules.runs_recipe:
        clip = state["clip"]
        recipe: dict[str, Any] = {
            "batch_size": int(search["batch_size"][1]),
            "epochs": int(search["epochs"][1]),
            "clip_quantile": float(clip.get("quantile") or 0.75),
            "clip_epsilon": float(clip.get("clip_epsilon") or 0.1),
        }
        if clip.get("method") == "manual" and clip.get("l2_norm_clip"):
            recipe["clip_norm"] = float(clip["l2_norm_clip"])
        values["recipe"] = recipe
    return values


def search_spec_from_state(state: dict[str, Any], **kwargs: Any) -> SearchSpec:
    """A validated `SearchSpec` (ConfigError naming the key when a choice is invalid)."""
    values = search_spec_dict(state, **kwargs)
    try:
        return SearchSpec.from_dict(values)
    except TypeError as error:
        raise ConfigError(str(error)) from None
