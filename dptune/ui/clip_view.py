"""Clip-norm page helpers: the gradient-norm profile (cached), the private release, its cost."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import streamlit as st

from dptune.ui import core, specs

QUANTILES = (0.5, 0.75, 0.9)


@st.cache_resource(show_spinner="Profiling per-example gradient norms…", max_entries=8)
def _profile(fingerprint: str, spec_key: str, _dataset: Any) -> np.ndarray:
    from dptune.engine.profile import gradient_norm_profile
    from dptune.spec.config import ModelSpec

    spec = ModelSpec.from_dict(json.loads(spec_key))
    return gradient_norm_profile(_dataset, spec)


def release(data: Any, model: Any, *, quantile: float, epsilon: float) -> dict[str, Any]:
    """Release the noisy histogram of every training row (spends `epsilon` on this dataset),
    set C to its `quantile`; returns the clip state."""
    from dptune.privacy.clip_quantile import private_clip_norm

    fingerprint = data.dataset.fingerprint
    norms = _profile(fingerprint, json.dumps(model.to_dict(), sort_keys=True), data.dataset)
    selection = private_clip_norm(norms, quantile, epsilon).to_dict()
    state = core.load_state()
    clip = state["clip"]
    spent = specs.spent_on(clip, fingerprint)
    ledger = dict(clip.get("spent") or {})
    ledger[fingerprint] = {"releases": spent["releases"] + 1, "epsilon": round(spent["epsilon"] + epsilon, 9)}
    clip.update(
        method="private",
        quantile=quantile,
        clip_epsilon=epsilon,
        l2_norm_clip=float(selection["l2_norm_clip"]),
        selection=selection,
        spent=ledger,
        dataset=fingerprint,
    )
    for legacy in ("releases", "epsilon_spent"):
        clip.pop(legacy, None)
    core.save_state(state)
    return clip


@st.cache_data(show_spinner=False, max_entries=64)
def _cost(target: float, n: int, batch: int, epochs: float, delta: float, clip_epsilon: float) -> float:
    from dptune import privacy
    from dptune.privacy.search_cost import TrainingPrivacy, epsilon_with_clip_selection

    sigma = privacy.calibrate_noise_multiplier(target, n, batch, epochs=epochs, delta=delta)
    run = TrainingPrivacy(n, batch, sigma, privacy.num_steps(n, batch, epochs), False)
    return epsilon_with_clip_selection(run, clip_epsilon, delta)[0]


def cost_example(state: dict[str, Any], data: Any, clip: dict[str, Any]) -> dict[str, Any] | None:
    """What the clip-norm releases on this dataset add to a typical trial of the current search settings."""
    from dptune import privacy
    from dptune.errors import DPTuneError

    search = state["search"]
    n = data.dataset.n_train
    batch = int(min(search["batch_size"][0], n))
    epochs = float(search["epochs"][1])
    delta = float(search.get("delta") or privacy.default_delta(n))
    clip_epsilon = specs.spent_on(clip, data.dataset.fingerprint)["epsilon"]
    target = float(search["target_epsilon"])
    result = {"target": target, "batch_size": batch, "epochs": epochs, "delta": delta, "clip_epsilon": clip_epsilon}
    if clip_epsilon <= 0:
        result["with_clip"] = target
        return result
    try:
        result["with_clip"] = _cost(target, n, batch, epochs, delta, clip_epsilon)
    except DPTuneError:
        return None
    return result
