"""What each search mode reaches on sklearn digits at ε = 3, against random search.

For every search (the three modes, and random search over the same space as budgeted and
as pareto) and every seed: run `--trials` trials, then report
  - the best validation accuracy among completed trials within ε = 3 (per trial; recipe:
    with its clip-norm cost) after the whole trial budget, and
  - the same among trials that had finished `--seconds` seconds after the search began
    (a wall-time budget),
averaged over seeds, with the ratio to random search over the same space, the trials
finished by the time budget, and the ε of the search itself (composition over all its
trials; infinite for the recipe, whose baseline is not private). Measured in one run.

    python benchmarks/bench_search.py [--trials 12] [--seconds 20] [--seeds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import tempfile
import time
from datetime import timedelta

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from dptune.data import builtin_dataset  # noqa: E402
from dptune.spec.search import SearchSpec  # noqa: E402
from dptune.study.results import best_trial_within, search_cost  # noqa: E402
from dptune.study.search import tune  # noqa: E402
from dptune.workspace import Workspace  # noqa: E402

TARGET = 3.0
MODEL = {"kind": "mlp", "hidden_units": [64]}
SPACE = {
    "l2_norm_clip": [0.1, 10.0],
    "learning_rate": [0.02, 2.0],
    "batch_size": [32, 256],
    "epochs": [1, 8],
    "num_microbatches": [8, 32, "per_example"],
}


def searches(trials: int) -> dict[str, dict]:
    """name -> search spec values (without workspace/storage/seed)."""
    pareto_space = {**SPACE, "noise_multiplier": [0.5, 5.0]}
    recipe_noise = max(2, trials - 2)  # + 1 baseline + 1 verification = the same trial budget
    return {
        "budgeted (TPE + median pruner)": {"mode": "budgeted", "ranges": SPACE, "n_trials": trials,
                                           "pruner": {"kind": "median", "n_startup_trials": 3, "n_warmup_steps": 1}},
        "random, budgeted space": {"mode": "budgeted", "ranges": SPACE, "n_trials": trials, "sampler": "random",
                                   "pruner": "none"},
        "pareto (multi-objective TPE)": {"mode": "pareto", "ranges": pareto_space, "n_trials": trials},
        "random, pareto space": {"mode": "pareto", "ranges": pareto_space, "n_trials": trials, "sampler": "random"},
        "recipe (private C, m=1 search, scaled)": {
            "mode": "recipe", "n_trials": recipe_noise,
            "ranges": {"noise_multiplier": [0.002, 0.2], "learning_rate": SPACE["learning_rate"]},
            "recipe": {"batch_size": 128, "epochs": 6, "clip_epsilon": 0.1, "tolerance": 0.05,
                       "baseline_trials": 1, "verify_trials": 1},
        },
    }


BASELINES = {
    "budgeted (TPE + median pruner)": "random, budgeted space",
    "pareto (multi-objective TPE)": "random, pareto space",
    "recipe (private C, m=1 search, scaled)": "random, budgeted space",
}


def best_within(study: optuna.Study, until=None) -> float | None:
    """Best val accuracy of COMPLETE trials within TARGET (finished by `until` if given)."""
    best = None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if until is not None and trial.datetime_complete > until:
            continue
        epsilon = trial.user_attrs.get("epsilon_total", trial.user_attrs.get("epsilon_rdp"))
        accuracy = trial.user_attrs.get("val_accuracy")
        if epsilon is None or accuracy is None or epsilon > TARGET * (1 + 1e-9):
            continue
        best = accuracy if best is None else max(best, accuracy)
    return best


def run_one(name: str, values: dict, seed: int, seconds: float, dataset, root: str) -> dict:
    spec = SearchSpec.from_dict({
        **values, "dataset": {"builtin": "digits"}, "model": MODEL, "target_epsilon": TARGET,
        "workspace": root, "storage": Workspace.at(root).storage_url, "sampler_seed": seed,
        "study_name": f"{values['mode']}-{abs(hash(name)) % 10**6}-{seed}", "fixed": {"seed": seed},
    })
    started = time.time()
    outcome = tune(spec, dataset=dataset, progress=False)
    elapsed = time.time() - started
    study = outcome.study
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    begin = min(starts)
    # the clip-norm profile of the recipe runs before its first trial: count it in the time budget
    begin -= timedelta(seconds=max(0.0, elapsed - (max(t.datetime_complete for t in study.get_trials(deepcopy=False)
                                                          if t.datetime_complete) - begin).total_seconds()))
    until = begin + timedelta(seconds=seconds)
    finished_by = sum(1 for t in study.get_trials(deepcopy=False) if t.datetime_complete and t.datetime_complete <= until)
    cost = search_cost(study)
    best = best_trial_within(study)
    return {
        "best_accuracy": best_within(study),
        "best_accuracy_at_time": best_within(study, until),
        "trials": len(study.trials),
        "trials_by_time": finished_by,
        "pruned": len(study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))),
        "seconds": elapsed,
        "search_epsilon": cost["naive_composition_epsilon"] if cost["naive_composition_finite"] else math.inf,
        "best_trial": None if best is None else best.number,
        "recipe_status": (study.user_attrs.get("recipe") or {}).get("status"),
    }


def mean_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default=None, help="run only searches whose name contains this")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    dataset = builtin_dataset("digits")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as root:
        for name, values in searches(args.trials).items():
            if args.only and args.only not in name:
                continue
            runs = [run_one(name, values, seed, args.seconds, dataset, root) for seed in range(args.seeds)]
            results[name] = {
                "best_accuracy": mean_or_none([r["best_accuracy"] for r in runs]),
                "found": sum(r["best_accuracy"] is not None for r in runs),
                "best_accuracy_at_time": mean_or_none([r["best_accuracy_at_time"] for r in runs]),
                "trials": statistics.fmean(r["trials"] for r in runs),
                "trials_by_time": statistics.fmean(r["trials_by_time"] for r in runs),
                "pruned": statistics.fmean(r["pruned"] for r in runs),
                "seconds": statistics.fmean(r["seconds"] for r in runs),
                "search_epsilon": statistics.fmean(r["search_epsilon"] for r in runs),
                "runs": runs,
            }
            statuses = [r["recipe_status"] for r in runs if r["recipe_status"]]
            print(f"done: {name} ({results[name]['seconds']:.0f} s per search)"
                  + (f"; recipe ended: {', '.join(statuses)}" if statuses else ""), flush=True)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return
    print()
    print(f"sklearn digits (N = {dataset.n_train}), MLP {MODEL['hidden_units']}, target ε = {TARGET}, "
          f"{args.trials} trials, time budget {args.seconds:g} s, mean over {args.seeds} seed(s), "
          f"device {_device()}")
    header = (f"{'search':42s} {'found':>5s} {'acc@trials':>10s} {'vs random':>9s} {'acc@time':>9s} {'vs random':>9s} "
              f"{'done@time':>9s} {'pruned':>6s} {'s/search':>8s} {'search ε':>9s}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        base = results.get(BASELINES.get(name, ""))
        print(f"{name:42s} {r['found']:>2d}/{args.seeds:<2d} {_f(r['best_accuracy']):>10s} {_ratio(r, base, 'best_accuracy'):>9s} "
              f"{_f(r['best_accuracy_at_time']):>9s} {_ratio(r, base, 'best_accuracy_at_time'):>9s} "
              f"{r['trials_by_time']:>9.1f} {r['pruned']:>6.1f} {r['seconds']:>8.0f} "
              f"{'inf' if math.isinf(r['search_epsilon']) else format(r['search_epsilon'], '.2f'):>9s}")
    print("found: seeds whose search produced a trial within ε = 3; acc: best validation accuracy among completed "
          "trials with per-trial ε <= 3 (recipe: with the clip-norm cost), mean over those seeds; vs random: ratio to "
          "random search over the same space (recipe: the budgeted space); done@time: trials finished within the "
          "time budget; search ε: composition over all trials of the search (what releasing every trial costs).")


def _device() -> str:
    from dptune.engine.dpsgd import device_name

    return device_name()


def _f(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _ratio(row: dict, base: dict | None, key: str) -> str:
    if base is None or row[key] is None or not base.get(key):
        return "-"
    return f"{row[key] / base[key]:.3f}"


if __name__ == "__main__":
    main()
