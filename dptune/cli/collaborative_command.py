"""`dptune collab --config X.yaml`: one collaborative (DSSGD) run beside its baselines (registered
in dptune.cli.main).

Reads a collaborative YAML (`dptune.spec.collaborative`), splits the dataset into participant
shards, simulates distributed selective SGD (`dptune.engine.collaborative`) and prints one
table: standalone accuracy (mean and worst participant), DSSGD accuracy (the server's model;
one row per θu with --theta-upload), centralized accuracy, wall-clock seconds of each; then
each participant's rows, ε (`dptune.privacy.collaborative`) and bytes uploaded per round,
and the worst participant's ε.
"""

from __future__ import annotations

import argparse
import math

from dptune.errors import ConfigError
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
    parser.add_argument("--workspace", default=None, help="where a stored dataset's .npz is (default: the YAML's)")
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
        lines.append(f"    {'#':>3}{'rows':>7}{'epsilon':>17}{'delta':>10}{'bytes/round':>13}{'local acc.':>12}")
        for charge, sent, accuracy in zip(result.privacy, result.bytes_uploaded_per_round,
                                          result.participant_accuracies):
            delta = "-" if not math.isfinite(charge.epsilon) else f"{charge.delta:.2g}"
            lines.append(f"    {charge.participant:>3}{charge.n_train:>7}{format_epsilon(charge.epsilon):>17}"
                         f"{delta:>10}{sent:>13,.0f}{accuracy:>12.4f}")
        lines.append(f"    worst participant's epsilon: {format_epsilon(result.worst_epsilon)} "
                     f"({result.privacy[0].note})")
    return lines
