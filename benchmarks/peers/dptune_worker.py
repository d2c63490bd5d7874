"""dptune's paths for `benchmarks/bench_peers.py` (runs in the project's own environment).

The steps are `benchmarks/bench_dpsgd.py`'s own (`keras_steps`, `dp_step`): the seed CNN,
SGD with learning rate 0.25, one CPU thread, XLA as dptune sets it for the device
(`jit_compile_default`):
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

import sys
from pathlib import Path

from _protocol import redirect_stdout_to_stderr, serve, single_thread_environment, worker_arguments

single_thread_environment()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: bench_dpsgd builds the steps

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from bench_dpsgd import dp_step, keras_steps  # noqa: E402

from dptune import __version__ as dptune_version  # noqa: E402
from dptune.engine.dpsgd import jit_compile_default  # noqa: E402
from dptune.engine.models import build_model, parameter_count  # noqa: E402
from dptune.spec.config import ModelSpec  # noqa: E402

SEED_CNN = ModelSpec("seed_cnn")


def main() -> None:
    args = worker_arguments(__doc__)
    redirect_stdout_to_stderr()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    x = rng.random((args.n, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, args.n).astype(np.int32)
    xla = jit_compile_default()
    paths = {f"nonprivate_{name}": step for name, step in keras_steps(x, y, args.batch, xla, SEED_CNN).items()}
    for name, sampling in (("dp_poisson", "poisson"), ("dp_fixed_batch", "shuffle")):
        paths[name] = dp_step(x, y, args.batch, None, sampling, xla, SEED_CNN, clip=args.clip, sigma=args.sigma)
    info = {
        "framework": f"dptune {dptune_version}, TensorFlow {tf.__version__}, Keras {keras.__version__}, "
                     f"XLA {'on' if xla else 'off'}, {paths['dp_poisson'].gradient_path} per-example gradients",
        "parameters": parameter_count(build_model(SEED_CNN, x.shape[1:], 10, seed=0)),
    }
    serve(paths, info, args.warmup)


if __name__ == "__main__":
    main()
