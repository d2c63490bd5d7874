"""`dptune profile`: the exact per-example gradient norms of a model's initial weights on a
dataset stored in the workspace, written into the workspace (registered in dptune.cli.main).

The dashboard's Clip norm page runs this command in a subprocess, so TensorFlow never runs
in the Streamlit process; the page then releases the norms' histogram with Laplace noise
(`dptune.privacy.clip_quantile.private_clip_norm`). The norms themselves are private data,
like the dataset: the file is kept inside the workspace and nothing here prints them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dptune.data.dataset import Dataset
from dptune.errors import ConfigError
from dptune.spec.config import ModelSpec
from dptune.workspace import DEFAULT_WORKSPACE, Workspace, write_once

MAX_MODEL_JSON_CHARS = 100_000
"""Longest `--model` JSON accepted (characters); a model spec is a few dozen."""


def add_profile_parser(subparsers: argparse._SubParsersAction) -> None:
    """Declare `dptune profile` and its arguments; the handler is `handle_profile`."""
    parser = subparsers.add_parser(
        "profile",
        help="write the per-example gradient norms of a model's initial weights (private; stays in the workspace)",
        description=(
            "Compute the L2 norm of every training example's loss gradient (over all trainable parameters) "
            "under the model's initial weights (public seed 0), in row order, and save them as a .npy file "
            "in the workspace. The norms are exact and private: release them only through a DP mechanism "
            "(the dashboard's noisy histogram). An existing file is reused."
        ),
    )
    parser.add_argument("--dataset", required=True, metavar="FINGERPRINT",
                        help="SHA-256 fingerprint of a dataset stored in the workspace as <fingerprint>.npz")
    parser.add_argument("--workspace", default=str(DEFAULT_WORKSPACE), metavar="DIR",
                        help=f"the workspace folder (default: {DEFAULT_WORKSPACE})")
    parser.add_argument("--model", required=True, metavar="JSON",
                        help='the model spec as JSON, e.g. \'{"kind": "mlp", "hidden_units": [64]}\'')
    parser.add_argument("--output", metavar="FILE",
                        help="where to write the norms, inside the workspace "
                             "(default: <workspace>/profiles/<fingerprint>-<model key>.npy)")
    parser.set_defaults(handler=handle_profile)


def handle_profile(args: argparse.Namespace) -> int:
    """Write the norms once (atomically) and print where they are; never print the norms."""
    workspace = Workspace.at(args.workspace)
    model = _model_spec(args.model)
    if args.output is None:
        output = workspace.profile_path(args.dataset, model.to_dict())
    else:
        output = _inside(workspace, args.output)
    if output.exists():
        print(f"reusing the gradient-norm profile {output}")
        return 0
    dataset = Dataset.load(args.dataset, workspace.root)
    from dptune.engine.profile import gradient_norm_profile  # TensorFlow: only once the inputs are known good

    norms = gradient_norm_profile(dataset, model)
    write_once(output, lambda handle: np.save(handle, norms))
    print(f"wrote the gradient norms of {len(norms):,} training examples to {output} "
          "(exact and private: keep the file in the workspace)")
    return 0


def _model_spec(text: str) -> ModelSpec:
    """The ModelSpec of `--model` (a JSON object of ModelSpec's keys)."""
    if len(text) > MAX_MODEL_JSON_CHARS:
        raise ConfigError(f"--model is {len(text):,} characters long, over dptune's limit of {MAX_MODEL_JSON_CHARS:,}")
    try:
        values = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ConfigError(f"--model must be a JSON object of model keys, e.g. '{{\"kind\": \"logreg\"}}': "
                          f"{str(error)[:200]}") from None
    return ModelSpec.from_dict(values)


def _inside(workspace: Workspace, output: str) -> Path:
    """`output` as an absolute path, refused outside the workspace (the norms are private data)."""
    path = Path(output).expanduser().resolve()
    if not path.is_relative_to(workspace.root):
        raise ConfigError(f"--output {output!r} is outside the workspace {workspace.root}; the exact gradient norms "
                          "are private data and stay in the workspace (leave --output out for the default)")
    return path
