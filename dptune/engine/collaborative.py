"""Distributed selective SGD (DSSGD; Shokri & Shmatikov, CCS 2015), simulated in one process.

A parameter server holds the global parameters as one flat float32 vector of P values (the
model's trainable variables, concatenated in order). In every round each participant, in
round-robin or random order:

1. downloads ceil(θd·P) global values (the ones the server updated most often since its last
   download, or a random subset) and overwrites its local copies;
2. trains its local model for `local_epochs` epochs on its own shard: plain SGD (fixed
   shuffled mini-batches of `batch_size`) or, with privacy dp_sgd, dptune's DP-SGD step
   (`dptune.engine.dpsgd.DPSGDStep`: Poisson sampling q = B/N_i over its own rows, per-example
   clipping, Gaussian noise; one compiled step serves every participant, `SharedDPSGD`);
3. computes Δw = new − old local parameters and uploads at most c = ceil(θu·P) entries: the
   largest |Δw|, or a random subset of those with |Δw| >= τ, or (laplace_svt) the paper's
   private upload (`dptune.privacy.collaborative`: clipped to [-γ, γ], chosen by the sparse
   vector technique, Laplace noise); the server adds them to the global parameters.

Everything over parameters is numpy on the flat vectors (argpartition, masks, fancy
indexing): no Python loop over parameters. One Keras model is shared by all participants;
a participant's parameters are written into it before its local epoch and read back after.

Baselines with the same model, initial weights, learning rate, batch size and epochs:
standalone (each participant alone on its shard for rounds × local_epochs epochs, plain SGD:
it shares nothing, so it needs no noise) and centralized (plain SGD on all training rows).
Accuracy is always on the dataset's common validation rows.

Randomness: the initial weights, the split, the orders and the non-private random choices
come from `config.seed` (public choices); the privacy noise (Laplace, DP-SGD's sampling and
Gaussian noise) comes from the operating system's secret generator, fresh for every run.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from dptune.data.dataset import Dataset
from dptune.data.shards import Shards, split_shards
from dptune.engine.dpsgd import DPSGDStep, make_optimizer
from dptune.engine.models import build_model
from dptune.engine.per_example import per_example_losses
from dptune.engine.sampling import Chunk, ShuffleSampler, make_sampler
from dptune.errors import TrainingError
from dptune.privacy.collaborative import (
    ParticipantPrivacy,
    SvtUploadNoise,
    participant_privacy,
    svt_upload_noise,
    upload_count,
    worst_epsilon,
)
from dptune.privacy.run import num_steps
from dptune.spec.collaborative import CollaborativeConfig
from dptune.spec.config import DPSGDConfig, ModelSpec

EVAL_BATCH = 1024
INDEX_BYTES = 4
"""Bytes of one uploaded index (int32); a value is a float32 (4 bytes)."""


def upload_bytes(uploaded: int, parameter_count: int) -> int:
    """Bytes of one upload of `uploaded` values: sparse (4-byte index + 4-byte value each) or
    dense (4 bytes per parameter), whichever is smaller."""
    return min(uploaded * (INDEX_BYTES + 4), parameter_count * 4)


class FlatModel:
    """One Keras model seen as a flat float32 vector of its P trainable parameters, with a
    plain-SGD local epoch and a validation accuracy."""

    def __init__(self, model: keras.Model, learning_rate: float) -> None:
        self.model = model
        self.variables = list(model.trainable_variables)
        self.sizes = [int(np.prod(v.shape)) for v in self.variables]
        self.offsets = np.cumsum(self.sizes)[:-1]
        self.learning_rate = learning_rate
        self._sgd_step = tf.function(self._sgd_step_graph)
        self._logits = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    @property
    def parameter_count(self) -> int:
        return int(sum(self.sizes))

    def get(self) -> np.ndarray:
        """The parameters as one float32 vector of P values (a copy)."""
        return np.concatenate([v.numpy().ravel() for v in self.variables]).astype(np.float32)

    def set(self, flat: np.ndarray) -> None:
        """Write a vector of P values into the model's variables."""
        for variable, part in zip(self.variables, np.split(flat, self.offsets)):
            variable.assign(part.reshape(variable.shape))

    def _sgd_step_graph(self, x, y, indices):
        xb, yb = tf.gather(x, indices), tf.gather(y, indices)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(per_example_losses(self.model(xb, training=True), yb))
        for variable, gradient in zip(self.variables, tape.gradient(loss, self.variables)):
            variable.assign_sub(self.learning_rate * gradient)
        return loss

    def sgd_steps(self, x: tf.Tensor, y: tf.Tensor, sampler: ShuffleSampler, steps: int) -> float:
        """`steps` plain mini-batch SGD steps on (x, y) with `sampler`'s fixed shuffled batches;
        the last step's mean loss."""
        loss = 0.0
        for _ in range(steps):
            loss = float(self._sgd_step(x, y, tf.constant(sampler.next_step()[0].indices)))
        if not math.isfinite(loss):
            raise TrainingError(f"the local training loss became {loss}; lower the learning rate")
        return loss

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Fraction of (x, y) classified correctly."""
        correct = sum(int(np.sum(np.argmax(self._logits(tf.constant(x[s:s + EVAL_BATCH])).numpy(), axis=1)
                                 == y[s:s + EVAL_BATCH])) for s in range(0, len(x), EVAL_BATCH))
        return correct / max(len(x), 1)

    def evaluate(self, parameters: np.ndarray, dataset: Dataset) -> float:
        """Validation accuracy (fraction of `dataset`'s validation rows) of the P values `parameters`."""
        self.set(parameters)
        return self.accuracy(dataset.x_val, dataset.y_val)


class SharedDPSGD:
    """One compiled DP-SGD step (`DPSGDStep`) over all training rows, shared by every
    participant: each participant's Poisson sampler draws from its own N_i rows only, and its
    chunk indices are mapped to those rows, so the step is traced once per chunk size instead
    of once per participant. The noise key is secret and fresh; a run-wide step counter keeps
    every (key, step) noise draw distinct."""

    def __init__(self, flat: FlatModel, dataset: Dataset, config: CollaborativeConfig) -> None:
        privacy = config.privacy
        self.config = DPSGDConfig(
            l2_norm_clip=float(privacy.l2_norm_clip), noise_multiplier=float(privacy.noise_multiplier),
            num_microbatches=privacy.batch_size, learning_rate=config.learning_rate,
            batch_size=privacy.batch_size, epochs=config.local_epochs, optimizer="sgd", seed=config.seed,
        )
        noise_key = int(np.random.SeedSequence(secrets.randbits(128)).generate_state(1, np.uint64)[0] >> 1)
        self.step_fn = DPSGDStep(flat.model, make_optimizer(self.config), self.config,
                                 tf.constant(dataset.x_train), tf.constant(dataset.y_train), noise_key,
                                 jit_compile=False)
        self.step = 0

    def run(self, rows: np.ndarray, chunks: list[Chunk]) -> None:
        """One DP-SGD step on the sampled chunks of a participant whose shard is `rows`."""
        mapped = [dataclasses.replace(chunk, indices=rows[chunk.indices].astype(np.int32)) for chunk in chunks]
        loss, _count = self.step_fn.run(mapped, self.step)
        self.step += 1
        if not math.isfinite(loss):
            raise TrainingError(f"the local DP-SGD loss became {loss}; lower the learning rate or the clip norm")


PARTICIPANT_STREAM = 3
"""Tag of each participant's public generator, `np.random.default_rng([seed, 3, i])` (1 is the
server's, 2 the baselines'): a participant's public choices never depend on another's, so a
participant in its own process (`dptune.federation`) makes exactly the simulation's choices."""


def participant_rng(config: CollaborativeConfig, participant: int) -> np.random.Generator:
    """Participant `participant`'s public generator: its mini-batch orders and its random upload choices."""
    return np.random.default_rng([config.seed, PARTICIPANT_STREAM, participant])


class Participant:
    """What one DSSGD participant holds and does: its rows, its local parameters (P values),
    its local trainer (plain SGD, or DP-SGD through `shared` with a secret Poisson sampler over
    its own rows) and its upload rule (`select_upload`, with its own secret generator for the
    privacy noise). The simulation holds N of them; a Flower participant process holds one."""

    def __init__(self, flat: FlatModel, dataset: Dataset, rows: np.ndarray, config: CollaborativeConfig,
                 public_rng: np.random.Generator, initial: np.ndarray, shared: SharedDPSGD | None) -> None:
        self.flat, self.rows, self.n, self.shared = flat, rows, len(rows), shared
        self.config, self.public_rng = config, public_rng
        self.secret_rng = np.random.default_rng(secrets.randbits(128))
        self.parameters = initial.copy()
        self.uploads = upload_count(config.theta_upload, len(initial))
        self.noise = (svt_upload_noise(config.privacy.epsilon, config.privacy.gamma, config.rounds, self.uploads)
                      if config.privacy.kind == "laplace_svt" else None)
        if shared is not None:
            batch = config.privacy.batch_size
            self.sampler = make_sampler("poisson", self.n, batch, batch, np.random.default_rng(secrets.randbits(128)))
        else:
            batch = min(config.batch_size, self.n)
            self.sampler = ShuffleSampler(self.n, batch, 1, public_rng)
            self.x, self.y = tf.constant(dataset.x_train[rows]), tf.constant(dataset.y_train[rows])
        self.steps_per_round = num_steps(self.n, batch, config.local_epochs)

    def train_round(self) -> np.ndarray:
        """Train from `self.parameters` for one local round; returns Δw (and keeps the new parameters)."""
        self.flat.set(self.parameters)
        if self.shared is not None:
            for _ in range(self.steps_per_round):
                self.shared.run(self.rows, self.sampler.next_step())
        else:
            self.flat.sgd_steps(self.x, self.y, self.sampler, self.steps_per_round)
        new = self.flat.get()
        update = new - self.parameters
        self.parameters = new
        return update

    def local_round(self, indices: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One local round: overwrite the downloaded parameters (`indices` into the P values,
        `values` the server's), train, and return the upload (indices, values) of at most
        ceil(θu·P) entries of Δw (`select_upload`)."""
        self.parameters[indices] = values
        return select_upload(self.train_round(), self.config, self.uploads, self.public_rng, self.secret_rng,
                             self.noise)


def select_upload(update: np.ndarray, config: CollaborativeConfig, uploads: int, public_rng: np.random.Generator,
                  secret_rng: np.random.Generator, noise: SvtUploadNoise | None) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) a participant uploads from its Δw (`update`, P values): at most
    `uploads` entries, by the config's rule (module docstring); `noise` for laplace_svt."""
    if noise is not None:  # the paper's private upload (dptune.privacy.collaborative)
        clipped = np.clip(update, -noise.gamma, noise.gamma)
        order = secret_rng.permutation(len(update))
        threshold = config.tau + secret_rng.laplace(0.0, noise.threshold_scale)
        above = np.abs(clipped[order]) + secret_rng.laplace(0.0, noise.query_scale, len(update)) >= threshold
        chosen = order[above][:uploads]
        values = np.clip(clipped[chosen] + secret_rng.laplace(0.0, noise.value_scale, len(chosen)),
                         -noise.gamma, noise.gamma)
        return chosen, values.astype(np.float32)
    if config.selection == "largest":
        chosen = np.argpartition(-np.abs(update), uploads - 1)[:uploads] if uploads < len(update) else \
            np.arange(len(update))
    else:
        candidates = np.flatnonzero(np.abs(update) >= config.tau)
        chosen = public_rng.choice(candidates, min(uploads, len(candidates)), replace=False)
    return chosen, update[chosen]


def download_indices(counts_since: np.ndarray, downloads: int, config: CollaborativeConfig,
                     public_rng: np.random.Generator) -> np.ndarray:
    """The `downloads` global parameters a participant overwrites its copies with: the most
    updated since its last download (ties broken at random) or a random subset."""
    size = len(counts_since)
    if downloads >= size:
        return np.arange(size)
    if config.download == "random":
        return public_rng.choice(size, downloads, replace=False)
    jittered = counts_since + public_rng.random(size) * 0.5  # integers keep their order; ties are shuffled
    return np.argpartition(-jittered, downloads - 1)[:downloads]


class ParameterServer:
    """The DSSGD parameter server: the global parameters (P float32 values), how many uploads
    touched each one (`counts`), the counts at each participant's last download (`seen`, the
    most_updated bookkeeping), the bytes each participant uploaded (`sent`) and the public
    generator of the round orders and download ties (`np.random.default_rng([seed, 1])`).
    The simulation and the Flower server (`dptune.federation`) both drive one."""

    def __init__(self, initial: np.ndarray, config: CollaborativeConfig) -> None:
        size = len(initial)
        self.config = config
        self.parameters = initial.copy()
        self.downloads = upload_count(config.theta_download, size)
        self.counts = np.zeros(size, np.int64)
        self.seen = np.zeros((config.participants, size), np.int64)
        self.sent = np.zeros(config.participants)
        self.rng = np.random.default_rng([config.seed, 1])

    def round_order(self) -> np.ndarray:
        """The participant ids in the order they train in the next round (0..N-1, or a fresh permutation)."""
        if self.config.order == "round_robin":
            return np.arange(self.config.participants)
        return self.rng.permutation(self.config.participants)

    def download(self, participant: int) -> tuple[np.ndarray, np.ndarray]:
        """What `participant` downloads before its local round: ceil(θd·P) indices
        (`download_indices`) and the global values there."""
        chosen = download_indices(self.counts - self.seen[participant], self.downloads, self.config, self.rng)
        self.seen[participant] = self.counts
        return chosen, self.parameters[chosen]

    def apply(self, participant: int, indices: np.ndarray, values: np.ndarray) -> None:
        """Add `participant`'s upload (indices into the P values, float32 changes; an index may
        not repeat) to the global parameters and count it."""
        np.add.at(self.parameters, indices, values)
        self.counts[indices] += 1
        self.sent[participant] += upload_bytes(len(indices), len(self.parameters))

    def bytes_per_round(self) -> tuple[float, ...]:
        """Each participant's mean upload bytes per local round so far (over `config.rounds`)."""
        return tuple(float(b) / self.config.rounds for b in self.sent)


@dataclass(frozen=True)
class CollaborativeResult:
    """A DSSGD run and what it cost.

    shard_sizes: N_i; parameter_count: P; uploads_per_round: c = ceil(θu·P);
    bytes_uploaded_per_round: each participant's mean bytes per local round (`upload_bytes`);
    global_accuracy: validation accuracy of the server's parameters after the last round;
    participant_accuracies: each participant's local model after its last round;
    history: global accuracy after each round; privacy: each participant's charge
    (`dptune.privacy.collaborative`); seconds: wall-clock time of the whole run.
    """

    config: CollaborativeConfig
    shard_sizes: tuple[int, ...]
    parameter_count: int
    uploads_per_round: int
    bytes_uploaded_per_round: tuple[float, ...]
    global_accuracy: float
    participant_accuracies: tuple[float, ...]
    history: tuple[float, ...]
    privacy: tuple[ParticipantPrivacy, ...]
    seconds: float

    @property
    def worst_epsilon(self) -> float:
        return worst_epsilon(self.privacy)


def fresh_flat_model(dataset: Dataset, model_spec: ModelSpec, config: CollaborativeConfig) -> FlatModel:
    """The run's model with its initial weights (fixed by `config.seed`: every process that builds
    it starts from the same P values)."""
    return FlatModel(build_model(model_spec, dataset.input_shape, dataset.num_classes, seed=config.seed),
                     config.learning_rate)


def make_shards(dataset: Dataset, config: CollaborativeConfig) -> Shards:
    """The config's split of `dataset`; a DP-SGD participant needs at least its batch size of rows."""
    min_rows = config.privacy.batch_size if config.privacy.kind == "dp_sgd" else 1
    return split_shards(dataset, config.participants, config.split, seed=config.seed, min_rows=min_rows)


def run_collaborative(dataset: Dataset, model_spec: ModelSpec, config: CollaborativeConfig, *,
                      shards: Shards | None = None, delta: float | None = None) -> CollaborativeResult:
    """Simulate DSSGD (module docstring) and charge every participant (δ: dp_sgd's; None: 1/N_i^1.1)."""
    started = time.perf_counter()
    shards = make_shards(dataset, config) if shards is None else shards
    flat = fresh_flat_model(dataset, model_spec, config)
    server = ParameterServer(flat.get(), config)
    shared = SharedDPSGD(flat, dataset, config) if config.privacy.kind == "dp_sgd" else None
    participants = [Participant(flat, dataset, shards.indices[i], config, participant_rng(config, i),
                                server.parameters, shared) for i in range(config.participants)]
    history = []
    for _round in range(config.rounds):
        for i in server.round_order():
            server.apply(i, *participants[i].local_round(*server.download(i)))
        history.append(flat.evaluate(server.parameters, dataset))
    return CollaborativeResult(
        config=config, shard_sizes=shards.sizes, parameter_count=flat.parameter_count,
        uploads_per_round=upload_count(config.theta_upload, flat.parameter_count),
        bytes_uploaded_per_round=server.bytes_per_round(), global_accuracy=history[-1],
        participant_accuracies=tuple(flat.evaluate(p.parameters, dataset) for p in participants),
        history=tuple(history), privacy=participant_privacy(config, shards.sizes, flat.parameter_count, delta),
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class Baselines:
    """What collaboration is compared with (plain SGD, same model, initial weights, learning
    rate, batch size and rounds × local_epochs epochs): standalone_accuracies, each
    participant alone on its shard; centralized_accuracy, all training rows pooled; the
    wall-clock seconds of all standalone runs together and of the centralized run."""

    standalone_accuracies: tuple[float, ...]
    centralized_accuracy: float
    standalone_seconds: float
    centralized_seconds: float


def _plain_training(flat: FlatModel, initial: np.ndarray, x: np.ndarray, y: np.ndarray, config: CollaborativeConfig,
                    rng: np.random.Generator, dataset: Dataset) -> float:
    """Validation accuracy after rounds × local_epochs epochs of plain SGD on (x, y) from `initial`."""
    flat.set(initial)
    batch = min(config.batch_size, len(x))
    steps = config.rounds * num_steps(len(x), batch, config.local_epochs)
    flat.sgd_steps(tf.constant(x), tf.constant(y), ShuffleSampler(len(x), batch, 1, rng), steps)
    return flat.accuracy(dataset.x_val, dataset.y_val)


def run_baselines(dataset: Dataset, model_spec: ModelSpec, config: CollaborativeConfig, *,
                  shards: Shards | None = None) -> Baselines:
    """Standalone and centralized training for `config` (see `Baselines`)."""
    shards = make_shards(dataset, config) if shards is None else shards
    flat = fresh_flat_model(dataset, model_spec, config)
    initial = flat.get()
    rng = np.random.default_rng([config.seed, 2])
    started = time.perf_counter()
    standalone = tuple(_plain_training(flat, initial, *shards.shard(dataset, i), config, rng, dataset)
                       for i in range(config.participants))
    middle = time.perf_counter()
    centralized = _plain_training(flat, initial, dataset.x_train, dataset.y_train, config, rng, dataset)
    return Baselines(standalone, centralized, middle - started, time.perf_counter() - middle)
