"""Shokri & Shmatikov's headline table (issue 13, item 6), measured in one run.

For one dataset and model: standalone (each participant alone, mean and worst), DSSGD at
θu ∈ {1, 0.1, 0.01} (θd = 1, largest |Δw|, round robin) and centralized accuracy, for three
privacy options of the participants: none; local DP-SGD (σ calibrated so that every
participant's own run is within --target-epsilon at δ = 1e-5; clip, batch and learning rate
--dp-clip, --dp-batch, --dp-learning-rate, e.g. from `dptune collab --search`; the uploads are
post-processing); and the paper's Laplace/sparse-vector upload with a total budget of
--target-epsilon per participant (γ = --gamma). Standalone is plain SGD, as in the paper: a
participant alone releases nothing, so it needs no noise. Prints one table; asserts nothing.

    python benchmarks/collaborative_table.py                      # built-in digits, 5 participants, 10 rounds
    python benchmarks/collaborative_table.py --mnist-sized        # 60,000 synthetic 28x28 images (10 classes), 10 participants
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dptune.data import builtin_dataset  # noqa: E402
from dptune.engine.collaborative import make_shards, run_baselines, run_collaborative  # noqa: E402
from dptune.privacy.collaborative import calibrate_participants  # noqa: E402
from dptune.privacy.statement import format_epsilon  # noqa: E402
from dptune.spec.collaborative import CollaborativeConfig, CollaborativePrivacy  # noqa: E402
from dptune.spec.config import ModelSpec  # noqa: E402

THETAS = (1.0, 0.1, 0.01)
DELTA = 1e-5


def _privacy_options(config: CollaborativeConfig, sizes: tuple[int, ...], args: argparse.Namespace):
    target, gamma = args.target_epsilon, args.gamma
    dp = CollaborativePrivacy("dp_sgd", noise_multiplier=1.0, l2_norm_clip=args.dp_clip, batch_size=args.dp_batch)
    private = config.replace(privacy=dp, learning_rate=args.dp_learning_rate or config.learning_rate)
    sigma = calibrate_participants(private, sizes, target, DELTA)
    return [
        ("none", config),
        (f"local DP-SGD (sigma {sigma:.3g})", private.replace(privacy=dataclasses.replace(dp, noise_multiplier=sigma))),
        (f"Laplace/SVT (gamma {gamma:g})", config.replace(selection="random_above_threshold", privacy=CollaborativePrivacy(
            "laplace_svt", epsilon=target, gamma=gamma))),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-sized", action="store_true", help="60,000 synthetic 28x28x1 images of 10 classes, 10 participants")
    parser.add_argument("--participants", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--target-epsilon", type=float, default=8.0, help="each participant's epsilon (private rows)")
    parser.add_argument("--gamma", type=float, default=0.01, help="laplace_svt's clip bound of an uploaded value")
    parser.add_argument("--dp-batch", type=int, default=256, help="local DP-SGD's expected batch size")
    parser.add_argument("--dp-clip", type=float, default=1.0, help="local DP-SGD's clip norm")
    parser.add_argument("--dp-learning-rate", type=float, default=None, help="local DP-SGD's (default --learning-rate)")
    args = parser.parse_args()
    if args.mnist_sized:
        dataset = builtin_dataset("synthetic", n_examples=60_000, n_classes=10, image_shape=(28, 28, 1))
        participants = args.participants or 10
    else:
        dataset = builtin_dataset("digits")
        participants = args.participants or 5
    model = ModelSpec(kind="mlp", hidden_units=(64,))
    config = CollaborativeConfig(participants=participants, rounds=args.rounds, learning_rate=args.learning_rate)
    shards = make_shards(dataset, config)
    started = time.perf_counter()
    baselines = run_baselines(dataset, model, config, shards=shards)
    standalone = baselines.standalone_accuracies
    print(f"{dataset.name}: {dataset.n_train} training rows, {participants} iid participants (shards "
          f"{min(shards.sizes)}-{max(shards.sizes)} rows), MLP [64], {args.rounds} rounds x 1 local epoch, lr "
          f"{args.learning_rate:g}; validation rows {len(dataset.y_val)}; private rows: epsilon "
          f"{args.target_epsilon:g} per participant, delta {DELTA:g} (DP-SGD)")
    print(f"{'setting':<46}{'accuracy':>10}{'worst participant epsilon':>28}{'seconds':>10}")
    print(f"{'standalone (mean / worst), no sharing':<46}{sum(standalone) / len(standalone):>10.4f}"
          f"{'- (shares nothing)':>28}{baselines.standalone_seconds:>10.1f}   worst {min(standalone):.4f}")
    print(f"{'centralized (all rows pooled), no privacy':<46}{baselines.centralized_accuracy:>10.4f}"
          f"{'∞ (no privacy)':>28}{baselines.centralized_seconds:>10.1f}")
    for label, private in _privacy_options(config, shards.sizes, args):
        for theta in THETAS:
            result = run_collaborative(dataset, model, private.replace(theta_upload=theta), shards=shards,
                                       delta=DELTA if private.privacy.kind == "dp_sgd" else None)
            print(f"{f'DSSGD theta_u {theta:g}, {label}':<46}{result.global_accuracy:>10.4f}"
                  f"{format_epsilon(result.worst_epsilon):>28}{result.seconds:>10.1f}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
