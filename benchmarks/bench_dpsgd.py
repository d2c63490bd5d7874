"""Seconds per step of DP-SGD against non-private Keras 3 training, measured in one run.

The seed CNN (TF Privacy's MNIST tutorial) on 28x28x1 data (N = 10,000), batch B (default
250), C=1.5, sigma=1.3 (or, with `--model saved_cifar_cnn`, a user's 4-conv CIFAR-shaped
Sequential on 32x32x3 data, saved with `model.save` and loaded as `kind: keras_file` exactly
as a user's file is, which must get the layerwise path; (e) adds that model on the generic
`tf.vectorized_map` path, what it got before the path was detected from the model's graph;
or, with `--model mlp`, dptune's MLP with hidden layers of 128 and 64 units on 784 features,
what a tabular upload gets):
  (a) non-private Keras 3 with SGD, the fastest of `train_on_batch` and a custom
      tf.function step, each with XLA on and off;
  (b) dptune per-example clipping (m=B) with Poisson sampling as in training (each step's
      chunk computed at the smallest traced size that holds its sample), (b') the same with
      fixed batches of exactly B rows (`shuffle`), (c) m=25, (d) m=1, both Poisson;
each the median over interleaved timed steps after compilation, and its ratio to (a). Both
XLA settings are measured (`--xla-steps 0` skips the other one); the ratio uses dptune's
default setting for the device (`jit_compile_default`). On a CPU, dptune's Conv2D layers use
its compiled per-example kernel (dptune.engine.native_ops) where a C++ compiler is;
`--tensorflow-ops` measures TensorFlow's own ops instead (a machine without a compiler).

    python benchmarks/bench_dpsgd.py [--batch-size 250] [--steps 40] [--model seed_cnn|saved_cifar_cnn]
                                     [--tensorflow-ops] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dptune.engine import native_ops  # noqa: E402
from dptune.engine.dpsgd import DPSGDStep, jit_compile_default, make_optimizer  # noqa: E402
from dptune.engine.models import build_model, parameter_count  # noqa: E402
from dptune.engine.runtime import device_name  # noqa: E402
from dptune.engine.sampling import make_sampler  # noqa: E402
from dptune.spec.config import DPSGDConfig, ModelSpec  # noqa: E402

CLIP, SIGMA, N = 1.5, 1.3, 10_000
INPUT_SHAPES = {"seed_cnn": (28, 28, 1), "saved_cifar_cnn": (32, 32, 3), "mlp": (784,)}


def saved_cifar_cnn(folder: Path) -> ModelSpec:
    """A user's CIFAR-shaped Sequential (4 conv layers, 2 max-pools, 2 dense; ~0.6M parameters)
    saved with `model.save` in `folder`, referenced as dptune's `keras_file` model kind."""
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        layers.Conv2D(32, 3, padding="same", activation="relu"), layers.Conv2D(32, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(), layers.Conv2D(64, 3, padding="same", activation="relu"),
        layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(), layers.Flatten(),
        layers.Dense(128, activation="relu"), layers.Dense(10),
    ])
    path = folder / "cifar_cnn.keras"
    model.save(path)
    return ModelSpec(kind="keras_file", path=str(path))


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


def keras_steps(x, y, batch: int, jit_compile: bool, spec: ModelSpec) -> dict:
    """Non-private Keras 3 steps: Keras's own `train_on_batch`, and a custom step
    (tf.function: tape gradient + optimizer.apply, batch gathered on the device as dptune does)."""
    rng = np.random.default_rng(0)
    model = build_model(spec, x.shape[1:], 10, seed=0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=keras.optimizers.SGD(0.25), loss=loss_fn, jit_compile=jit_compile)

    def keras_step():
        idx = rng.choice(len(x), batch, replace=False)
        model.train_on_batch(x[idx], y[idx])

    custom = build_model(spec, x.shape[1:], 10, seed=0)
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
        float(train_step(rng.choice(len(x), batch, replace=False).astype(np.int32)))

    return {"train_on_batch": keras_step, "custom_step": custom_step}


def dp_step(x, y, batch: int, microbatches: int | None, sampling: str, jit_compile: bool, spec: ModelSpec,
            layerwise: bool | None = None, clip: float = CLIP, sigma: float = SIGMA):
    """One dptune step per call (sampling included, as in training); microbatches None: m = B;
    layerwise None: dptune's own choice of gradient path, which the returned callable carries
    as `.gradient_path`. The loss is read back every call, so that the timing covers the
    device work."""
    config = DPSGDConfig(
        l2_norm_clip=clip, noise_multiplier=sigma, num_microbatches=microbatches or batch, batch_size=batch,
        learning_rate=0.25, sampling=sampling,
    )
    model = build_model(spec, x.shape[1:], 10, seed=0)
    step_fn = DPSGDStep(model, make_optimizer(config), config, tf.constant(x), tf.constant(y), 1, jit_compile,
                        layerwise=layerwise)
    sampler = make_sampler(sampling, len(x), batch, config.num_microbatches, np.random.default_rng(0))
    counter = iter(range(10**9))

    def run_step() -> None:
        float(step_fn.run(sampler.next_step(), next(counter))[0])

    run_step.gradient_path = step_fn.gradient_path
    return run_step


DP_SETTINGS = (
    ("per_example", None, "poisson"),
    ("per_example_fixed_batch", None, "shuffle"),
    ("microbatches_25", 25, "poisson"),
    ("microbatches_1", 1, "poisson"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=250, help="B, expected examples per step (default 250)")
    parser.add_argument("--steps", type=int, default=40, help="timed rounds (default 40)")
    parser.add_argument("--xla-steps", type=int, default=3,
                        help="timed steps with the other XLA setting (default 3: slow on CPUs; 0 skips it)")
    parser.add_argument("--model", choices=sorted(INPUT_SHAPES), default="seed_cnn",
                        help="seed_cnn (default), saved_cifar_cnn (a user's saved .keras model) or mlp")
    parser.add_argument("--tensorflow-ops", action="store_true",
                        help="TensorFlow's ops for Conv2D per-example gradients, not dptune's compiled kernel")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args()
    if args.tensorflow_ops:
        os.environ["DPTUNE_NATIVE_OPS"] = "0"  # read when the first step is traced

    rng = np.random.default_rng(0)
    x = rng.random((N, *INPUT_SHAPES[args.model]), dtype=np.float32)
    y = rng.integers(0, 10, N).astype(np.int32)
    batch = args.batch_size
    folder = tempfile.TemporaryDirectory()
    spec = {"seed_cnn": lambda: ModelSpec("seed_cnn"), "mlp": lambda: ModelSpec("mlp", hidden_units=(128, 64)),
            "saved_cifar_cnn": lambda: saved_cifar_cnn(Path(folder.name))}[args.model]()
    print(f"device: {device_name()}; {args.model} ({parameter_count(build_model(spec, x.shape[1:], 10)):,} "
          f"parameters), N {N}, batch {batch}, C={CLIP}, sigma={SIGMA}; median of {args.steps} interleaved rounds; "
          f"load average {os.getloadavg()[0]:.2f}")

    xla = jit_compile_default()
    dp_settings = DP_SETTINGS + ((("per_example_generic_path", None, "poisson"),) if args.model == "saved_cifar_cnn" else ())
    settings = {f"keras_{name}": step for name, step in keras_steps(x, y, batch, xla, spec).items()}
    settings.update({name: dp_step(x, y, batch, m, sampling, xla, spec,
                                   layerwise=False if name == "per_example_generic_path" else None)
                     for name, m, sampling in dp_settings})
    medians = interleaved_medians(settings, args.steps)
    other = dict.fromkeys(settings, float("nan"))
    if args.xla_steps:
        other.update({f"keras_{name}": _median_seconds(step, args.xla_steps, 1)
                      for name, step in keras_steps(x, y, batch, not xla, spec).items()})
        other.update({name: _median_seconds(dp_step(x, y, batch, m, sampling, not xla, spec), args.xla_steps, 1)
                      for name, m, sampling in DP_SETTINGS})

    baseline_name = min(("keras_train_on_batch", "keras_custom_step"), key=medians.get)
    baseline = medians[baseline_name]
    rows = {"nonprivate": {"seconds_per_step": baseline, "ratio": 1.0, "setting": baseline_name}}
    rows.update({name: {"seconds_per_step": medians[name], "ratio": medians[name] / baseline}
                 for name, _, _ in dp_settings})
    print(f"{'setting':<24}{'s/step':>11}{'ratio':>8}   XLA {'off' if xla else 'on'} (other setting)")
    for name in settings:
        ratio = medians[name] / baseline
        print(f"{name:<24}{medians[name] * 1e3:>8.2f} ms{ratio:>8.2f}   {other[name] * 1e3:>8.2f} ms")
    print(f"(a) non-private = the faster Keras step ({baseline_name}); XLA {'on' if xla else 'off'} is dptune's default")
    kernel = native_ops.unavailable_reason() or "in use"
    print(f"gradient path dptune chose for per-example clipping: {settings['per_example'].gradient_path}; "
          f"compiled Conv2D kernel: {kernel}; load average after {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps({"device": device_name(), "compiled_conv_kernel": kernel, **rows}))


if __name__ == "__main__":
    main()
