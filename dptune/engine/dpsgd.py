"""The DP-SGD trainer: exactly the step of ../shared/DESIGN.md, traced once per run.

One step, with C = l2_norm_clip, σ = noise_multiplier, m = num_microbatches, B = batch_size:
  sample (Poisson rate B/N, or TF Privacy's fixed shuffled batches), assign each sampled
  example to one of m microbatches uniformly at random (m = B: every example on its own),
  g_j = mean per-example loss gradient of microbatch j (0 if empty), clip each g_j to
  norm ≤ C over all trainable parameters jointly, add one draw of N(0, σ²C²·I) to the sum,
  divide by m (fixed), apply the optimizer.
"""

from __future__ import annotations

import math
import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import keras
import numpy as np
import tensorflow as tf

from dptune import privacy
from dptune.data.dataset import Dataset
from dptune.engine.models import build_model
from dptune.engine.per_example import (
    chunk_gradients,
    clip_weights,
    microbatch_clip_weights,
    per_example_losses,
    squared_norms_of_sums,
    summed_gradients,
    supports_layerwise,
)
from dptune.engine.runtime import device_name
from dptune.engine.sampling import make_sampler, poisson_chunk_sizes
from dptune.errors import TrainingError
from dptune.spec.config import DPSGDConfig, ModelSpec

EVAL_BATCH = 1024


@dataclass(frozen=True)
class EpochMetrics:
    """What the trainer reports after each epoch (ε is RDP at the run's δ, after this epoch).

    seconds_per_step: wall-clock seconds of the epoch's steps (sampling and the update
    included, evaluation excluded) divided by their number, the losses being read from the
    device once at the epoch's end; the run's first step of each kind (one chunk, several
    chunks), which traces the step functions, is timed apart and left out.
    examples_per_second: B / seconds_per_step."""

    epoch: int
    step: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    epsilon: float
    seconds_per_step: float
    examples_per_second: float
    elapsed_seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    config: DPSGDConfig
    model_spec: ModelSpec
    dataset_name: str
    dataset_fingerprint: str
    n_train: int
    delta: float
    history: tuple[EpochMetrics, ...]
    val_accuracy: float
    val_loss: float
    epsilon_rdp: float
    epsilon_pld: float
    rdp_order: float
    steps: int
    seconds_per_step: float
    examples_per_second: float
    train_seconds: float
    device: str
    gradient_path: str
    stopped_early: bool
    model: keras.Model = field(repr=False, compare=False)

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k not in ("model", "config", "model_spec", "history")}
        out["config"] = self.config.to_dict()
        out["model_spec"] = self.model_spec.to_dict()
        out["history"] = [h.to_dict() for h in self.history]
        return out


JIT_COMPILE_BY_DEVICE = {"CPU": False, "GPU": False}
"""Whether `train` compiles the DP step with XLA, per kind of device (`jit_compile_default`).
CPU: off, measured: XLA made the seed CNN's per-example DP step 14x (B = 64) to 800x
(B = 250) slower on this project's 2-core CPU, 2026-11-25 (benchmarks/bench_dpsgd.py
measures both settings in its last column). GPU: off until
bench_dpsgd has been run on one (no GPU was available to measure it); set it from that run."""


def jit_compile_default(device: str | None = None) -> bool:
    """XLA on or off for the DP step on `device` (a `runtime.device_name()`; default: the
    device TensorFlow trains on here), from `JIT_COMPILE_BY_DEVICE`."""
    device = device_name() if device is None else device
    return JIT_COMPILE_BY_DEVICE["GPU" if device.startswith("GPU") else "CPU"]


def make_optimizer(config: DPSGDConfig) -> keras.optimizers.Optimizer:
    if config.optimizer == "adam":
        return keras.optimizers.Adam(config.learning_rate)
    momentum = config.momentum if config.optimizer == "momentum" else 0.0
    return keras.optimizers.SGD(config.learning_rate, momentum=momentum)


class DPSGDStep:
    """Compiled DP-SGD step functions for one model, optimizer and config.

    `run(chunks, step)` performs one step over the chunks of one sample (usually one) and
    returns (sum of the sampled examples' losses before the update, as a scalar tensor left on
    the device; number of sampled examples), so that a step does not wait for the device.
    """

    def __init__(self, model: keras.Model, optimizer, config: DPSGDConfig, x_train, y_train,
                 noise_key: int, jit_compile: bool, layerwise: bool | None = None):
        self.model, self.optimizer, self.config = model, optimizer, config
        self.x_train, self.y_train = x_train, y_train
        self.layerwise = supports_layerwise(model) if layerwise is None else layerwise
        self.variables = model.trainable_variables
        self.noise_key = tf.constant(noise_key, tf.int64)
        optimizer.build(self.variables)
        self.chunk_sizes = (
            poisson_chunk_sizes(int(x_train.shape[0]), config.batch_size) if config.sampling == "poisson" else ()
        )
        # Chunks have static shapes, one function per row count, all traced at the first step
        # (`_traced`): a dynamic batch dimension made the per-example kernels 30% slower on a
        # CPU. A Poisson chunk is computed at the smallest of `chunk_sizes` that holds its
        # sampled rows (`rows_to_compute`), chosen on the host.
        self._compute = tf.function(self._chunk_statistics, jit_compile=jit_compile)
        self._finish = tf.function(self._noise_and_apply, jit_compile=jit_compile)
        self._fused = tf.function(
            lambda idx, mask, mb, step: self._noise_and_apply(self._chunk_statistics(idx, mask, mb, True), step),
            jit_compile=jit_compile,
        )
        self._concrete: dict[tuple[str, int], Callable] = {}

    @property
    def gradient_path(self) -> str:
        return "layerwise" if self.layerwise else "generic"

    def _sizes_up_to(self, rows: int) -> list[int]:
        """The row counts a chunk of `rows` rows can be computed at: `chunk_sizes` below it, and rows."""
        return [s for s in self.chunk_sizes if s < rows] + [rows]

    def rows_to_compute(self, chunk) -> int:
        """The smallest of `_sizes_up_to(len(chunk))` that holds every row with mask ≠ 0: the
        rows after it are padding, which contributes exactly nothing, so the chunk's first
        rows give the whole chunk's result and a step costs about the rows it sampled."""
        sampled = np.flatnonzero(chunk.mask)
        used = int(sampled[-1]) + 1 if len(sampled) else 0
        return next(size for size in self._sizes_up_to(len(chunk.indices)) if size >= used)

    def _traced(self, name: str, rows: int, size: int) -> Callable:
        """`self._fused` ("fused": one chunk, noise and update) or `self._compute` ("compute":
        one chunk's statistics) as a concrete function for chunks of `size` rows; the first
        call for chunks of `rows` rows traces every size they can be computed at, so no later
        step traces. A concrete function called with tensors also skips tf.function's
        argument matching (~0.15 ms a step on a CPU)."""
        if (name, size) not in self._concrete:
            function = self._fused if name == "fused" else self._compute
            for each in self._sizes_up_to(rows):
                specs = [tf.TensorSpec([each], tf.int32), tf.TensorSpec([each], tf.float32),
                         tf.TensorSpec([each], tf.int32)] + ([tf.TensorSpec([], tf.int64)] if name == "fused" else [])
                self._concrete.setdefault((name, each), function.get_concrete_function(*specs))
        return self._concrete[(name, size)]

    def _chunk_statistics(self, indices, mask, microbatch, whole_step: bool = False):
        """Per-example mode: (Σ_i clipped ∇L_i, loss sum). Microbatch mode: (per-microbatch
        sums of ∇L_i [m, ...], per-microbatch counts [m], loss sum); but where the chunk is the
        whole step's sample and 1 < m < B, (Σ of the clipped terms, loss sum), the
        microbatches' norms coming without their sums where cheaper
        (`microbatch_squared_norms`) and the clipped sum Σ_j w_j Σ_{i in j} ∇L_i as one
        weighted sum over the examples, each weighted by its microbatch's w_j."""
        x = tf.gather(self.x_train, indices)
        y = tf.gather(self.y_train, indices)
        m = self.config.num_microbatches
        if m == 1:
            sums, loss_sum = summed_gradients(self.model, x, y, mask)
            return [g[None] for g in sums], tf.reduce_sum(mask)[None], loss_sum
        grads = chunk_gradients(self.model, x, y, mask, self.layerwise)
        if self.config.per_example:
            weights = self.clip_weights(grads.squared_norms(), mask)
            return grads.weighted_sum(weights), grads.loss_sum
        counts = tf.math.unsorted_segment_sum(mask, microbatch, m)
        if whole_step:
            weights = self.microbatch_clip_weights(grads.microbatch_squared_norms(microbatch, m), counts)
            return grads.weighted_sum(tf.gather(weights, microbatch) * mask), grads.loss_sum
        return grads.microbatch_sums(microbatch, m), counts, grads.loss_sum

    def clip_weights(self, squared_norms, mask):
        """min(1, C/‖g_i‖) for each row of squared norms ‖g_i‖² (0 for padded rows) at this run's C."""
        return clip_weights(squared_norms, self.config.l2_norm_clip, mask)

    def microbatch_clip_weights(self, squared_sum_norms, counts):
        """c_j / n_j of `per_example.microbatch_clip_weights` at this run's C."""
        return microbatch_clip_weights(squared_sum_norms, counts, self.config.l2_norm_clip)

    def _clip_microbatches(self, sums, counts):
        """Σ_j min(1, C/‖g_j‖) g_j."""
        weights = self.microbatch_clip_weights(squared_norms_of_sums(sums), counts)
        return [tf.tensordot(weights, s, axes=1) for s in sums]

    def clipped_sum(self, statistics_):
        """(Σ of the clipped terms per variable, loss sum) of one step's statistics: the sum
        that the Gaussian noise is added to. Statistics of two parts are clipped already
        (per-example mode, or a whole step clipped from its microbatches' norms)."""
        if len(statistics_) == 2:
            return statistics_
        sums, counts, loss_sum = statistics_
        return self._clip_microbatches(sums, counts), loss_sum

    def _noise_and_apply(self, statistics_, step):
        clipped, loss_sum = self.clipped_sum(statistics_)
        sizes = [int(np.prod(v.shape)) for v in self.variables]
        noise = tf.random.stateless_normal(
            [sum(sizes)], seed=tf.stack([self.noise_key, tf.cast(step, tf.int64)]),
            stddev=self.config.noise_multiplier * self.config.l2_norm_clip, alg="philox",
        )
        noisy = [
            (g + tf.reshape(n, v.shape)) / self.config.num_microbatches
            for g, n, v in zip(clipped, tf.split(noise, sizes), self.variables)
        ]
        self.optimizer.apply(noisy, self.variables)
        return loss_sum

    def run(self, chunks, step: int) -> tuple[tf.Tensor, int]:
        count = int(sum(c.mask.sum() for c in chunks))
        step_t = tf.constant(step, tf.int64)
        sized = [(c, self.rows_to_compute(c)) for c in chunks]
        tensors = [(tf.constant(c.indices[:s]), tf.constant(c.mask[:s]), tf.constant(c.microbatch[:s])) for c, s in sized]
        if len(chunks) == 1:
            (c, size), = sized
            return self._traced("fused", len(c.indices), size)(*tensors[0], step_t), count
        parts = [self._traced("compute", len(c.indices), s)(*t) for (c, s), t in zip(sized, tensors)]
        if self.config.per_example:
            total = ([tf.add_n(list(g)) for g in zip(*[p[0] for p in parts])], tf.add_n([p[1] for p in parts]))
        else:
            total = (
                [tf.add_n(list(s)) for s in zip(*[p[0] for p in parts])],
                tf.add_n([p[1] for p in parts]),
                tf.add_n([p[2] for p in parts]),
            )
        return self._finish(total, step_t), count


def _evaluator(model: keras.Model):
    @tf.function(reduce_retracing=True)
    def logits_of(x):
        return model(x, training=False)

    def evaluate(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(mean loss, accuracy) over the given examples."""
        loss_sum, correct = 0.0, 0
        for start in range(0, len(x), EVAL_BATCH):
            logits = logits_of(tf.constant(x[start : start + EVAL_BATCH]))
            labels = y[start : start + EVAL_BATCH]
            loss_sum += float(tf.reduce_sum(per_example_losses(logits, labels)))
            correct += int(np.sum(np.argmax(logits.numpy(), axis=1) == labels))
        return loss_sum / max(len(x), 1), correct / max(len(x), 1)

    return evaluate


def epoch_end_steps(n: int, batch_size: int, epochs: float) -> list[int]:
    """Step count at the end of each (possibly fractional last) epoch: ceil(e·N/B)."""
    total = privacy.num_steps(n, batch_size, epochs)
    return [min(total, math.ceil(e * n / batch_size)) for e in range(1, math.ceil(epochs) + 1)]


def _randomness(config: DPSGDConfig) -> tuple[np.random.Generator, int, int | None]:
    """(sampling generator, noise key, initial-weight seed) of one run.

    Sampling and noise come from 128 fresh bits of the OS's secret generator, so no two runs
    share them and nothing written down recomputes them; `config.seed` fixes only the public
    initial weights. With `config.debug_fixed_noise` both derive from `config.seed` (a run
    repeats bit for bit, and its ε is void because its noise is public)."""
    entropy = config.seed if config.debug_fixed_noise else secrets.randbits(128)
    sampling, noise = np.random.SeedSequence(entropy).spawn(2)
    return (
        np.random.default_rng(sampling),
        int(noise.generate_state(1, np.uint64)[0] >> 1),
        config.seed,
    )


def _run_epoch(step_fn: DPSGDStep, sampler, first: int, last: int, traced: set[bool]) -> tuple[float, float, int]:
    """Steps `first` to `last` - 1; returns (seconds per step, loss sum, sampled examples).

    The losses stay on the device and are read once, at the end, so no step waits for the
    one before it. Seconds per step = wall time of the epoch's steps (sampling included) over
    their number, leaving out the run's first one-chunk step and first overflowing step
    (recorded in `traced`), which trace the step functions: those are timed apart, with a
    read of the device before and after, and left out when other steps remain."""
    losses, seen, untimed_seconds, untimed_steps = [], 0, 0.0, 0
    tic = time.perf_counter()
    for step in range(first, last):
        chunks = sampler.next_step()
        tracing = (len(chunks) > 1) not in traced and last - first - untimed_steps > 1
        if tracing:
            traced.add(len(chunks) > 1)
            start = time.perf_counter()
            losses = [tf.add_n(losses)] if losses else []
            if losses:
                float(losses[0])
        loss, count = step_fn.run(chunks, step)
        losses.append(loss)
        seen += count
        if tracing:
            float(loss)
            untimed_seconds, untimed_steps = untimed_seconds + time.perf_counter() - start, untimed_steps + 1
    loss_sum = float(tf.add_n(losses)) if losses else 0.0
    timed_steps = max(last - first - untimed_steps, 1)
    return (time.perf_counter() - tic - untimed_seconds) / timed_steps, loss_sum, seen


def train(
    dataset: Dataset,
    model_spec: ModelSpec,
    config: DPSGDConfig,
    *,
    delta: float | None = None,
    on_epoch_end: Callable[[EpochMetrics], bool | None] | None = None,
    jit_compile: bool | None = None,
    model: keras.Model | None = None,
    step_factory: Callable[..., DPSGDStep] = DPSGDStep,
) -> TrainResult:
    """Train with DP-SGD and account for it. See the module docstring for the exact step.

    delta: the δ of the reported ε (default 1/N^1.1). on_epoch_end: called with each epoch's
    metrics; return True to stop early; exceptions propagate. model: an already built
    model to train (default: built from model_spec, initial weights fixed by the config's seed).
    step_factory: builds the step from DPSGDStep's arguments (the one-run audit's canary step).
    """
    n = dataset.n_train
    if config.batch_size > n:
        raise TrainingError(f"batch_size {config.batch_size} is larger than the {n} training examples")
    delta = privacy.default_delta(n) if delta is None else delta
    rng, noise_key, init_seed = _randomness(config)
    if model is None:
        model = build_model(model_spec, dataset.input_shape, dataset.num_classes, seed=init_seed)
    jit_compile = jit_compile_default() if jit_compile is None else jit_compile
    step_fn = step_factory(
        model, make_optimizer(config), config, tf.constant(dataset.x_train), tf.constant(dataset.y_train),
        noise_key, jit_compile,
    )
    sampler = make_sampler(config.sampling, n, config.batch_size, config.num_microbatches, rng)
    evaluate = _evaluator(model)
    microbatched = not config.per_example
    history: list[EpochMetrics] = []
    started = time.perf_counter()
    step = 0
    stopped = False
    traced: set[bool] = set()
    for epoch, last_step in enumerate(epoch_end_steps(n, config.batch_size, config.epochs), start=1):
        seconds_per_step, loss_sum, seen = _run_epoch(step_fn, sampler, step, last_step, traced)
        if not math.isfinite(loss_sum):
            raise TrainingError(
                f"the training loss became {loss_sum} in epoch {epoch} (steps {step + 1}-{last_step}); "
                "lower the learning rate or the clip norm"
            )
        step = last_step
        val_loss, val_accuracy = evaluate(dataset.x_val, dataset.y_val)
        epsilon = privacy.compute_epsilon(
            n, config.batch_size, config.noise_multiplier, steps=step, delta=delta, microbatched=microbatched,
            pld=False,
        ).epsilon_rdp
        metrics = EpochMetrics(
            epoch=epoch,
            step=step,
            train_loss=loss_sum / max(seen, 1),
            val_loss=val_loss,
            val_accuracy=val_accuracy,
            epsilon=epsilon,
            seconds_per_step=seconds_per_step,
            examples_per_second=config.batch_size / seconds_per_step,
            elapsed_seconds=time.perf_counter() - started,
        )
        history.append(metrics)
        if on_epoch_end is not None and on_epoch_end(metrics):
            stopped = step < privacy.num_steps(n, config.batch_size, config.epochs)
            break
    final = privacy.compute_epsilon(
        n, config.batch_size, config.noise_multiplier, steps=step, delta=delta, microbatched=microbatched
    )
    seconds_per_step = statistics.median(h.seconds_per_step for h in history)
    return TrainResult(
        config=config,
        model_spec=model_spec,
        dataset_name=dataset.name,
        dataset_fingerprint=dataset.fingerprint,
        n_train=n,
        delta=delta,
        history=tuple(history),
        val_accuracy=history[-1].val_accuracy,
        val_loss=history[-1].val_loss,
        epsilon_rdp=final.epsilon_rdp,
        epsilon_pld=final.epsilon_pld,
        rdp_order=final.rdp_order,
        steps=step,
        seconds_per_step=seconds_per_step,
        examples_per_second=config.batch_size / seconds_per_step,
        train_seconds=time.perf_counter() - started,
        device=device_name(),
        gradient_path=step_fn.gradient_path,
        stopped_early=stopped,
        model=model,
    )


def gradient_norms(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Per-example L2 norms of the loss gradient over all trainable parameters (no clipping,
    no noise: this touches the data and is not private by itself)."""
    layerwise = supports_layerwise(model)

    @tf.function
    def norms_of(xb, yb):
        grads = chunk_gradients(model, xb, yb, tf.ones(tf.shape(yb)[0]), layerwise)
        return tf.sqrt(tf.maximum(grads.squared_norms(), 0.0))

    parts = [
        norms_of(tf.constant(x[s : s + batch_size], tf.float32), tf.constant(y[s : s + batch_size], tf.int32)).numpy()
        for s in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)
