"""Seconds per step of DP-SGD against non-private Keras 3 training, measured in one run.

The seed CNN (TF Privacy's MNIST tutorial) on 28x28x1 data, batch 250, C=1.5, sigma=1.3:
  (a) non-private Keras 3 with SGD, the fastest of `train_on_batch` and a custom
      tf.function step, each with XLA on and off;
  (b) dptune per-example clipping (m=250), (c) m=25, (d) m=1, Poisson sampling as in
      training (a padded chunk of B + 3 standard deviations of rows);
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

from dptune.config import DPSGDConfig, ModelSpec  # noqa: E402
from dptune.dpsgd import DPSGDStep, default_jit_compile, device_name, make_optimizer  # noqa: E402
from dptune.models import build_model  # noqa: E402
from dptune.sampling import make_sampler  # noqa: E402

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


def nonprivate_seconds(x, y, jit_compile: bool, steps: int) -> float:
    """The faster of Keras's own `train_on_batch` and a custom Keras 3 step (tf.function:
    tape gradient + optimizer.apply, batch gathered on the device, as dptune does)."""
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

    return min(_median_seconds(keras_step, steps), _median_seconds(custom_step, steps))


def dp_seconds(x, y, microbatches: int, jit_compile: bool, steps: int) -> float:
    config = DPSGDConfig(
        l2_norm_clip=CLIP, noise_multiplier=SIGMA, num_microbatches=microbatches, batch_size=BATCH,
        learning_rate=0.25,
    )
    model = build_model(ModelSpec("seed_cnn"), x.shape[1:], 10, seed=0)
    step_fn = DPSGDStep(model, make_optimizer(config), config, tf.constant(x), tf.constant(y), 1, jit_compile)
    sampler = make_sampler("poisson", len(x), BATCH, microbatches, np.random.default_rng(0))
    counter = iter(range(10**9))
    return _median_seconds(lambda: step_fn.run(sampler.next_step(), next(counter)), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per setting (default 40)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.random((N, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, N).astype(np.int32)
    print(f"device: {device_name()}; seed CNN, batch {BATCH}, C={CLIP}, sigma={SIGMA}; median of {args.steps} steps")

    nonprivate = {xla: nonprivate_seconds(x, y, xla, args.steps) for xla in (False, True)}
    baseline = min(nonprivate.values())
    default_xla = default_jit_compile()
    rows = {"nonprivate": {"seconds_per_step": baseline, "ratio": 1.0,
                           "xla_off": nonprivate[False], "xla_on": nonprivate[True]}}
    for name, microbatches in (("per_example", BATCH), ("microbatches_25", 25), ("microbatches_1", 1)):
        measured = {xla: dp_seconds(x, y, microbatches, xla, args.steps) for xla in (False, True)}
        rows[name] = {
            "seconds_per_step": measured[default_xla],
            "ratio": measured[default_xla] / baseline,
            "xla_off": measured[False],
            "xla_on": measured[True],
        }

    print(f"{'setting':<18}{'s/step (default)':>18}{'ratio':>8}{'XLA off':>10}{'XLA on':>10}")
    for name, row in rows.items():
        print(f"{name:<18}{row['seconds_per_step'] * 1e3:>15.2f} ms{row['ratio']:>8.2f}"
              f"{row['xla_off'] * 1e3:>7.2f} ms{row['xla_on'] * 1e3:>7.2f} ms")
    print(f"(a) non-private uses the faster XLA setting; dptune's default here: XLA {'on' if default_xla else 'off'}")
    if args.json:
        print(json.dumps({"device": device_name(), **rows}))


if __name__ == "__main__":
    main()
