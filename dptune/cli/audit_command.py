"""`dptune audit --config chosen.yaml`: the one-run audit of an exported configuration (registered
in dptune.cli.main).

Trains the run YAML's configuration once with m canaries, each included with probability ½
(Steinke, Nasr & Jagielski, NeurIPS 2023; dptune.engine.one_run_audit), and prints the ε lower
bound at 95 % confidence beside the accountant's ε of that same run, at the same δ. A bound
above the accountant's ε refutes the guarantee (exit status 1); below it, the run is consistent
with it (an audit gives a lower bound: it cannot prove the guarantee). Costs one training run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

from dptune.errors import ConfigError
from dptune.privacy.statement import format_epsilon
from dptune.spec.run import load_run_config
from dptune.workspace import DEFAULT_WORKSPACE, Workspace, write_atomically

DEFAULT_CANARIES = 1000
MAX_CANARIES = 100_000
"""Most canaries accepted (the black-box audit adds about half of them as training rows)."""
MODES = {"black-box": "black_box", "white-box": "white_box"}
EXIT_REFUTED = 1


def add_audit_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare `dptune audit` and its arguments; the handler is `handle_audit`."""
    parser = subparsers.add_parser(
        "audit",
        help="one-run privacy audit of a run YAML: an empirical epsilon lower bound beside the accountant's",
        description=(
            "Train the run YAML's configuration once with canaries, each included with probability 1/2, "
            "score them and print the epsilon lower bound (95%% confidence) that the guesses imply "
            "(Steinke, Nasr & Jagielski 2023) beside the accountant's epsilon of the same run. "
            "black-box: outlier rows with random labels, scored by their loss under the final model; "
            "white-box (stronger): gradient canaries added to the clipped sum, scored by the parameter "
            "change along them. Exit status 1 when the bound exceeds the accountant's epsilon."
        ),
    )
    parser.add_argument("--config", required=True, help="run YAML (from `dptune export`)")
    parser.add_argument("--canaries", type=int, default=DEFAULT_CANARIES, metavar="M",
                        help=f"number of canaries m (default {DEFAULT_CANARIES}; 2 to {MAX_CANARIES:,})")
    parser.add_argument("--mode", choices=tuple(MODES), default="black-box",
                        help="black-box (input canaries, default) or white-box (gradient canaries)")
    parser.add_argument("--workspace", default=None, help="where the dataset .npz is (default: the YAML's)")
    parser.add_argument("--force-unsafe-delta", action="store_true",
                        help="audit even when delta >= 1/N (the run then has no meaningful guarantee)")
    parser.add_argument("--membership", action="store_true",
                        help="also train the run as configured and a non-private reference (noise_multiplier 0, "
                             "all else equal) and print both models' membership-inference attacks (two more runs)")
    parser.set_defaults(handler=handle_audit)


def handle_audit(args: argparse.Namespace) -> int:
    """Run the audit and print its result; 0 when consistent with the accountant, 1 when refuted."""
    if not 2 <= args.canaries <= MAX_CANARIES:
        raise ConfigError(f"--canaries must be between 2 and {MAX_CANARIES:,}, got {args.canaries:,}")
    run = load_run_config(args.config)
    # heavy modules (Optuna, pandas, TensorFlow) only when the command runs, as dptune.cli.main asks
    from dptune.data import resolve_dataset
    from dptune.report.export import check_delta

    dataset = resolve_dataset(run.dataset, args.workspace, save=False)
    check_delta(run.delta, dataset.n_train, force=args.force_unsafe_delta)
    from dptune.engine.one_run_audit import one_run_audit  # TensorFlow: only once the inputs are known good

    report = one_run_audit(dataset, run.model, run.training, canaries=args.canaries, mode=MODES[args.mode],
                           delta=run.delta)
    for line in audit_lines(report):
        print(line)
    saved = save_audit(report, run, args.workspace)
    if saved is not None:
        print(f"  saved for the dashboard (Trade-offs, Attacks & fairness): {saved}")
    if args.membership:
        for line in membership_lines(dataset, run):
            print(line)
    refuted = math.isfinite(report.epsilon_rdp) and report.audit.epsilon_lower_bound > report.epsilon_rdp
    return EXIT_REFUTED if refuted else 0


def save_audit(report, run, workspace: str | None) -> Path | None:
    """Keep the audit of a run YAML exported from a study (it names the study and trial) in the
    workspace, where the dashboard shows it beside that trial; None for a YAML of no study."""
    search = run.search or {}
    if search.get("study") is None or search.get("trial") is None:
        return None
    folder = Workspace.at(workspace or run.dataset.workspace or DEFAULT_WORKSPACE)
    path = folder.audit_path(str(search["study"]), int(search["trial"]), report.mode)
    text = json.dumps({**report.to_dict(), "config_digest": (run.accountant or {}).get("digest")}, indent=1).encode()
    write_atomically(path, lambda handle: handle.write(text))
    return path


def membership_lines(dataset, run) -> list[str]:
    """Membership inference on the run as configured and on its non-private reference (σ = 0,
    same model, clipping, batch size, epochs and learning rate), one line per attack."""
    from dptune.engine.dpsgd import train  # TensorFlow: only when the command runs
    from dptune.engine.evaluate import evaluate_trial

    lines = ["membership inference (members: training rows; non-members: validation rows, not protected by "
             "epsilon; balanced):"]
    for label, config in (("as configured", run.training),
                          ("reference, noise_multiplier 0: NO PRIVACY", dataclasses.replace(run.training,
                                                                                           noise_multiplier=0.0))):
        result = train(dataset, run.model, config, delta=run.delta)
        report = evaluate_trial(result.model, dataset, delta=run.delta).membership
        lines.append(f"  {label} (epsilon {format_epsilon(result.epsilon_rdp)}, validation accuracy "
                     f"{result.val_accuracy:.4f}, {report.per_side:,} rows per side):")
        for attack in report.attacks:
            tpr = "n/a" if attack.tpr_at_fpr_1pct is None else f"{attack.tpr_at_fpr_1pct:.3f}"
            lines.append(f"    {attack.attack}: AUC {attack.auc:.3f}, advantage {attack.advantage:.3f}, "
                         f"TPR at FPR 1% {tpr}, epsilon lower bound (95%) {attack.epsilon_lower_bound:.3f}")
    return lines


def audit_lines(report) -> list[str]:
    """The printed result of an `AuditReport` (dptune.engine.one_run_audit)."""
    audit = report.audit
    kind = "black-box, input canaries" if report.mode == "black_box" else "white-box, gradient canaries"
    lines = [
        f"one-run audit ({kind}; Steinke, Nasr & Jagielski 2023): {audit.canaries:,} canaries, "
        f"{audit.included:,} included at random (probability 1/2)",
        f"  empirical epsilon lower bound ({audit.confidence:.0%} confidence): {audit.epsilon_lower_bound:.3f}"
        f"   ({audit.correct:,} correct of {audit.guesses:,} guesses: {audit.guesses_in:,} 'in', "
        f"{audit.guesses_out:,} 'out'; best of {audit.grid_size} guess counts, Bonferroni-corrected)",
        f"  accountant epsilon of this run: {format_epsilon(report.epsilon_rdp)} (RDP), "
        f"{format_epsilon(report.epsilon_pld)} (PLD), delta = {report.delta:.3g}, N = {report.n_train:,} "
        f"training rows; validation accuracy {report.val_accuracy:.4f}",
    ]
    if not math.isfinite(report.epsilon_rdp):
        lines.append("  the run adds no noise: it claims no privacy, and the bound shows what leaks")
    elif audit.epsilon_lower_bound > report.epsilon_rdp:
        lines.append("  REFUTED: the lower bound exceeds the accountant's epsilon; the guarantee does not hold")
    else:
        lines.append("  consistent: the lower bound is below the accountant's epsilon "
                     "(an audit can refute a guarantee, never prove one)")
    return lines
