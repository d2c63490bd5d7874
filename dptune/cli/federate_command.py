"""`dptune federate server|participant --config X.yaml`: a collaborative (DSSGD) YAML run
across processes and machines on Flower (registered in dptune.cli.main; docs/FEDERATION.md).

`server` holds the global parameters, runs the rounds and prints the global validation
accuracy after each round, then the final accuracy, each participant's rows, ε
(`dptune.privacy.collaborative`, as `dptune collab` computes it) and bytes uploaded per round.
`participant --participant I` trains participant I on its own shard. Flower (and TensorFlow)
are imported inside the handlers only, as dptune.cli.main asks.
"""

from __future__ import annotations

import argparse
import math

from dptune.cli.collaborative_command import participant_table
from dptune.errors import ConfigError
from dptune.federation.protocol import DEFAULT_ADDRESS, DEFAULT_WAIT_S
from dptune.privacy.collaborative import NOT_COVERED
from dptune.spec.collaborative import CollaborativeRun, load_collaborative_run


def add_federate_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare `dptune federate server` and `dptune federate participant`; handlers below."""
    parser = subparsers.add_parser(
        "federate",
        help="run a collaborative (DSSGD) YAML across processes or machines on Flower",
        description=(
            "Distributed selective SGD across processes on Flower: start one server and one participant "
            "process per participant (each with --participant 0..N-1) with the same YAML. One Flower round "
            "is one participant's local round, in the simulation's order, so the run is `dptune collab`'s."
        ),
    )
    roles = parser.add_subparsers(dest="role", metavar="ROLE", required=True)
    server = roles.add_parser("server", help="the parameter server (prints accuracy and each participant's epsilon)")
    participant = roles.add_parser("participant", help="one participant, trained on its own shard")
    participant.add_argument("--participant", type=int, required=True, metavar="I",
                             help="this participant's id, 0..N-1 (N: the YAML's participants)")
    for role, handler in ((server, handle_server), (participant, handle_participant)):
        role.add_argument("--config", required=True, help="collaborative YAML (see dptune/spec/collaborative.py)")
        role.add_argument("--address", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                          help=f"the server's address (default {DEFAULT_ADDRESS}; a server for other machines: "
                               "0.0.0.0:PORT)")
        role.add_argument("--wait", type=float, default=DEFAULT_WAIT_S, metavar="SECONDS",
                          help=f"how long to wait for the other side to connect (default {DEFAULT_WAIT_S:g})")
        role.add_argument("--workspace", default=None, help="where a stored dataset's .npz is (default: the YAML's)")
        role.set_defaults(handler=handler)


def _load(args: argparse.Namespace) -> CollaborativeRun:
    if not (math.isfinite(args.wait) and args.wait > 0):
        raise ConfigError(f"--wait must be a number of seconds > 0, got {args.wait:g}")
    return load_collaborative_run(args.config)


def handle_participant(args: argparse.Namespace) -> int:
    """Serve one participant's local rounds until the server ends the run; 0 on success."""
    run = _load(args)
    count = run.collaborative.participants
    if not 0 <= args.participant < count:
        raise ConfigError(f"--participant must be between 0 and {count - 1} (the YAML has {count} participants), "
                          f"got {args.participant}")
    # heavy modules (TensorFlow, Flower) only when the command runs, as dptune.cli.main asks
    from dptune.data import resolve_dataset
    from dptune.federation.participant import participate

    dataset = resolve_dataset(run.dataset, args.workspace, save=False)
    print(f"participant {args.participant} of {count}: joining the server at {args.address}", flush=True)
    participate(run, dataset, args.participant, args.address, args.wait)
    print(f"participant {args.participant}: the server ended the run", flush=True)
    return 0


def handle_server(args: argparse.Namespace) -> int:
    """Run the server and print its rounds and summary; 0 on success."""
    run = _load(args)
    config = run.collaborative
    from dptune.data import resolve_dataset
    from dptune.federation.server import serve

    dataset = resolve_dataset(run.dataset, args.workspace, save=False)
    print(f"federated DSSGD on Flower at {args.address}: {config.participants} participants, {config.rounds} rounds "
          f"= {config.rounds * config.participants} Flower rounds (one participant's local round each); "
          f"privacy {config.privacy.kind}; waiting up to {args.wait:g} s for the participants", flush=True)
    result = serve(run, dataset, args.address, wait_s=args.wait,
                   on_round=lambda r, accuracy: print(f"  round {r}: global accuracy {accuracy:.4f}", flush=True))
    for line in server_summary(result):
        print(line)
    return 0


def server_summary(result) -> list[str]:
    """The lines after the rounds: final accuracy, then each participant's rows, ε, δ and bytes
    per round (`dptune.federation.server.FederatedResult`)."""
    lines = [f"  final global accuracy {result.global_accuracy:.4f} after {result.flower_rounds} Flower rounds "
             f"({result.seconds:.1f} s); P = {result.parameter_count:,} parameters, {result.uploads_per_round:,} "
             "values uploaded per round at most"]
    return lines + participant_table(result.privacy, result.bytes_uploaded_per_round) + [f"  {NOT_COVERED}"]
