"""Arguments and handlers of `dptune tune`, `worker`, `export` and `train` (registered in
dptune.cli). Heavy imports (TensorFlow, Optuna) happen inside the handlers."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from typing import Any


def _quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}g}"
    return str(value)


# ---------------------------------------------------------------------------- tune
def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="search YAML (mode, dataset, model, target_epsilon, ...)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def handle_tune(args: argparse.Namespace) -> int:
    """Check the budget (every error and warning on stderr; exit 2 on any error, before the
    study exists), then run the search and print its best trial and its cost."""
    from dptune.data import resolve_dataset
    from dptune.spec.search import load_search_spec
    from dptune.study.budget import check_budget, privacy_notes
    from dptune.study.format import StudyRecord, TrialRecord
    from dptune.study.results import best_trial_within, search_cost
    from dptune.study.search import tune

    _quiet()
    spec = load_search_spec(args.config)
    dataset = resolve_dataset(spec.dataset, spec.workspace, save=False)  # nothing written before the checks pass
    budget = check_budget(spec, dataset.n_train)
    for message in budget.warnings:
        print(f"warning: {message.removeprefix('Warning: ')}", file=sys.stderr)
    for message in budget.errors:
        print(f"error: {message}", file=sys.stderr)
    if budget.errors:
        return 2  # as for any other user error
    for message in privacy_notes(spec, dataset.n_train):
        print(f"note: {message}", file=sys.stderr)
    outcome = tune(spec, dataset=dataset, progress=not args.no_progress, log=print)
    study = outcome.study
    print(f"study {study.study_name!r} ({outcome.spec.mode}) in {outcome.spec.storage}: "
          f"{outcome.trials_run} trial(s) run here in {outcome.seconds:.0f} s")
    best = best_trial_within(study)
    if best is None:
        print(f"no completed trial within ε = {outcome.spec.target_epsilon:g}")
    else:
        record = TrialRecord.of(best)
        c = record.config
        print(f"best trial within ε = {outcome.spec.target_epsilon:g}: #{best.number}, val accuracy "
              f"{record.val_accuracy:.4f}, per-trial ε = {_fmt(record.epsilon_total)} "
              f"(C = {c['l2_norm_clip']:.3g}, sigma = {c['noise_multiplier']:.3g}, m = {c['num_microbatches']}, "
              f"lr = {c['learning_rate']:.3g}, B = {c['batch_size']}, epochs = {c['epochs']})")
    cost = search_cost(study)
    print(f"privacy cost of the search itself (δ = {cost['delta']:.3g}): releasing every trial ε = "
          f"{_fmt(cost['naive_composition_epsilon']) if cost['naive_composition_finite'] else 'inf'}"
          + (f"; releasing only the selected trial ε = {_fmt(cost['repeat_and_select_epsilon'])}"
             if cost["repeat_and_select_epsilon"] is not None else ""))
    print(f"  ({cost['note']})")
    recipe = StudyRecord.of(study).recipe
    if recipe:
        _print_recipe(recipe)
    print(f"export: dptune export --storage {outcome.spec.storage} --study {study.study_name} -o chosen.yaml")
    return 0


def _print_recipe(recipe: dict) -> None:
    clip = recipe.get("clip") or {}
    print(f"recipe: C = {_fmt(clip.get('l2_norm_clip'))} ({clip.get('source')}, ε {clip.get('epsilon')})")
    if "baseline" in recipe:
        print(f"  non-private baseline val accuracy {recipe['baseline']['val_accuracy']:.4f}")
    noise = recipe.get("noise_search") or {}
    if "noise_multiplier" in noise:
        print(f"  m = 1: sigma1 = {noise['noise_multiplier']:.4g}, predicted val accuracy {noise['val_accuracy']:.4f}")
    elif noise:
        print(f"  {noise.get('message')}")
    scaled = recipe.get("scaled") or {}
    if scaled:
        print(f"  {scaled['message']}")
        for suggestion in scaled.get("suggestions") or []:
            print(f"    would work: {suggestion}")
    verify = recipe.get("verify") or {}
    if verify:
        print(f"  verified val accuracy {verify['val_accuracy_mean']:.4f} ± {verify['val_accuracy_std']:.4f} "
              f"vs predicted {verify['predicted_val_accuracy']:.4f}")


# ---------------------------------------------------------------------------- worker
def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    from dptune.study.worker import add_arguments

    add_arguments(parser)


def handle_worker(args: argparse.Namespace) -> int:
    from dptune.study.worker import handle

    _quiet()
    return handle(args)


# ---------------------------------------------------------------------------- export
def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", required=True, help="Optuna storage URL")
    parser.add_argument("--study", required=True, help="study name")
    parser.add_argument("--trial", type=int, default=None, help="trial number (default: the best within the target ε)")
    parser.add_argument("--target-epsilon", type=float, default=None, help="default: the study's target ε")
    parser.add_argument("-o", "--output", required=True, help="YAML file to write")


def handle_export(args: argparse.Namespace) -> int:
    from dptune.report.export import export_trial

    _quiet()
    run_config, trial, path = export_trial(
        args.storage, args.study, args.output, trial_number=args.trial, target_epsilon=args.target_epsilon
    )
    metrics = run_config.metrics or {}
    print(f"wrote {path}: trial {trial.number}, val accuracy {_fmt(metrics.get('val_accuracy'))}")
    print(run_config.privacy_statement["text"])
    return 0


# ---------------------------------------------------------------------------- train
def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="run YAML (from `dptune export`)")
    parser.add_argument("--workspace", default=None,
                        help="where the dataset .npz is; overrides the YAML's dataset.workspace (train writes nothing there)")
    parser.add_argument("--save-model", default=None, help="save the trained model as .keras here")
    parser.add_argument("--force-unsafe-delta", action="store_true",
                        help="train even when delta >= 1/N (the run then has no meaningful guarantee)")


def _print_epoch(metrics: Any) -> None:
    """One line per finished epoch of `dptune train`: accuracy and the ε spent so far."""
    from dptune.privacy.statement import format_epsilon

    print(f"epoch {metrics.epoch} (step {metrics.step}): val accuracy {metrics.val_accuracy:.4f}, "
          f"ε so far {format_epsilon(metrics.epsilon)}, {1000 * metrics.seconds_per_step:.1f} ms/step", flush=True)


def handle_train(args: argparse.Namespace) -> int:
    from dptune.report.export import train_from_config

    _quiet()
    reproduction = train_from_config(args.config, workspace=args.workspace,
                                     force_unsafe_delta=args.force_unsafe_delta, on_epoch_end=_print_epoch)
    for line in reproduction.lines():
        print(line)
    if args.save_model:
        reproduction.result.model.save(args.save_model)
        print(f"saved the model to {args.save_model}")
    return 0
