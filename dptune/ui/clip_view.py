"""Clip-norm page helpers: the gradient-norm profile (a `dptune profile` subprocess), the
private release, its cost.

The exact per-example norms are private data: `dptune profile` computes them in another
process (TensorFlow never runs in Streamlit's) into `<workspace>/profiles/`, where they stay
like the dataset; this process reads them only to add the Laplace noise of the release.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from dptune import privacy
from dptune.errors import DataError, DPTuneError
from dptune.privacy.clip_quantile import private_clip_norm
from dptune.privacy.search_cost import epsilon_with_clip_selection
from dptune.study.launch import spawn
from dptune.ui import core, specs
from dptune.workspace import Workspace

QUANTILES = (0.5, 0.75, 0.9)
LOG_TAIL_LINES = 12
"""How many of the last lines of a failed profile's log the page shows."""
_NATIVE_NOTICE = re.compile(r"[IW]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl::InitializeLog")
"""TensorFlow's native info and warning lines (oneDNN, no CUDA driver): left out of the error shown."""


def _profile_argv(workspace: Workspace, fingerprint: str, model: dict[str, Any], output: Path) -> list[str]:
    """The `dptune profile` command line that writes the norms of dataset `fingerprint` under
    the initial `model` (a ModelSpec mapping) to `output`."""
    return [sys.executable, "-m", "dptune", "profile", "--workspace", str(workspace.root), "--dataset", fingerprint,
            "--model", json.dumps(model, sort_keys=True), "--output", str(output)]


def _run_profile(workspace: Workspace, fingerprint: str, model: dict[str, Any]) -> Path:
    """The profile file of (dataset, model), made by a `dptune profile` subprocess unless the
    workspace has it already; waits for it. Raises DPTuneError with the tail of the
    subprocess's messages (its log beside the profile) when it fails."""
    output = workspace.profile_path(fingerprint, model)
    if output.exists():
        return output
    log = workspace.profile_log_path(fingerprint, model)
    log.unlink(missing_ok=True)
    code = spawn(_profile_argv(workspace, fingerprint, model, output), log_path=log).wait()
    if code != 0 or not output.exists():
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        tail = "\n".join([line for line in lines if line.strip() and not _NATIVE_NOTICE.match(line)][-LOG_TAIL_LINES:])
        tail = tail or "(no messages)"
        raise DPTuneError(f"profiling the gradient norms failed (`dptune profile` exited with code {code}); nothing "
                          f"was released and no ε was spent. Its last messages:\n\n{tail}")
    return output


def _profile(data: Any, model: Any) -> np.ndarray:
    """The exact norms of every training row under the initial `model` (computed out of process once)."""
    workspace = core.workspace()
    data.dataset.save(workspace.root)  # the subprocess loads it by fingerprint (kept as is when already there)
    with st.spinner(f"Profiling the gradient norms of {data.dataset.n_train:,} training rows in a separate process…"):
        path = _run_profile(workspace, data.dataset.fingerprint, model.to_dict())
    try:
        return np.load(path)
    except (OSError, ValueError) as error:
        raise DataError(f"the gradient-norm profile {path} cannot be read ({error}); delete it and release "
                        "again") from None


def release(data: Any, model: Any, *, quantile: float, epsilon: float) -> dict[str, Any]:
    """Release the noisy histogram of every training row (spends `epsilon` on this dataset),
    set C to its `quantile`; returns the clip state."""
    fingerprint = data.dataset.fingerprint
    norms = _profile(data, model)
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
    sigma = privacy.calibrate_noise_multiplier(target, n, batch, epochs=epochs, delta=delta)
    run = privacy.DPSGDRun(n, batch, sigma, privacy.num_steps(n, batch, epochs), False)
    return epsilon_with_clip_selection(run, clip_epsilon, delta)[0]


def cost_example(state: dict[str, Any], data: Any, clip: dict[str, Any]) -> dict[str, Any] | None:
    """What the clip-norm releases on this dataset add to a typical trial of the current search settings."""
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
