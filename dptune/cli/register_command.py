"""`dptune register FILE`: prepare a data file headless, with the Data page's options and
messages, store it in the workspace by fingerprint and print what a search YAML needs.

    dptune register patients.csv --label outcome --sensitive sex [--test test.csv] [--workspace DIR]

Prints the preparation report (shown to the data owner only: ε does not cover it) and the
`dataset:` block to paste into a search YAML; `dptune tune` and its workers then find the
data by fingerprint. Nothing is written when the file is refused.
"""

from __future__ import annotations

import argparse

import yaml

from dptune.workspace import DEFAULT_WORKSPACE


def add_register_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare `dptune register` and its arguments; the handler is `handle_register`."""
    parser = subparsers.add_parser(
        "register",
        help="prepare a CSV/TSV, Parquet, NPZ or image ZIP and store it in the workspace for `dptune tune`",
        description=("Read, validate and prepare a data file exactly as the Data page does (the same options "
                     "and messages), store it in the workspace by its fingerprint and print the preparation "
                     "report and the dataset block of a search YAML."),
    )
    parser.add_argument("file", help="the data file (CSV/TSV/TXT, Parquet, NPZ, or a ZIP of images)")
    parser.add_argument("--label", default=None, help="table column holding the class (default: a column named "
                                                      "label/target/class/y)")
    parser.add_argument("--sensitive", default=None, help="column (NPZ: array) kept aside for fairness metrics")
    parser.add_argument("--drop", action="append", default=[], metavar="COLUMN",
                        help="a column to leave out (an identifier, a leak); repeat for several")
    parser.add_argument("--test", default=None, metavar="FILE", help="a separate validation file (same format)")
    parser.add_argument("--no-header", action="store_true", help="the table's first row is data, not names")
    parser.add_argument("--validation-fraction", type=float, default=0.2,
                        help="share of rows kept for validation when there is no --test file (default 0.2)")
    parser.add_argument("--workspace", default=str(DEFAULT_WORKSPACE), help="where to store it (default ./dptune-data)")
    parser.set_defaults(handler=handle_register)


def handle_register(args: argparse.Namespace) -> int:
    """Prepare and store the file; print the report and the YAML block."""
    from dptune.data import load_dataset  # pandas, pyarrow: only when the command runs, as dptune.cli.main asks

    prepared = load_dataset(
        args.file, label_column=args.label, sensitive_column=args.sensitive, drop_columns=tuple(args.drop),
        header=False if args.no_header else None, test_source=args.test,
        validation_fraction=args.validation_fraction,
    )
    dataset = prepared.dataset
    path = dataset.save(args.workspace)
    for line in prepared.report.summary():
        print(line)
    print(f"stored as {path} (fingerprint {dataset.fingerprint})")
    print("search YAML:")
    block = {"dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint, "n_train": dataset.n_train},
             "workspace": args.workspace}
    print(yaml.safe_dump(block, sort_keys=False, allow_unicode=True).rstrip())
    return 0
