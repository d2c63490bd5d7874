"""`dptune export` (a trial of a study -> run YAML) and `dptune train --config` (run YAML ->
the same training run, its metrics and ε).

Reproduction: the YAML holds the full DP-SGD config including the seed, the δ, the model
spec and the dataset's fingerprint, so `train --config` makes the same accountant call
(same N, B, sigma, steps, δ, microbatching) and gets exactly the same ε; with the same seed
on the same machine the training itself is the same run (identical accuracy), and within
noise elsewhere.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from dptune.data import resolve_dataset
from dptune.errors import ConfigError
from dptune.privacy.run import default_delta
from dptune.privacy.statement import (
    PrivacyStatement,
    SearchPart,
    format_sigma,
    is_unsafe_delta,
    preprocessing_release,
    statement_for_run,
)
from dptune.spec.config import DPSGDConfig, ModelSpec
from dptune.spec.dataset_ref import DatasetRef
from dptune.spec.run import RunConfig, finite_or_none, load_run_config, package_versions, portable_workspace
from dptune.study.format import StudyRecord, TrialRecord
from dptune.study.results import best_trial_within, search_cost

COST_KEYS = (
    "per_trial_epsilon_max", "naive_composition_epsilon", "naive_composition_finite", "repeat_and_select_epsilon",
    "selected_release_epsilon", "clip_selection_epsilon", "n_trials_planned", "n_trials_charged",
    "trials_distribution", "epsilon_includes_search_cost", "note",
)


def choose_trial(study: optuna.Study, trial_number: int | None = None,
                 target_epsilon: float | None = None) -> FrozenTrial:
    """The trial to export: `trial_number`, or the best COMPLETE trial within the target ε."""
    if trial_number is not None:
        trials = [t for t in study.get_trials(deepcopy=False) if t.number == trial_number]
        if not trials:
            raise ConfigError(f"--trial: study {study.study_name!r} has no trial {trial_number}")
        trial = trials[0]
        if trial.state not in (TrialState.COMPLETE, TrialState.PRUNED) or TrialRecord.of(trial).config is None:
            raise ConfigError(f"--trial: trial {trial_number} is {trial.state.name}; export a COMPLETE (or PRUNED) trial")
        return trial
    best = best_trial_within(study, target_epsilon)
    if best is None:
        target = StudyRecord.of(study).target_epsilon if target_epsilon is None else target_epsilon
        raise ConfigError(
            f"no completed trial of study {study.study_name!r} is within ε = {target:g}; "
            "pick one with --trial N or raise --target-epsilon"
        )
    return best


def run_config_from_trial(study: optuna.Study, trial: FrozenTrial, *, storage_url: str | None = None,
                          cost: dict[str, Any] | None = None) -> RunConfig:
    """The run YAML of one trial (a pruned trial is exported with the epochs it ran).

    cost: the study's search cost when already known (the `search_cost` study attribute the
    workers keep current); None recomputes it (`dptune.study.results.search_cost`)."""
    record, study_record = TrialRecord.of(trial), StudyRecord.of(study)
    config = DPSGDConfig.from_dict(record.config)
    if trial.state == TrialState.PRUNED:
        config = config.replace(epochs=int(record.epochs_done or 1))
    n_train = study_record.n_train
    spec_dataset = study_record.search_spec["dataset"]
    dataset = DatasetRef(
        name=study_record.dataset.name,
        builtin=spec_dataset.get("builtin"),
        file=spec_dataset.get("file"),
        fingerprint=study_record.dataset.fingerprint,
        n_train=n_train,
        workspace=portable_workspace(study_record.workspace),
        options=spec_dataset.get("options") or {},
    )
    clip = _clip_selection(study_record)
    steps = int(record.steps_done or record.steps_planned)
    delta = float(record.delta)
    cost = cost or search_cost(study)
    statement = statement_for_run(
        n_train=n_train, config=config, steps=steps, delta=delta,
        clip_epsilon=float(clip["epsilon"]) if clip else 0.0, clip_detail=_clip_detail(clip),
        preprocessing=preprocessing_release(study_record.dataset.preprocessing),
        search=SearchPart(
            epsilon_all_trials=cost.get("naive_composition_epsilon"),
            epsilon_selected_release=cost.get("selected_release_epsilon"),
            trials_charged=int(cost.get("n_trials_charged") or 0),
        ),
    )
    accountant = _accountant_section(statement, delta, clip)
    metrics = {
        "val_accuracy": record.val_accuracy,
        "val_loss": record.val_loss,
        "train_seconds": record.train_seconds,
        "seconds_per_step": record.seconds_per_step,
        "examples_per_second": record.examples_per_second,
        "device": record.device,
        "gradient_path": record.gradient_path,
        "epochs_done": record.epochs_done,
        **harms_metrics(record),
    }
    search = {
        "study": study.study_name,
        "storage": storage_url,
        "trial": trial.number,
        "mode": study_record.mode,
        "phase": record.phase,
        "target_epsilon": study_record.target_epsilon,
        "tuning_cost": {k: cost.get(k) for k in COST_KEYS},
    }
    return RunConfig(
        training=config,
        delta=delta,
        dataset=dataset,
        model=ModelSpec.from_dict(record.model_spec),
        epsilon=finite_or_none(statement.epsilon_training_rdp),
        accountant=accountant,
        privacy_statement=statement.to_dict(),
        metrics=metrics,
        search=search,
        versions=package_versions(),
    ).with_digest()


def harms_metrics(record: TrialRecord) -> dict[str, Any]:
    """The run YAML's summary of what the trial's model lets an attacker learn and who pays for
    its accuracy (measured after training; the validation rows they read are not protected by
    ε): per attack its AUC, advantage, TPR at FPR 1 % and ε lower bound; per sensitive group
    its size and accuracy, and the gaps. Empty when the trial recorded none."""
    metrics: dict[str, Any] = {}
    if record.membership:
        metrics["membership"] = {
            "rows_per_side": record.membership["per_side"],
            **{a["attack"]: {key: a[key] for key in ("auc", "advantage", "tpr_at_fpr_1pct", "epsilon_lower_bound")}
               for a in record.membership["attacks"]},
        }
    fairness = record.fairness or {}
    if fairness.get("groups"):
        metrics["fairness"] = {
            "rows": fairness["rows"], "sensitive_attribute": fairness["sensitive_name"],
            "groups": {g["group"]: {"size": g["size"], "accuracy": g["accuracy"]} for g in fairness["groups"]},
            **{key: fairness[key] for key in ("worst_group", "worst_group_accuracy", "accuracy_difference",
                                              "demographic_parity_difference", "equal_opportunity_difference",
                                              "equalized_odds_difference")},
        }
    if record.within_fairness_limit is not None:
        metrics["within_fairness_limit"] = record.within_fairness_limit
    return metrics


def _accountant_section(statement: PrivacyStatement, delta: float, clip: dict[str, Any] | None) -> dict[str, Any]:
    """The run YAML's `accountant`: the training run's ε by both accountants and what it composes."""
    return {
        "method": "rdp",
        "epsilon_rdp": finite_or_none(statement.epsilon_training_rdp),
        "epsilon_pld": finite_or_none(statement.epsilon_training_pld),
        "rdp_order": statement.rdp_order,
        "steps": statement.run.steps,
        "sampling_rate": statement.run.sampling_rate,
        "noise_multiplier": statement.run.noise_multiplier,
        "charged_noise_multiplier": statement.run.charged_noise_multiplier,
        "microbatched": statement.run.microbatched,
        "delta": delta,
        "clip_norm_selection": None if not clip else {
            "source": clip["source"], "quantile": clip.get("quantile"), "epsilon": clip["epsilon"],
        },
        "epsilon_total": finite_or_none(statement.epsilon_total),
        "note": (
            "epsilon is the RDP ε of this training run (every checkpoint); epsilon_total adds the releases "
            "before training (clip-norm histograms, preprocessing); the search's own cost is under "
            "search.tuning_cost; privacy_statement says what all of it covers"
        ),
    }


def _clip_detail(clip: dict[str, Any] | None) -> str:
    if not clip:
        return ""
    quantile = clip.get("quantile")
    return (f"{clip.get('source', 'private')} Laplace histogram(s) of per-example gradient norms"
            + (f", C at the {quantile:.0%} quantile" if quantile else "") + ", pure DP")


def _clip_selection(study: StudyRecord) -> dict[str, Any] | None:
    """How C was chosen and the total ε of every clip-norm histogram released on the dataset
    (the recipe's own and those before the search); None when no histogram was released."""
    epsilon = study.clip_epsilon
    if epsilon <= 0:
        return None
    chosen = (study.recipe or {}).get("clip") or study.ui_clip_selection or {}
    return {"source": chosen.get("source", "private"), "quantile": chosen.get("quantile"), "epsilon": epsilon}


def export_trial(storage: str, study_name: str, output: str | os.PathLike, *, trial_number: int | None = None,
                 target_epsilon: float | None = None) -> tuple[RunConfig, FrozenTrial, Path]:
    """Write the chosen trial of a study as run YAML; returns (config, trial, path)."""
    from dptune.study.search import load_study

    study, _, _ = load_study(study_name, storage, load_dataset=False)
    trial = choose_trial(study, trial_number, target_epsilon)
    run_config = run_config_from_trial(study, trial, storage_url=storage)
    return run_config, trial, run_config.dump(output)


# ---------------------------------------------------------------------------- train --config
@dataclass
class Reproduction:
    """What `train --config` measured and the privacy statement it recomputed from the run
    (never copied from the file), next to what the YAML recorded."""

    run_config: RunConfig
    result: Any  # dptune.engine.dpsgd.TrainResult
    statement: PrivacyStatement
    epsilon_matches: bool | None
    recorded_accuracy: float | None
    integrity: tuple[str, ...]

    @property
    def epsilon_total(self) -> float:
        return self.statement.epsilon_total

    def lines(self) -> list[str]:
        r, rc = self.result, self.run_config
        t = rc.training
        out = [
            f"trained {r.dataset_name} (N = {r.n_train}, fingerprint {r.dataset_fingerprint[:12]}…) on {r.device}:",
            f"  C = {t.l2_norm_clip:.4g}, sigma = {format_sigma(t.noise_multiplier)}, m = {t.num_microbatches}, "
            f"lr = {t.learning_rate:.4g}, B = {t.batch_size}, epochs = {t.epochs:g}, {t.optimizer}, {t.sampling}, "
            f"initial-weights seed {t.seed}",
            f"  val accuracy {r.val_accuracy:.4f}, val loss {r.val_loss:.4f}, {r.train_seconds:.1f} s "
            f"({r.seconds_per_step * 1000:.2f} ms/step, {r.examples_per_second:.0f} examples/s)",
        ]
        out.extend(self.statement.lines())
        if self.epsilon_matches is not None:
            out.append(
                "  training epsilon reproduces the recorded value exactly" if self.epsilon_matches
                else f"  WARNING: training epsilon differs from the recorded {rc.epsilon!r}"
            )
        out.extend(f"  {line}" for line in self.integrity)
        if self.recorded_accuracy is not None:
            out.append(f"  recorded val accuracy {self.recorded_accuracy:.4f} "
                       f"(difference {r.val_accuracy - self.recorded_accuracy:+.4f}; fresh secret noise, so "
                       "accuracy reproduces statistically, not digit for digit)")
        return out


def _integrity(run_config: RunConfig) -> tuple[str, ...]:
    """What `train` cannot vouch for in the file: an accountant block that is missing or was
    edited after export (the releases before training are taken from it)."""
    matches = run_config.digest_matches()
    if run_config.accountant is None:
        return ("NOTE: the file has no accountant block, so no release before training (clip-norm "
                "histograms) is known; if C was read off the training data, add that ε yourself",)
    if matches is None:
        return ("NOTE: the accountant block has no digest (not written by `dptune export`): the clip-norm "
                "releases it lists are taken as they are",)
    if not matches:
        return ("WARNING: the file was edited after export (accountant.digest does not match the training "
                "keys, delta, dataset, accountant and search blocks); the clip-norm releases it lists may be "
                "incomplete, so the total below may be too low",)
    return ()


def _recorded_search(run_config: RunConfig) -> SearchPart | None:
    """The search's cost as the file records it (a search cannot be recomputed from one run)."""
    cost = (run_config.search or {}).get("tuning_cost") or {}
    if not cost:
        return None
    return SearchPart(
        epsilon_all_trials=cost.get("naive_composition_epsilon"),
        epsilon_selected_release=cost.get("selected_release_epsilon"),
        trials_charged=int(cost.get("n_trials_charged") or 0),
        note="as recorded in the file",
    )


def check_delta(delta: float, n_train: int, *, force: bool) -> None:
    """Refuse a δ ≥ 1/N (no meaningful guarantee) unless `force`."""
    if is_unsafe_delta(delta, n_train) and not force:
        raise ConfigError(
            f"delta = {delta:.3g} is not below 1/N = {1 / n_train:.3g} (N = {n_train}): publishing one random "
            "training row meets such a guarantee. Use a smaller delta (e.g. the default 1/N^1.1 = "
            f"{default_delta(n_train):.3g}), or pass --force-unsafe-delta to train anyway."
        )


def train_from_config(path_or_config: str | os.PathLike | RunConfig, *, workspace: str | None = None,
                      train_fn=None, force_unsafe_delta: bool = False,
                      on_epoch_end: Callable[[Any], None] | None = None) -> Reproduction:
    """Rebuild the dataset and model from a run YAML, train exactly that config and recompute
    its privacy statement from the run (the clip-norm releases come from the accountant
    block, whose digest is checked; preprocessing from the dataset itself). on_epoch_end:
    called with each epoch's metrics (dptune.engine.dpsgd.EpochMetrics), e.g. to show progress."""
    run_config = path_or_config if isinstance(path_or_config, RunConfig) else load_run_config(path_or_config)
    if train_fn is None:
        from dptune.engine.dpsgd import train as train_fn
    # --workspace overrides the YAML's dataset.workspace, which is only read from: train writes no dataset
    ref = run_config.dataset if workspace is None else dataclasses.replace(run_config.dataset, workspace=str(workspace))
    dataset = resolve_dataset(ref, save=False)
    check_delta(run_config.delta, dataset.n_train, force=force_unsafe_delta)
    result = train_fn(dataset, run_config.model, run_config.training, delta=run_config.delta,
                      on_epoch_end=on_epoch_end)
    clip = (run_config.accountant or {}).get("clip_norm_selection") or {}
    statement = statement_for_run(
        n_train=dataset.n_train, config=run_config.training, steps=result.steps, delta=run_config.delta,
        clip_epsilon=float(clip.get("epsilon") or 0.0), clip_detail=_clip_detail(clip or None),
        preprocessing=preprocessing_release(dataset.preprocessing_record()),
        search=_recorded_search(run_config),
    )
    matches = None
    if run_config.epsilon is not None:
        matches = statement.epsilon_training_rdp == run_config.epsilon
    recorded = (run_config.metrics or {}).get("val_accuracy")
    return Reproduction(run_config, result, statement, matches, recorded, _integrity(run_config))
