"""dptune's paths for `benchmarks/bench_peers.py` (runs in the project's own environment).

The steps are built as `benchmarks/bench_dpsgd.py` builds them, from dptune's engine: the seed
CNN (`build_model(ModelSpec("seed_cnn"))`), SGD with learning rate 0.25, one CPU thread, XLA as
dptune sets it for the device (`jit_compile_default`):
  nonprivate_train_on_batch   Keras 3 `train_on_batch` on B rows drawn without replacement;
  nonprivate_custom_step      a tf.function step (tape gradient, `optimizer.apply`, the batch
                              gathered in the graph as dptune does); the driver takes the
                              faster of the two as dptune's non-private step;
  dp_poisson                  `DPSGDStep` with per-example clipping (m = B) and Poisson
                              sampling (rate B/N), sampling included: dptune's default;
  dp_fixed_batch              the same on fixed batches of exactly B rows (`shuffle`).
Each call is one step; the loss is read back, so the step's work is done when it returns.
"""

from __future__ import annotations

from _protocol import redirect_stdout_to_stderr, serve, single_thread_environment, worker_arguments

single_thread_environment()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dptune import __version__ as dptune_version  # noqa: E402
from dptune.engine.dpsgd import DPSGDStep, jit_compile_default, make_optimizer  # noqa: E402
from dptune.engine.models import build_model, parameter_count  # noqa: E402
from dptune.engine.sampling import make_sampler  # noqa: E402
from dptune.spec.config import DPSGDConfig, ModelSpec  # noqa: E402

LEARNING_RATE = 0.25
SEED_CNN = ModelSpec("seed_cnn")


def nonprivate_steps(x: np.ndarray, y: np.ndarray, batch: int, jit_compile: bool) -> dict:
    """Keras 3's own `train_on_batch` and a custom tf.function step, both plain SGD."""
    rng = np.random.default_rng(0)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = build_model(SEED_CNN, x.shape[1:], 10, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss=loss_fn, jit_compile=jit_compile)

    def train_on_batch():
        idx = rng.choice(len(x), batch, replace=False)
        model.train_on_batch(x[idx], y[idx])

    custom = build_model(SEED_CNN, x.shape[1:], 10, seed=0)
    optimizer = keras.optimizers.SGD(LEARNING_RATE)
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

    return {"nonprivate_train_on_batch": train_on_batch, "nonprivate_custom_step": custom_step}


def dp_step(x: np.ndarray, y: np.ndarray, args, sampling: str, jit_compile: bool):
    """dptune's gradient path for the model and its DP-SGD step, per-example clipping (m = B),
    with `sampling`'s batches."""
    config = DPSGDConfig(
        l2_norm_clip=args.clip, noise_multiplier=args.sigma, num_microbatches=args.batch, batch_size=args.batch,
        learning_rate=LEARNING_RATE, sampling=sampling,
    )
    model = build_model(SEED_CNN, x.shape[1:], 10, seed=0)
    step_fn = DPSGDStep(model, make_optimizer(config), config, tf.constant(x), tf.constant(y), 1, jit_compile)
    sampler = make_sampler(sampling, len(x), args.batch, config.num_microbatches, np.random.default_rng(0))
    counter = iter(range(10**9))
    return step_fn.gradient_path, lambda: float(step_fn.run(sampler.next_step(), next(counter))[0])


def main() -> None:
    args = worker_arguments(__doc__)
    redirect_stdout_to_stderr()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    x = rng.random((args.n, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.n).astype(np.int32)
    xla = jit_compile_default()
    paths = nonprivate_steps(x, y, args.batch, xla)
    gradient_path, paths["dp_poisson"] = dp_step(x, y, args, "poisson", xla)
    _, paths["dp_fixed_batch"] = dp_step(x, y, args, "shuffle", xla)
    info = {
        "framework": f"dptune {dptune_version}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
                     f"XLA {'on' if xla else 'off'}, {gradient_path} per-example gradients",
        "parameters": parameter_count(build_model(SEED_CNN, x.shape[1:], 10, seed=0)),
    }
    serve(paths, info, args.warmup)


if __name__ == "__main__":
    main()
