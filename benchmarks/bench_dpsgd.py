"""Seconds per step of DP-SGD against non-private Keras 3 training, measured in one run.

The seed CNN (TF Privacy's MNIST tutorial) on 28x28x1 data, batch 250, C=1.5, sigma=1.3:
  (a) non-private Keras 3 with SGD, the fastest of `train_on_batch` and a custom
      tf.function step, each with XLA on and off;
  (b) dptune per-example clipping (m=250), (c) m=25, (d) m=1, Poisson sampling as in
      training (padded chunks of B + 2 standard deviations of rows);
each the median over timed steps after compilation, and its ratio to (a). Both XLA
settings of dptune are measured; the ratio uses dptune's default setting for the device.

    python benchmarks/bench_dpsgd.py [--steps 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dptune.engine.dpsgd import JIT_COMPILE_DEFAULT, DPSGDStep, make_optimizer  # noqa: E402
from dptune.engine.models import build_model  # noqa: E402
from dptune.engine.runtime import device_name  # noqa: E402
from dptune.engine.sampling import make_sampler  # noqa: E402
from dptune.spec.config import DPSGDConfig, ModelSpec  # noqa: E402

BATCH, CLIP, SIGMA, N = 250, 1.5, 1.3, 10_000


def _median_seconds(run_step, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        run_step()
    times = []
    for _ in range(steps):
        tic = time.perf_counter()
        run_step()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def interleaved_medians(settings: dict, rounds: int, warmup: int = 3) -> dict:
    """Median seconds per call of each setting, timing one call of each in turn per round,
    so that load from other processes on a shared machine hits every setting alike."""
    for run_step in settings.values():
        for _ in range(warmup):
            run_step()
    times = {name: [] for name in settings}
    for _ in range(rounds):
        for name, run_step in settings.items():
            tic = time.perf_counter()
            run_step()
            times[name].append(time.perf_counter() - tic)
    return {name: statistics.median(values) for name, values in times.items()}


def keras_steps(x, y, jit_compile: bool) -> dict:
    """Non-private Keras 3 steps: Keras's own `train_on_batch`, and a custom step
    (tf.function: tape gradient + optimizer.apply, batch gathered on the device as dptune does)."""
    rng = np.random.default_rng(0)
    model = build_model(ModelSpec("seed_cnn"), x.shape[1:], 10, seed=0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.25), loss=loss_fn, jit_compile=jit_compile)

    def keras_step():
        idx = rng.choice(len(x), BATCH, replace=False)
        model.train_on_batch(x[idx], y[idx])

    custom = build_model(ModelSpec("seed_cnn"), x.shape[1:], 10, seed=0)
    optimizer = keras.optimizers.SGD(0.25)
    optimizer.build(custom.trainable_variables)
    x_all, y_all = tf.constant(x), tf.constant(y)

    @tf.function(jit_compile=jit_compile)
    def train_step(indices):
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.gather(y_all, indices), custom(tf.gather(x_all, indices), training=True))
        optimizer.apply(tape.gradient(loss, custom.trainable_variables), custom.trainable_variables)
        return loss

    def custom_step():
        float(train_step(rng.choice(len(x), BATCH, replace=False).astype(np.int32)))

    return {"train_on_batch": keras_step, "custom_step": custom_step}


def dp_step(x, y, microbatches: int, jit_compile: bool):
    config = DPSGDConfig(
        l2_norm_clip=CLIP, noise_multiplier=SIGMA, num_microbatches=microbatches, batch_size=BATCH,
        learning_rate=0.25,
    )
    model = build_model(ModelSpec("seed_cnn"), x.shape[1:], 10, seed=0)
    step_fn = DPSGDStep(model, make_optimizer(config), config, tf.constant(x), tf.constant(y), 1, jit_compile)
    sampler = make_sampler("poisson", len(x), BATCH, microbatches, np.random.default_rng(0))
    counter = iter(range(10**9))
    return lambda: step_fn.run(sampler.next_step(), next(counter))


DP_SETTINGS = (("per_example", BATCH), ("microbatches_25", 25), ("microbatches_1", 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed rounds (default 40)")
    parser.add_argument("--xla-steps", type=int, default=3, help="timed steps with XLA on (default 3: slow on CPUs)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.random((N, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, N).astype(np.int32)
    print(f"device: {device_name()}; seed CNN, batch {BATCH}, C={CLIP}, sigma={SIGMA}; "
          f"median of {args.steps} interleaved rounds")

    xla = JIT_COMPILE_DEFAULT
    settings = {f"keras_{name}": step for name, step in keras_steps(x, y, xla).items()}
    settings.update({name: dp_step(x, y, m, xla) for name, m in DP_SETTINGS})
    medians = interleaved_medians(settings, args.steps)
    other = {f"keras_{name}": _median_seconds(step, args.xla_steps, 1) for name, step in keras_steps(x, y, not xla).items()}
    other.update({name: _median_seconds(dp_step(x, y, m, not xla), args.xla_steps, 1) for name, m in DP_SETTINGS})

    baseline_name = min(("keras_train_on_batch", "keras_custom_step"), key=medians.get)
    baseline = medians[baseline_name]
    rows = {"nonprivate": {"seconds_per_step": baseline, "ratio": 1.0, "setting": baseline_name}}
    rows.update({name: {"seconds_per_step": medians[name], "ratio": medians[name] / baseline} for name, _ in DP_SETTINGS})
    print(f"{'setting':<24}{'s/step':>11}{'ratio':>8}   XLA {'off' if xla else 'on'} (other setting)")
    for name in settings:
        ratio = medians[name] / baseline
        print(f"{name:<24}{medians[name] * 1e3:>8.2f} ms{ratio:>8.2f}   {other[name] * 1e3:>8.2f} ms")
    print(f"(a) non-private = the faster Keras step ({baseline_name}); XLA {'on' if xla else 'off'} is dptune's default")
    if args.json:
        print(json.dumps({"device": device_name(), **rows}))


if __name__ == "__main__":
    main()
