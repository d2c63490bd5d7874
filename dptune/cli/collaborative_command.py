"""`dptune collab --config X.yaml`: one collaborative (DSSGD) run beside its baselines (registered
in dptune.cli.main).

Reads a collaborative YAML (`dptune.spec.collaborative`), splits the dataset into participant
shards, simulates distributed selective SGD (`dptune.engine.collaborative`) and prints one
table: standalone accuracy (mean and worst participant), DSSGD accuracy (the server's model;
one row per θu with --theta-upload), centralized accuracy, wall-clock seconds of each; then
each participant's rows, ε (`dptune.privacy.collaborative`) and bytes uploaded per round,
and the worst participant's ε.

With --search it tunes the YAML's `search` block instead (`dptune.study.collaborative`): one
line per trial as it finishes, then the baselines, the best trial within the target, what the
search charged each participant (all trials composed) and, with --export, the best trial's
YAML, which `dptune collab --config` runs again.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import yaml

from dptune.errors import ConfigError
from dptune.privacy.collaborative import NOT_COVERED, worst_epsilon
from dptune.privacy.statement import format_epsilon
from dptune.spec.collaborative import load_collaborative_run


def add_collab_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare `dptune collab` and its arguments; the handler is `handle_collab`."""
    parser = subparsers.add_parser(
        "collab",
        help="collaborative training (distributed selective SGD) beside standalone and centralized baselines",
        description=(
            "Split one dataset into participant shards and simulate distributed selective SGD "
            "(Shokri & Shmatikov, CCS 2015): each participant trains on its own shard and shares a "
            "fraction theta_upload of its parameter changes through a parameter server. Prints "
            "standalone, DSSGD and centralized validation accuracy, each participant's epsilon and "
            "the bytes it uploads per round."
        ),
    )
    parser.add_argument("--config", required=True, help="collaborative YAML (see dptune/spec/collaborative.py)")
    parser.add_argument("--theta-upload", default=None, metavar="LIST",
                        help="comma-separated theta_upload values, one DSSGD run each (default: the YAML's)")
    parser.add_argument("--workspace", default=None,
                        help="where a stored dataset's .npz and the studies are (default: the YAML's, else ./dptune-data)")
    parser.add_argument("--search", action="store_true",
                        help="tune theta_upload, theta_download and the privacy parameters with the YAML's search block")
    parser.add_argument("--export", default=None, metavar="PATH",
                        help="with --search: write the best trial's collaborative YAML here")
    parser.set_defaults(handler=handle_collab)


def _theta_uploads(text: str | None, default: float) -> list[float]:
    if text is None:
        return [default]
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < value <= 1 for value in values):
        raise ConfigError(f"--theta-upload must be comma-separated numbers in (0, 1], got {text!r}")
    return values


def handle_collab(args: argparse.Namespace) -> int:
    """Run the simulation and its baselines and print the table; 0 on success."""
    run = load_collaborative_run(args.config)
    if args.search or args.export:
        return _handle_search(run, args)
    config = run.collaborative
    theta_uploads = _theta_uploads(args.theta_upload, config.theta_upload)
    # heavy modules (pandas, TensorFlow) only when the command runs, as dptune.cli.main asks
    from dptune.data import resolve_dataset
    from dptune.engine.collaborative import make_shards, run_baselines, run_collaborative

    dataset = resolve_dataset(run.dataset, args.workspace, save=False)
    shards = make_shards(dataset, config)
    baselines = run_baselines(dataset, run.model, config, shards=shards)
    results = [run_collaborative(dataset, run.model, config.replace(theta_upload=theta), shards=shards,
                                 delta=run.delta) for theta in theta_uploads]
    for line in collab_lines(config, shards.sizes, baselines, results):
        print(line)
    return 0


def _privacy_description(privacy) -> str:
    if privacy.kind == "laplace_svt":
        return (f"laplace_svt (epsilon {privacy.epsilon:g} per participant, values clipped to ±{privacy.gamma:g}, "
                "sparse vector selection)")
    if privacy.kind == "dp_sgd":
        return (f"dp_sgd (local DP-SGD: sigma {privacy.noise_multiplier:g}, clip {privacy.l2_norm_clip:g}, "
                f"batch {privacy.batch_size})")
    return "none (uploads are exact parameter changes)"


def collab_lines(config, shard_sizes, baselines, results) -> list[str]:
    """The printed table of `Baselines` and `CollaborativeResult`s (dptune.engine.collaborative)."""
    described = _privacy_description(config.privacy)
    standalone = baselines.standalone_accuracies
    lines = [
        f"collaborative training (distributed selective SGD, Shokri & Shmatikov 2015): {config.participants} "
        f"participants, split {config.split.kind}, shard sizes {', '.join(map(str, shard_sizes))}; "
        f"{config.rounds} rounds x {config.local_epochs:g} local epoch(s); P = {results[0].parameter_count:,} parameters",
        f"  privacy: {described}; baselines are plain SGD (no sharing, no noise)",
        f"  {NOT_COVERED}",
        f"  {'setting':<58}{'accuracy':>10}{'seconds':>10}",
        f"  {'standalone, mean / worst participant':<58}{sum(standalone) / len(standalone):>10.4f}"
        f"{baselines.standalone_seconds:>10.2f}   worst {min(standalone):.4f}",
    ]
    for result in results:
        c = result.config
        label = f"DSSGD theta_u {c.theta_upload:g}, theta_d {c.theta_download:g} ({c.selection})"
        lines.append(f"  {label:<58}{result.global_accuracy:>10.4f}{result.seconds:>10.2f}   "
                     f"worst epsilon {format_epsilon(result.worst_epsilon)}")
    lines.append(f"  {'centralized (all rows pooled)':<58}{baselines.centralized_accuracy:>10.4f}"
                 f"{baselines.centralized_seconds:>10.2f}")
    for result in results:
        lines.append(f"  participants at theta_u {result.config.theta_upload:g} ({result.uploads_per_round:,} values "
                     "uploaded per round at most):")
        lines += participant_table(result.privacy, result.bytes_uploaded_per_round, result.participant_accuracies)
    return lines


def participant_table(charges, sent, accuracies=None) -> list[str]:
    """One row per participant (its rows, ε, δ, mean bytes uploaded per round and, when given,
    its local model's validation accuracy) under a header, then the worst participant's ε;
    `charges` are `dptune.privacy.collaborative.ParticipantPrivacy`."""
    header = f"    {'#':>3}{'rows':>7}{'epsilon':>17}{'delta':>10}{'bytes/round':>13}"
    lines = [header + (f"{'local acc.':>12}" if accuracies is not None else "")]
    for i, (charge, bytes_per_round) in enumerate(zip(charges, sent)):
        delta = "-" if not math.isfinite(charge.epsilon) else f"{charge.delta:.2g}"
        accuracy = "" if accuracies is None else f"{accuracies[i]:>12.4f}"
        lines.append(f"    {charge.participant:>3}{charge.n_train:>7}{format_epsilon(charge.epsilon):>17}"
                     f"{delta:>10}{bytes_per_round:>13,.0f}{accuracy}")
    lines.append(f"    worst participant's epsilon: {format_epsilon(worst_epsilon(charges))} ({charges[0].note})")
    return lines


def _handle_search(run, args: argparse.Namespace) -> int:
    """`--search`: tune, print each trial as it ends and the summary; 0 on success."""
    if not args.search:
        raise ConfigError("--export needs --search (it writes the best trial of the search)")
    if run.search is None:
        raise ConfigError(f"{args.config}: no search block to tune; add e.g. `search: {{trials: 10}}` "
                          "(see dptune/spec/collaborative_search.py)")
    from dptune.study.collaborative import exported_run, trial_line, tune_collaborative, worst_search_charge
    from dptune.study.format import StudyRecord

    print(f"tuning {run.search.trials} collaborative run(s): {run.collaborative.participants} participants, "
          f"privacy {_privacy_description(run.collaborative.privacy)}")
    tuning = tune_collaborative(run, workspace=args.workspace, on_trial=lambda trial: print("  " + trial_line(trial)))
    record = StudyRecord.of(tuning.study)
    best_line = None if tuning.best is None else trial_line(tuning.study.trials[tuning.best])
    for line in search_summary_lines(tuning, record.target_epsilon, best_line, worst_search_charge(record)):
        print(line)
    if args.export:
        if tuning.best is None:
            raise ConfigError("--export: no trial is within the target epsilon; nothing was written")
        Path(args.export).write_text(yaml.safe_dump(exported_run(tuning.study, tuning.best).to_dict(), sort_keys=False))
        print(f"wrote trial {tuning.best} to {args.export} (run it again with: dptune collab --config {args.export})")
    return 0


def search_summary_lines(tuning, target_epsilon: float | None, best_line: str | None,
                         charge: tuple[float, str] | None) -> list[str]:
    """The lines after a search: the study, the baselines (`CollaborativeTuning`), the best
    trial (`best_line`, None when none is within `target_epsilon`) and the search's own charge
    (`worst_search_charge`)."""
    baselines = tuning.baselines
    standalone = baselines.standalone_accuracies
    lines = [f"study {tuning.study.study_name!r} ({len(tuning.study.trials)} trials) in the workspace's studies.db; "
             "open it on the Trade-offs page",
             f"  shard sizes {', '.join(map(str, tuning.shard_sizes))}",
             f"  standalone accuracy: mean {sum(standalone) / len(standalone):.4f}, worst {min(standalone):.4f}",
             f"  centralized accuracy: {baselines.centralized_accuracy:.4f}",
             f"  {NOT_COVERED}"]
    if best_line is None:
        lines.append(f"  no trial is within the target epsilon {target_epsilon:g}")
    else:
        lines.append(f"  best trial within the target: {best_line}")
    if charge is not None and math.isinf(charge[0]):
        lines.append("  no privacy: the uploads are exact parameter changes (epsilon = inf for every trial)")
    elif charge is not None:
        lines.append(f"  the search itself charged each participant up to epsilon {format_epsilon(charge[0])} "
                     f"({charge[1]}); each trial alone is the epsilon above")
    return lines
