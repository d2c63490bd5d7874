"""TF Privacy's paths for `benchmarks/bench_peers.py` (runs in its own environment: TF Privacy
0.9.0 on TensorFlow 2.15 / Keras 2, see tfp-requirements.txt).

The seed CNN rebuilt in Keras 2 (same layers, same parameter count as dptune's), SGD with
learning rate 0.25, one CPU thread, fixed batches of exactly B rows drawn without replacement
(TF Privacy's Keras API has no Poisson sampling), one `train_on_batch` per step:
  nonprivate_train_on_batch[_xla]  plain `keras.Sequential`, XLA off / on (the driver takes
                                   the faster as TF Privacy's non-private step);
  dpsequential_xla, dpsequential   `DPSequential` (per-example gradients by `tf.vectorized_map`,
                                   m = B), its default `use_xla=True`, and off. Its fast
                                   ("ghost") clipping needs every trainable layer in the layer
                                   registry, which has no Conv2D in 0.9.0, so it is not used;
  vectorized_dp_keras_sgd          `VectorizedDPKerasSGDOptimizer` with m = B (per-example
                                   Jacobian by pfor) on a plain `Sequential`.
"""

from __future__ import annotations

from _protocol import redirect_stdout_to_stderr, serve, single_thread_environment, worker_arguments

single_thread_environment()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_privacy  # noqa: E402
from tensorflow_privacy import DPSequential, VectorizedDPKerasSGDOptimizer  # noqa: E402

LEARNING_RATE = 0.25


def seed_cnn_layers() -> list:
    """dptune's seed CNN (TF Privacy's MNIST tutorial CNN with ReLU), layer for layer."""
    layers = tf.keras.layers
    return [
        tf.keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(16, 8, strides=2, padding="same", activation="relu"),
        layers.MaxPool2D(2, 1),
        layers.Conv2D(32, 4, strides=2, padding="valid", activation="relu"),
        layers.MaxPool2D(2, 1),
        layers.Flatten(),
        layers.Dense(32, activation="relu"),
        layers.Dense(10),
    ]


def batch_step(model: tf.keras.Model, x: np.ndarray, y: np.ndarray, batch: int):
    """One `train_on_batch` on B rows drawn without replacement (the loss comes back as a
    number, so the step's work is done when the call returns)."""
    rng = np.random.default_rng(0)

    def step():
        idx = rng.choice(len(x), batch, replace=False)
        model.train_on_batch(x[idx], y[idx])

    return step


def main() -> None:
    args = worker_arguments(__doc__)
    redirect_stdout_to_stderr()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.random((args.n, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.n).astype(np.int32)
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def plain(jit_compile: bool) -> tf.keras.Model:
        model = tf.keras.Sequential(seed_cnn_layers())
        model.compile(optimizer=tf.keras.optimizers.SGD(LEARNING_RATE), loss=loss, jit_compile=jit_compile)
        return model

    def dp_sequential(use_xla: bool) -> tf.keras.Model:
        model = DPSequential(l2_norm_clip=args.clip, noise_multiplier=args.sigma, use_xla=use_xla,
                             layers=seed_cnn_layers())
        model.compile(optimizer=tf.keras.optimizers.SGD(LEARNING_RATE), loss=loss)
        return model

    dp_optimizer_model = tf.keras.Sequential(seed_cnn_layers())
    dp_optimizer_model.compile(
        optimizer=VectorizedDPKerasSGDOptimizer(
            l2_norm_clip=args.clip, noise_multiplier=args.sigma, num_microbatches=args.batch,
            learning_rate=LEARNING_RATE,
        ),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=tf.losses.Reduction.NONE),
    )
    models = {
        "nonprivate_train_on_batch": plain(False),
        "nonprivate_train_on_batch_xla": plain(True),
        "dpsequential_xla": dp_sequential(True),
        "dpsequential": dp_sequential(False),
        "vectorized_dp_keras_sgd": dp_optimizer_model,
    }
    info = {
        "framework": f"TF Privacy {tensorflow_privacy.__version__}, TensorFlow {tf.__version__}, "
                     f"Keras {keras.__version__}",
        "parameters": models["nonprivate_train_on_batch"].count_params(),
    }
    serve({name: batch_step(model, x, y, args.batch) for name, model in models.items()}, info, args.warmup)


if __name__ == "__main__":
    main()
