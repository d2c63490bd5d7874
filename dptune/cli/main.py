"""The `dptune` console command (also `python -m dptune`).

Each subcommand is one `_add_<name>_parser(subparsers)` function (here, or `add_<name>_parser`
in its own module, like `profile_command`) that declares its arguments and sets
`handler=<function(args) -> int>`, plus that handler; register the adder in SUBCOMMANDS.
Handlers import heavy modules (TensorFlow, Optuna) lazily, inside the handler, so
`dptune epsilon` stays fast. Any `DPTuneError` a handler raises is printed as
`error: <message>` on stderr with exit code 2 (no traceback); bad arguments also exit 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from dptune.cli import search_commands
from dptune.cli.audit_command import add_audit_parser
from dptune.cli.collaborative_command import add_collab_parser
from dptune.cli.federate_command import add_federate_parser
from dptune.cli.profile_command import add_profile_parser
from dptune.cli.register_command import add_register_parser
from dptune.errors import DPTuneError
from dptune.privacy.statement import delta_warnings, format_epsilon

EXIT_OK = 0
EXIT_USAGE = 2  # bad arguments or any DPTuneError


class _UsageError(Exception):
    """Raised by the parser instead of exiting, so main() can report and return 2."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print and sys.exit(2)
        raise _UsageError(message, self.format_usage())


# --------------------------------------------------------------------------------------------
# dptune epsilon
# --------------------------------------------------------------------------------------------


def _add_epsilon_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "epsilon",
        help="privacy (epsilon, delta) of a DP-SGD run",
        description=(
            "Epsilon of DP-SGD with Poisson sampling (q = B/N), add-or-remove-one adjacency, "
            "by the RDP and PLD accountants of dp_accounting. With --microbatches M < B the "
            "sensitivity doubles and sigma/2 is charged."
        ),
    )
    parser.add_argument("--n", type=int, required=True, metavar="N", help="number of training examples")
    parser.add_argument("--batch-size", type=int, required=True, metavar="B", help="expected batch size")
    parser.add_argument(
        "--noise-multiplier", type=float, required=True, metavar="SIGMA", help="noise multiplier sigma"
    )
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--epochs", type=float, metavar="E", help="epochs (steps = ceil(E*N/B))")
    length.add_argument("--steps", type=int, metavar="T", help="number of steps")
    parser.add_argument("--delta", type=float, metavar="D", help="delta (default: 1/N^1.1)")
    parser.add_argument(
        "--microbatches",
        type=int,
        metavar="M",
        help="microbatches per step (default: B, per-example clipping); M < B charges sigma/2",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.set_defaults(handler=_run_epsilon)


def _check_epsilon_sizes(args: argparse.Namespace) -> None:
    """The sizes of `dptune epsilon` within dptune.spec.limits (checked before any accounting)."""
    from dptune.errors import PrivacyError
    from dptune.spec.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_EXAMPLES, MAX_STEPS

    def at_most(value: float | None, limit: int, flag: str) -> None:
        if value is not None and not (math.isfinite(value) and value <= limit):
            raise PrivacyError(f"{flag} {value:g} is over dptune's limit of {limit:,}")

    at_most(args.n, MAX_EXAMPLES, "--n")
    at_most(args.batch_size, MAX_BATCH_SIZE, "--batch-size")
    at_most(args.steps, MAX_STEPS, "--steps")
    at_most(args.epochs, MAX_EPOCHS, "--epochs")
    if args.epochs is not None and args.n > 0 and args.batch_size > 0:
        steps = math.ceil(args.epochs * args.n / args.batch_size)
        if steps > MAX_STEPS:
            raise PrivacyError(f"--epochs {args.epochs:g} is {steps:,} steps, over dptune's limit of {MAX_STEPS:,} steps")


def _json_number(value: Any) -> Any:
    """Strict JSON has no Infinity: an infinite epsilon (sigma = 0) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _run_epsilon(args: argparse.Namespace) -> int:
    from dptune import privacy
    from dptune.errors import PrivacyError

    # dp_accounting logs (via absl) when it skips an RDP order whose series does not
    # converge; the result stays a valid bound, so keep such notices out of the output.
    logging.getLogger("absl").setLevel(logging.ERROR)

    _check_epsilon_sizes(args)
    microbatches = args.microbatches
    if microbatches is not None and not 1 <= microbatches <= args.batch_size:
        raise PrivacyError(
            f"--microbatches must be between 1 and the batch size ({args.batch_size}), got {microbatches}"
        )
    microbatched = microbatches is not None and microbatches < args.batch_size
    delta_is_default = args.delta is None
    report = privacy.compute_epsilon(
        args.n,
        args.batch_size,
        args.noise_multiplier,
        epochs=args.epochs,
        steps=args.steps,
        delta=args.delta,  # None: privacy.default_delta(N)
        microbatched=microbatched,
    )
    warning = " ".join(delta_warnings(report.delta, report.n)) or None
    if args.json:
        out = report.to_dict()
        out["delta_is_default"] = delta_is_default
        out["num_microbatches"] = microbatches if microbatches is not None else args.batch_size
        out["delta_warning"] = warning
        out = {key: _json_number(value) for key, value in out.items()}
        print(json.dumps(out, allow_nan=False))
    else:
        print(_epsilon_statement(report, microbatches, delta_is_default, warning))
    return EXIT_OK


def _format_epsilon(value: float | None) -> str:
    return "not computed" if value is None else format_epsilon(value, 4)


def _epsilon_statement(report: Any, microbatches: int | None, delta_is_default: bool, warning: str | None) -> str:
    """A plain-text statement in the spirit of TF Privacy's compute_dp_sgd_privacy_statement."""
    length = f"{report.epochs:g} epochs = {report.steps} steps" if report.epochs is not None else f"{report.steps} steps"
    clipping = (
        f"{microbatches} microbatches per step"
        if report.microbatched
        else "per-example clipping (each example its own microbatch)"
    )
    delta_text = f"{report.delta:.4g}" + (" (the default, 1/N^1.1)" if delta_is_default else "")
    order = f"{report.rdp_order:g}" if report.rdp_order is not None else "-"
    lines = [
        f"DP-SGD over N = {report.n} examples with expected batch size B = {report.batch_size} "
        f"(Poisson sampling rate q = {report.sampling_rate:.6g}), noise multiplier "
        f"sigma = {report.noise_multiplier:g}, {length}, {clipping}.",
        "",
        f"Example-level DP, add-or-remove-one adjacency, delta = {delta_text}:",
        f"    epsilon (RDP accounting, optimal order {order}): {_format_epsilon(report.epsilon_rdp)}",
        f"    epsilon (PLD accounting):                  {_format_epsilon(report.epsilon_pld)}",
        "",
        "This guarantee covers the release of every intermediate model (all checkpoints),",
        "not only the final one.",
    ]
    if report.microbatched:
        lines += [
            "",
            f"Microbatching ({microbatches} microbatches < batch size {report.batch_size}): one "
            "example can change a microbatch's clipped gradient by up to 2C, so the sensitivity "
            f"doubles and the accountant charges noise multiplier sigma/2 = "
            f"{report.charged_noise_multiplier:g}. Per-example clipping (--microbatches "
            f"{report.batch_size}) would charge sigma.",
        ]
    if report.noise_multiplier == 0:
        lines += ["", "sigma = 0 adds no noise: there is no privacy guarantee."]
    if warning:
        lines += ["", warning]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# dptune tune / worker / export / train (the search; arguments and handlers in
# dptune.cli.search_commands and dptune.study.worker)
# --------------------------------------------------------------------------------------------


class SearchCommand(NamedTuple):
    """One search subcommand: its help, description, argument adder and handler (the handlers
    import TensorFlow and Optuna only when the command runs)."""

    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handle: Callable[[argparse.Namespace], int]


SEARCH_COMMANDS = {
    "tune": SearchCommand(
        "run a search headless (recipe, budgeted or pareto) from a search YAML",
        "Create (or resume) an Optuna study from a search YAML and run its trials, with a progress bar.",
        search_commands.add_tune_arguments, search_commands.handle_tune,
    ),
    "worker": SearchCommand(
        "run queued trials of a study (start several, on one or many machines)",
        "Take trials from a study's queue until none is left; heartbeats let a killed worker's "
        "trial be failed and re-queued.",
        search_commands.add_worker_arguments, search_commands.handle_worker,
    ),
    "export": SearchCommand(
        "write a trial (default: the best within the target epsilon) as run YAML",
        "Export a trial's config, epsilon, metrics and the search's cost as YAML for `dptune train`.",
        search_commands.add_export_arguments, search_commands.handle_export,
    ),
    "train": SearchCommand(
        "train the run a YAML describes; print its metrics and epsilon",
        "Reproduce an exported run: same data (by fingerprint), model, config and seed; same epsilon.",
        search_commands.add_train_arguments, search_commands.handle_train,
    ),
}


def _search_command_adder(name: str, command: SearchCommand) -> Callable[[argparse._SubParsersAction], None]:
    def add(subparsers: argparse._SubParsersAction) -> None:
        parser = subparsers.add_parser(name, help=command.help, description=command.description)
        command.add_arguments(parser)
        parser.set_defaults(handler=command.handle)

    return add


# --------------------------------------------------------------------------------------------
# The parser and main()
# --------------------------------------------------------------------------------------------

# One adder per subcommand; `tune`, `worker`, `export`, `train` are added here the same way.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_epsilon_parser,
    *(_search_command_adder(name, command) for name, command in SEARCH_COMMANDS.items()),
    add_profile_parser,
    add_audit_parser,
    add_collab_parser,
    add_federate_parser,
    add_register_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """The `dptune` argument parser with every registered subcommand."""
    parser = _ArgumentParser(
        prog="dptune",
        description="Tune differentially private SGD: accountant, search, workers, export, gradient-norm profile.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `dptune` with `argv` (default sys.argv[1:]); return the exit code.

    0: success; 2: bad arguments or a DPTuneError (message on stderr as `error: ...`).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except _UsageError as exc:
        sys.stderr.write(exc.usage)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help / --version exit through argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        print("error: a command is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args))
    except DPTuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # what the machine or a storage refused: one line, no traceback
        message = environment_error_message(exc)
        if message is None or os.environ.get(TRACEBACK_ENV):
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE


TRACEBACK_ENV = "DPTUNE_TRACEBACK"
"""Set (to anything) to get the traceback of an error `main` would print as one `error:` line."""


def environment_error_message(exc: BaseException) -> str | None:
    """One short line for an error the environment caused rather than dptune's code: a file
    system refusal (read-only or full disk, a missing folder), memory exhausted, input nested
    too deeply, or a study storage that cannot be reached or read (a bad URL, a corrupt
    SQLite file, a missing database driver). None for anything else (a bug: traceback)."""
    module = type(exc).__module__ or ""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 300 else text[:299] + "…"
    if isinstance(exc, ImportError) and _raised_in(exc, "sqlalchemy"):
        return (f"the storage URL needs a database driver that is not installed ({exc.name or text}); "
                "install it, or use sqlite:///path/studies.db")
    if module.startswith("sqlalchemy") or module.startswith("optuna.exceptions"):
        first = text.split(" [SQL:")[0].split(" (Background on this error")[0]
        return f"cannot use the study storage: {first}"
    if isinstance(exc, OSError):
        return _file_system_message(exc, text)
    if isinstance(exc, MemoryError):
        return "out of memory: the input asks for more memory than this machine has; use smaller sizes"
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to read"
    return None


def _file_system_message(exc: OSError, text: str) -> str:
    name = exc.filename
    if name is None:
        return f"the file system refused: {exc.strerror or text}"
    if exc.errno == errno.EEXIST and os.path.exists(name) and not os.path.isdir(name):
        return f"{name} is a file, not a folder: choose another path"
    if exc.errno == errno.ENOTDIR:
        return f"a part of {name} is a file, not a folder: choose another path"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {name} ({exc.strerror}): choose a folder you can write to (e.g. --workspace)"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device writing {name}: free some space or choose another folder"
    return f"the file system refused {name}: {exc.strerror or text}"


def _raised_in(exc: BaseException, package: str) -> bool:
    """True when a frame of `exc`'s traceback is in `package`."""
    traceback = exc.__traceback__
    while traceback is not None:
        if f"{os.sep}{package}{os.sep}" in traceback.tb_frame.f_code.co_filename:
            return True
        traceback = traceback.tb_next
    return False


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
