"""Distributed selective SGD against centralized training, measured in one run (issue 13, item 4).

MNIST-sized synthetic data (the built-in synthetic generator: 28x28x1 images, 10 classes,
`--examples` rows), `--participants` iid participants, MLP [64], plain SGD, batch 32,
`--rounds` rounds of one local epoch, θu = 0.1 and θd = 1 (largest |Δw|): wall-clock seconds of
the DSSGD simulation over those of centralized training for the same epochs (same model,
initial weights, learning rate and batch size), and the accuracies of DSSGD, standalone
(mean) and centralized. Prints ratios; asserts nothing.

    python benchmarks/bench_collaborative.py [--examples 60000] [--participants 10] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dptune.data import builtin_dataset  # noqa: E402
from dptune.engine.collaborative import make_shards, run_baselines, run_collaborative  # noqa: E402
from dptune.spec.collaborative import CollaborativeConfig  # noqa: E402
from dptune.spec.config import ModelSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=60_000)
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--theta-upload", type=float, default=0.1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    dataset = builtin_dataset("synthetic", n_examples=args.examples, image_shape=(28, 28, 1))
    model = ModelSpec(kind="mlp", hidden_units=(64,))
    config = CollaborativeConfig(participants=args.participants, rounds=args.rounds, theta_upload=args.theta_upload)
    shards = make_shards(dataset, config)
    baselines = run_baselines(dataset, model, config, shards=shards)
    result = run_collaborative(dataset, model, config, shards=shards)
    out = {
        "n_train": dataset.n_train, "participants": args.participants, "rounds": args.rounds,
        "parameters": result.parameter_count, "theta_upload": args.theta_upload,
        "dssgd_seconds": result.seconds, "centralized_seconds": baselines.centralized_seconds,
        "ratio_dssgd_to_centralized": result.seconds / baselines.centralized_seconds,
        "dssgd_accuracy": result.global_accuracy, "centralized_accuracy": baselines.centralized_accuracy,
        "standalone_mean_accuracy": sum(baselines.standalone_accuracies) / args.participants,
    }
    if args.json:
        print(json.dumps(out))
        return
    for key, value in out.items():
        print(f"{key:28s} {value:.4f}" if isinstance(value, float) else f"{key:28s} {value}")


if __name__ == "__main__":
    main()
