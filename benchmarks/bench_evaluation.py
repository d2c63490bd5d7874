"""What DP does to people, measured in one run: per-trial cost of the fairness and membership
metrics, the disparate impact per ε, membership inference with and without DP, and the one-run
audit of the engine against a broken engine.

1. overhead: seconds of dptune.engine.evaluate.evaluate_trial (fairness + both attacks) over a
   trial's training seconds, on the built-in digits and breast_cancer, for short and typical
   configs of the default search space (MLP [64]); median over `--repeats` trials.
2. disparate impact: no built-in dataset has a sensitive attribute, so the script adds one to
   the built-in synthetic data: a minority group (`--minority` share of the rows, drawn at
   random) whose 20 features are seen through a fixed random rotation (same labels, different
   look, like an under-represented subpopulation). Per ε in (1, 3, 8) (C = 1), σ = 0 with the
   same clipping, and non-private (σ = 0, no clipping), MLP [64], B = 256, 10 epochs:
   validation accuracy, worst-group accuracy, accuracy difference, demographic parity,
   equal opportunity and equalized odds differences; mean over `--repeats` runs.
3. membership inference: an overfitted non-private MLP on random labels against a DP one at
   ε < 1 (AUC, advantage, TPR at FPR 1 %, ε lower bound of each attack).
4. one-run audit (white-box, 1,000 canaries): the engine against the same engine with clipping off.

    python benchmarks/bench_evaluation.py [--repeats 3] [--minority 0.1] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from dptune import privacy  # noqa: E402
from dptune.data import builtin_dataset  # noqa: E402
from dptune.data.dataset import Dataset  # noqa: E402
from dptune.engine.dpsgd import train  # noqa: E402
from dptune.engine.evaluate import evaluate_trial  # noqa: E402
from dptune.engine.one_run_audit import CanaryStep, one_run_audit  # noqa: E402
from dptune.spec.config import DPSGDConfig, ModelSpec  # noqa: E402

MLP = ModelSpec(kind="mlp", hidden_units=(64,))
EPSILONS = (1.0, 3.0, 8.0)


def overhead(repeats: int) -> list[dict]:
    rows = []
    for name in ("digits", "breast_cancer"):
        dataset = builtin_dataset(name)
        for batch_size, epochs in ((256, 1), (64, 5)):
            config = DPSGDConfig(l2_norm_clip=1.0, noise_multiplier=1.0, num_microbatches=batch_size,
                                 batch_size=batch_size, epochs=epochs, learning_rate=0.5)
            train_seconds, evaluation_seconds = [], []
            for _ in range(repeats + 1):  # the first pays one-off warm-up: left out
                result = train(dataset, MLP, config)
                evaluation = evaluate_trial(result.model, dataset, delta=result.delta)
                train_seconds.append(result.train_seconds)
                evaluation_seconds.append(evaluation.seconds)
            train_median = statistics.median(train_seconds[1:])
            evaluation_median = statistics.median(evaluation_seconds[1:])
            rows.append({"dataset": name, "batch_size": batch_size, "epochs": epochs,
                         "train_seconds": train_median, "evaluation_seconds": evaluation_median,
                         "overhead_percent": 100 * evaluation_median / train_median,
                         "first_evaluation_seconds": evaluation_seconds[0]})
    return rows


def grouped_synthetic(minority: float, seed: int = 0) -> Dataset:
    """The built-in synthetic data with a `minority` share of rows in group "minority", whose
    features are rotated by a fixed random orthogonal matrix (the built-in's minority_share)."""
    return builtin_dataset("synthetic", seed=seed, n_examples=10_000, n_features=20, minority_share=minority)


def disparate_impact(repeats: int, minority: float) -> list[dict]:
    dataset = grouped_synthetic(minority)
    delta = privacy.default_delta(dataset.n_train)
    batch_size, epochs = 256, 10
    steps = privacy.num_steps(dataset.n_train, batch_size, epochs)
    settings = [(f"epsilon {epsilon:g}", privacy.calibrate_noise(
        privacy.DPSGDRun(dataset.n_train, batch_size, 1.0, steps), epsilon, delta), 1.0, 0.5) for epsilon in EPSILONS]
    settings += [("sigma 0, clipped at C = 1 (no privacy)", 0.0, 1.0, 0.5),
                 ("non-private (sigma 0, C = 1000: no clipping)", 0.0, 1000.0, 0.1)]
    rows = []
    for label, sigma, clip, learning_rate in settings:
        config = DPSGDConfig(l2_norm_clip=clip, noise_multiplier=sigma, num_microbatches=batch_size,
                             batch_size=batch_size, epochs=epochs, learning_rate=learning_rate)
        runs = []
        for _ in range(repeats):
            result = train(dataset, MLP, config, delta=delta)
            fairness = evaluate_trial(result.model, dataset, delta=delta).fairness
            groups = {g.group: g for g in fairness.groups}
            runs.append({"val_accuracy": result.val_accuracy,
                         "majority_accuracy": groups["majority"].accuracy,
                         "minority_accuracy": groups["minority"].accuracy,
                         "worst_group_accuracy": fairness.worst_group_accuracy,
                         "accuracy_difference": fairness.accuracy_difference,
                         "demographic_parity_difference": fairness.demographic_parity_difference,
                         "equal_opportunity_difference": fairness.equal_opportunity_difference,
                         "equalized_odds_difference": fairness.equalized_odds_difference})
        mean = {key: statistics.mean(run[key] for run in runs) for key in runs[0]}
        rows.append({"setting": label, "sigma": sigma, "minority_rows_val": groups["minority"].size,
                     "majority_rows_val": groups["majority"].size, **mean})
    return rows


def membership() -> list[dict]:
    rng = np.random.default_rng(0)
    n = 300
    dataset = Dataset(name="random labels", x_train=rng.normal(size=(n, 20)), y_train=rng.integers(0, 2, n),
                      x_val=rng.normal(size=(n, 20)), y_val=rng.integers(0, 2, n), class_names=("a", "b"))
    model = ModelSpec(kind="mlp", hidden_units=(256,))
    configs = {
        "non-private, overfitted (sigma 0, Adam, 80 epochs)": DPSGDConfig(
            l2_norm_clip=100.0, noise_multiplier=0.0, num_microbatches=50, batch_size=50, epochs=80,
            learning_rate=0.01, optimizer="adam"),
        "DP (sigma 10, 5 epochs)": DPSGDConfig(l2_norm_clip=1.0, noise_multiplier=10.0, num_microbatches=50,
                                               batch_size=50, epochs=5, learning_rate=0.5),
    }
    rows = []
    for label, config in configs.items():
        result = train(dataset, model, config, delta=1e-5)
        report = evaluate_trial(result.model, dataset, delta=1e-5, rng=np.random.default_rng(1)).membership
        for attack in report.attacks:
            rows.append({"model": label, "epsilon": result.epsilon_rdp, "attack": attack.attack, "auc": attack.auc,
                         "advantage": attack.advantage, "tpr_at_fpr_1pct": attack.tpr_at_fpr_1pct,
                         "epsilon_lower_bound": attack.epsilon_lower_bound})
    return rows


class UnclippedCanaryStep(CanaryStep):
    """Clipping off (rows and canaries), noise and accountant unchanged: a broken engine."""

    def clip_weights(self, squared_norms, mask):
        return mask


def audit() -> list[dict]:
    dataset = builtin_dataset("synthetic", n_examples=2000, n_features=20)
    config = DPSGDConfig(l2_norm_clip=1.0, noise_multiplier=2.0, num_microbatches=100, batch_size=100, epochs=2,
                         learning_rate=0.5)
    rows = []
    for label, factory in (("engine", None), ("clipping off (broken)", UnclippedCanaryStep)):
        report = one_run_audit(dataset, MLP, config, canaries=1000, mode="white_box", delta=1e-5,
                               step_factory=factory)
        rows.append({"variant": label, "accountant_epsilon": report.epsilon_rdp,
                     "lower_bound": report.audit.epsilon_lower_bound, "correct": report.audit.correct,
                     "guesses": report.audit.guesses})
    return rows


def _table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    for row in rows:
        print("  " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minority", type=float, default=0.1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {"overhead": overhead(args.repeats), "disparate_impact": disparate_impact(args.repeats, args.minority),
               "membership": membership(), "audit": audit()}
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for title, rows in results.items():
        _table(title, rows)


if __name__ == "__main__":
    main()
