"""`dptune export` (a trial of a study -> run YAML) and `dptune train --config` (run YAML ->
the same training run, its metrics and ε).

Reproduction: the YAML holds the full DP-SGD config including the seed, the δ, the model
spec and the dataset's fingerprint, so `train --config` makes the same accountant call
(same N, B, sigma, steps, δ, microbatching) and gets exactly the same ε; with the same seed
on the same machine the training itself is the same run (identical accuracy), and within
noise elsewhere.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dptune.config import DPSGDConfig, ModelSpec
from dptune.dataset_ref import DatasetRef
from dptune.errors import ConfigError
from dptune.run_config import RunConfig, finite_or_none, load_run_config, package_versions
from dptune.search_cost import TrainingPrivacy, epsilon_with_clip_selection

COST_KEYS = (
    "per_trial_epsilon_max", "naive_composition_epsilon", "naive_composition_finite", "repeat_and_select_epsilon",
    "selected_release_epsilon", "clip_selection_epsilon", "n_trials_planned", "n_trials_charged",
    "trials_distribution", "epsilon_includes_search_cost", "note",
)


def choose_trial(study: optuna.Study, trial_number: int | None = None,
                 target_epsilon: float | None = None) -> FrozenTrial:
    """The trial to export: `trial_number`, or the best COMPLETE trial within the target ε."""
    from dptune.results import best_trial_within

    if trial_number is not None:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number == trial_number]
        if not trials:
            raise ConfigError(f"--trial: study {study.study_name!r} has no trial {trial_number}")
        trial = trials[0]
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or "config" not in trial.user_attrs:
            raise ConfigError(f"--trial: trial {trial_number} is {trial.state.name}; export a COMPLETE (or PRUNED) trial")
        return trial
    best = best_trial_within(study, target_epsilon)
    if best is None:
        target = study.user_attrs.get("target_epsilon") if target_epsilon is None else target_epsilon
        raise ConfigError(
            f"no completed trial of study {study.study_name!r} is within ε = {target:g}; "
            "pick one with --trial N or raise --target-epsilon"
        )
    return best


def run_config_from_trial(study: optuna.Study, trial: FrozenTrial, *, storage_url: str | None = None) -> RunConfig:
    """The run YAML of one trial (a pruned trial is exported with the epochs it ran)."""
    from dptune.results import search_cost

    attrs = trial.user_attrs
    config = DPSGDConfig.from_dict(attrs["config"])
    if trial.state == TrialState.PRUNED:
        config = config.replace(epochs=int(attrs.get("epochs_done") or 1))
    n_train = int(study.user_attrs["dataset"]["n_train"])
    spec_dataset = study.user_attrs["search_spec"]["dataset"]
    dataset = DatasetRef(
        name=study.user_attrs["dataset"]["name"],
        builtin=spec_dataset.get("builtin"),
        fingerprint=study.user_attrs["dataset"]["fingerprint"],
        n_train=n_train,
        workspace=study.user_attrs.get("workspace"),
        options=spec_dataset.get("options") or {},
    )
    clip = _clip_selection(study.user_attrs)
    microbatched = not config.per_example
    charged = config.noise_multiplier / 2 if microbatched else config.noise_multiplier
    accountant: dict[str, Any] = {
        "method": "rdp",
        "epsilon_rdp": finite_or_none(attrs.get("epsilon_rdp")),
        "epsilon_pld": finite_or_none(attrs.get("epsilon_pld")),
        "rdp_order": attrs.get("rdp_order"),
        "steps": int(attrs.get("steps_done") or attrs.get("steps_planned")),
        "sampling_rate": config.batch_size / n_train,
        "noise_multiplier": config.noise_multiplier,
        "charged_noise_multiplier": charged,
        "microbatched": microbatched,
        "delta": float(attrs["delta"]),
        "clip_norm_selection": None if not clip else {
            "source": clip["source"], "quantile": clip.get("quantile"), "epsilon": clip["epsilon"],
        },
        "epsilon_total": finite_or_none(attrs.get("epsilon_total", attrs.get("epsilon_rdp"))),
        "note": (
            "epsilon is the RDP ε of this training run (every checkpoint); epsilon_total adds the private "
            "clip-norm selection; the search's own cost is under search.tuning_cost"
            + ("; microbatched: the accountant charges sigma/2" if microbatched else "")
        ),
    }
    cost = search_cost(study)
    metrics = {
        "val_accuracy": attrs.get("val_accuracy"),
        "val_loss": attrs.get("val_loss"),
        "train_seconds": attrs.get("train_seconds"),
        "seconds_per_step": attrs.get("seconds_per_step"),
        "examples_per_second": attrs.get("examples_per_second"),
        "device": attrs.get("device"),
        "gradient_path": attrs.get("gradient_path"),
        "epochs_done": attrs.get("epochs_done"),
    }
    search = {
        "study": study.study_name,
        "storage": storage_url,
        "trial": trial.number,
        "mode": study.user_attrs.get("mode"),
        "phase": attrs.get("phase"),
        "target_epsilon": study.user_attrs.get("target_epsilon"),
        "tuning_cost": {k: cost.get(k) for k in COST_KEYS},
    }
    return RunConfig(
        training=config,
        delta=float(attrs["delta"]),
        dataset=dataset,
        model=ModelSpec.from_dict(attrs["model_spec"]),
        epsilon=finite_or_none(attrs.get("epsilon_rdp")),
        accountant=accountant,
        metrics=metrics,
        search=search,
        versions=package_versions(),
    )


def _clip_selection(study_attrs: dict[str, Any]) -> dict[str, Any] | None:
    """How C was chosen, when that cost privacy (recipe quantile, or a private C chosen
    before the search); None when C cost nothing."""
    from dptune.objective import study_clip_epsilon

    recipe = (study_attrs.get("recipe") or {}).get("clip")
    if recipe:
        return recipe
    epsilon = study_clip_epsilon(study_attrs)
    if epsilon <= 0:
        return None
    ui = study_attrs.get("ui_clip_selection") or {}
    return {"source": ui.get("source", "private"), "quantile": ui.get("quantile"), "epsilon": epsilon}


def export_trial(storage: str, study_name: str, output: str | os.PathLike, *, trial_number: int | None = None,
                 target_epsilon: float | None = None) -> tuple[RunConfig, FrozenTrial, Path]:
    """Write the chosen trial of a study as run YAML; returns (config, trial, path)."""
    from dptune.search import load_study

    study, _, _ = load_study(study_name, storage, load_dataset=False)
    trial = choose_trial(study, trial_number, target_epsilon)
    run_config = run_config_from_trial(study, trial, storage_url=storage)
    return run_config, trial, run_config.dump(output)


# ---------------------------------------------------------------------------- train --config
@dataclass
class Reproduction:
    """What `train --config` measured, next to what the YAML recorded."""

    run_config: RunConfig
    result: Any  # dptune.dpsgd.TrainResult
    epsilon_total: float
    epsilon_matches: bool | None
    recorded_accuracy: float | None

    def lines(self) -> list[str]:
        r, rc = self.result, self.run_config
        t = rc.training
        out = [
            f"trained {r.dataset_name} (N = {r.n_train}, fingerprint {r.dataset_fingerprint[:12]}…) on {r.device}:",
            f"  C = {t.l2_norm_clip:.4g}, sigma = {t.noise_multiplier:.4g}, m = {t.num_microbatches}, "
            f"lr = {t.learning_rate:.4g}, B = {t.batch_size}, epochs = {t.epochs:g}, {t.optimizer}, {t.sampling}, "
            f"seed {t.seed}",
            f"  val accuracy {r.val_accuracy:.4f}, val loss {r.val_loss:.4f}, {r.train_seconds:.1f} s "
            f"({r.seconds_per_step * 1000:.2f} ms/step, {r.examples_per_second:.0f} examples/s)",
            f"  epsilon (RDP, order {r.rdp_order}) = {_fmt(r.epsilon_rdp)}, epsilon (PLD) = {_fmt(r.epsilon_pld)} "
            f"at delta = {r.delta:.3g} ({r.steps} steps)",
        ]
        if t.seed is not None:
            out.append(f"  note: seed {t.seed} makes this run's noise recomputable from this file; to release the "
                       "model, train it with `seed: null` (fresh, secret noise; accuracy then varies within noise)")
        if self.epsilon_total != r.epsilon_rdp:
            out.append(f"  epsilon with the clip-norm selection (RDP) = {_fmt(self.epsilon_total)}")
        if self.epsilon_matches is not None:
            out.append(
                "  epsilon reproduces the recorded value exactly" if self.epsilon_matches
                else f"  WARNING: epsilon differs from the recorded {rc.epsilon!r}"
            )
        if self.recorded_accuracy is not None:
            out.append(f"  recorded val accuracy {self.recorded_accuracy:.4f} "
                       f"(difference {r.val_accuracy - self.recorded_accuracy:+.4f})")
        cost = (rc.search or {}).get("tuning_cost") or {}
        if cost:
            out.append(
                "  the search that chose it spent (naive composition over all trials) "
                f"ε = {_fmt(cost.get('naive_composition_epsilon'))}"
                + (f", releasing only this trial ε = {_fmt(cost['repeat_and_select_epsilon'])}"
                   if cost.get("repeat_and_select_epsilon") is not None else "")
            )
        return out


def _fmt(value: Any) -> str:
    if value is None:
        return "inf (no privacy)"
    return "inf (no privacy)" if isinstance(value, float) and math.isinf(value) else f"{value:.4f}"


def train_from_config(path_or_config: str | os.PathLike | RunConfig, *, workspace: str | None = None,
                      train_fn=None) -> Reproduction:
    """Rebuild the dataset and model from a run YAML and train exactly that config."""
    run_config = path_or_config if isinstance(path_or_config, RunConfig) else load_run_config(path_or_config)
    if train_fn is None:
        from dptune.dpsgd import train as train_fn
    dataset = run_config.dataset.resolve(workspace or run_config.dataset.workspace)
    result = train_fn(dataset, run_config.model, run_config.training, delta=run_config.delta)
    clip = (run_config.accountant or {}).get("clip_norm_selection") or {}
    total = result.epsilon_rdp
    if clip.get("epsilon"):
        t = run_config.training
        total = epsilon_with_clip_selection(
            TrainingPrivacy(dataset.n_train, t.batch_size, t.noise_multiplier, result.steps, not t.per_example),
            float(clip["epsilon"]), run_config.delta,
        )[0]
    matches = None
    if run_config.epsilon is not None:
        matches = result.epsilon_rdp == run_config.epsilon
    recorded = (run_config.metrics or {}).get("val_accuracy")
    return Reproduction(run_config, result, total, matches, recorded)
