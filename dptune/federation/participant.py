"""One DSSGD participant as a Flower client process (`dptune federate participant`).

The process recomputes the run's split from the YAML's public seed (`make_shards`) and keeps
only its own shard: its trainer, its rows and its secret generators never leave the process.
Here every participant process loads the same dataset and drops the other shards at once (it
trains on, and sends what it derives from, its own rows only); a real deployment would give
each site a file of its own rows instead, and the split here is recomputed from the public seed
so that the run is the simulation's, shard for shard.

Between its rounds the participant keeps its local parameters (P values), as in the
simulation; each Flower fit request overwrites the downloaded ones, trains one local round
(`Participant.local_round`) and answers with the upload.
"""

from __future__ import annotations

import dataclasses
import socket
import time

import flwr.client
import grpc
import numpy as np

from dptune.data.dataset import Dataset
from dptune.engine.collaborative import (
    Participant,
    SharedDPSGD,
    fresh_flat_model,
    make_shards,
    participant_rng,
)
from dptune.errors import ConfigError, TrainingError
from dptune.federation.protocol import DEFAULT_WAIT_S, PARAMETERS_KEY, PARTICIPANT_KEY, ROWS_KEY
from dptune.spec.collaborative import CollaborativeRun


class DssgdClient(flwr.client.NumPyClient):
    """The Flower face of one `Participant`: identifies itself, and trains a local round per fit."""

    def __init__(self, participant_id: int, participant: Participant) -> None:
        self.participant_id = participant_id
        self.participant = participant

    def get_properties(self, config):
        """Participant id, shard rows N_i and parameter count P (`dptune.federation.protocol`)."""
        return {PARTICIPANT_KEY: self.participant_id, ROWS_KEY: self.participant.n,
                PARAMETERS_KEY: len(self.participant.parameters)}

    def fit(self, parameters, config):
        """Download (indices, values) in, upload (indices, values) out; N_i as the example count."""
        indices, values = self.participant.local_round(parameters[0].astype(np.int64), parameters[1])
        return [np.asarray(indices, np.int64), np.asarray(values, np.float32)], self.participant.n, {}


def own_shard(dataset: Dataset, rows: np.ndarray) -> Dataset:
    """`dataset` with only the training rows `rows` (its validation rows are kept, unused)."""
    sensitive = None if dataset.sensitive_train is None else dataset.sensitive_train[rows]
    return dataclasses.replace(dataset, x_train=dataset.x_train[rows], y_train=dataset.y_train[rows],
                               sensitive_train=sensitive)


def make_participant(run: CollaborativeRun, dataset: Dataset, participant_id: int) -> Participant:
    """Participant `participant_id` of `run`, trained on its own shard only (0 <= id < N)."""
    config = run.collaborative
    shard = own_shard(dataset, make_shards(dataset, config).indices[participant_id])
    flat = fresh_flat_model(shard, run.model, config)
    shared = SharedDPSGD(flat, shard, config) if config.privacy.kind == "dp_sgd" else None
    return Participant(flat, shard, np.arange(shard.n_train), config, participant_rng(config, participant_id),
                       flat.get(), shared)


def _wait_for_server(address: str, wait_s: float) -> None:
    """Return once something accepts TCP connections at `address` (host:port, or [v6 host]:port);
    TrainingError after `wait_s` seconds. Flower's legacy client gives up at once when the server
    is not listening yet, so a participant started first would fail."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--address must be HOST:PORT, got {address!r}")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise TrainingError(f"no server answered at {address} within {wait_s:g} s ({error})") from error
            time.sleep(0.5)


def participate(run: CollaborativeRun, dataset: Dataset, participant_id: int, address: str,
                wait_s: float = DEFAULT_WAIT_S) -> None:
    """Join the Flower server at `address` (host:port) as participant `participant_id` and serve
    its local rounds until the server ends the run; waits up to `wait_s` seconds for the server.
    Uses Flower's legacy `start_client` (gRPC bidirectional stream, no TLS). TrainingError when
    the connection is lost."""
    client = DssgdClient(participant_id, make_participant(run, dataset, participant_id))
    _wait_for_server(address, wait_s)
    try:
        flwr.client.start_client(server_address=address, client=client.to_client(), insecure=True,
                                 max_wait_time=wait_s)
    except grpc.RpcError as error:
        raise TrainingError(f"participant {participant_id} lost the connection to the server at {address}: "
                            f"{error.details() if hasattr(error, 'details') else error}") from error
