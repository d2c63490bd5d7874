"""The DSSGD parameter server as a Flower server process (`dptune federate server`).

`DssgdStrategy` is a Flower `Strategy` (the legacy server API, `flwr.server.start_server`,
deprecated in Flower 1.x but what runs a loopback or LAN run without a SuperLink). It drives
one `ParameterServer` (`dptune.engine.collaborative`) exactly as the simulation does:

- Flower round k (1-based) is the local round of the participant at position (k−1) mod N of
  global round ⌊(k−1)/N⌋ (the server's `round_order`), so R global rounds are R·N Flower rounds:
  DSSGD is sequential (each participant downloads what the previous ones uploaded), so one
  participant trains per Flower round and the others wait;
- `configure_fit` sends that participant its download (`ParameterServer.download`);
  `aggregate_fit` checks and applies its upload (`ParameterServer.apply`);
- after every N Flower rounds (one global round) `evaluate` measures the global parameters'
  validation accuracy, on the server.

Before the first round the server waits for N participants and asks each its id, shard rows
N_i and parameter count (`dptune.federation.protocol`); each participant's ε is
`participant_privacy` of those N_i, as in the simulation. An error (a missing or duplicate
participant, a malformed upload, a failed local round) stops the protocol: the remaining
rounds are skipped, the participants are released, and `serve` raises it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import flwr.server
import numpy as np
from flwr.common import FitIns, GetPropertiesIns, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import Strategy

from dptune.data.dataset import Dataset
from dptune.engine.collaborative import FlatModel, ParameterServer, fresh_flat_model
from dptune.errors import DPTuneError, TrainingError
from dptune.federation.protocol import DEFAULT_WAIT_S, PARAMETERS_KEY, PARTICIPANT_KEY, ROWS_KEY
from dptune.privacy.collaborative import ParticipantPrivacy, participant_privacy, upload_count
from dptune.spec.collaborative import CollaborativeRun


@dataclass(frozen=True)
class FederatedResult:
    """A DSSGD run across processes.

    shard_sizes: N_i as each participant reported it; parameter_count: P; uploads_per_round:
    c = ceil(θu·P); bytes_uploaded_per_round: each participant's mean bytes per local round;
    history: global validation accuracy after each global round (N Flower rounds);
    global_accuracy: the last of them; privacy: each participant's charge; flower_rounds: R·N;
    seconds: wall-clock time from the first connection wait to the end.
    """

    shard_sizes: tuple[int, ...]
    parameter_count: int
    uploads_per_round: int
    bytes_uploaded_per_round: tuple[float, ...]
    history: tuple[float, ...]
    privacy: tuple[ParticipantPrivacy, ...]
    flower_rounds: int
    seconds: float

    @property
    def global_accuracy(self) -> float:
        return self.history[-1]


class DssgdStrategy(Strategy):
    """One Flower round = one participant's local round (module docstring). `on_round(r, acc)`
    is called after global round r (1-based) with the global validation accuracy."""

    def __init__(self, flat: FlatModel, dataset: Dataset, run: CollaborativeRun, wait_s: float,
                 on_round: Callable[[int, float], None]) -> None:
        self.config = run.collaborative
        self.flat, self.dataset, self.wait_s, self.on_round = flat, dataset, wait_s, on_round
        self.server = ParameterServer(flat.get(), self.config)
        self.uploads = upload_count(self.config.theta_upload, len(self.server.parameters))
        self.clients: dict[int, flwr.server.client_proxy.ClientProxy] = {}
        self.shard_sizes: tuple[int, ...] = ()
        self.order = np.arange(0)
        self.current = -1
        self.history: list[float] = []
        self.error: DPTuneError | None = None

    def initialize_parameters(self, client_manager) -> Parameters:
        """No parameters travel through Flower's own state: the `ParameterServer` holds them."""
        return ndarrays_to_parameters([])

    def _connect(self, client_manager) -> None:
        """Wait for the N participants and map each id to its connection."""
        n = self.config.participants
        if not client_manager.wait_for(n, timeout=self.wait_s):
            raise TrainingError(f"only {client_manager.num_available()} of the {n} participants connected "
                                f"within {self.wait_s:g} s")
        sizes: dict[int, int] = {}
        for proxy in client_manager.all().values():
            properties = proxy.get_properties(GetPropertiesIns({}), timeout=self.wait_s, group_id=0).properties
            participant = int(properties.get(PARTICIPANT_KEY, -1))
            if not 0 <= participant < n or participant in self.clients:
                raise TrainingError(f"a client announced participant id {participant}: expected each of 0..{n - 1} "
                                    "exactly once")
            if int(properties.get(PARAMETERS_KEY, -1)) != len(self.server.parameters):
                raise TrainingError(f"participant {participant} built a model of {properties.get(PARAMETERS_KEY)} "
                                    f"parameters, the server {len(self.server.parameters)}: not the same YAML")
            self.clients[participant] = proxy
            sizes[participant] = int(properties[ROWS_KEY])
        self.shard_sizes = tuple(sizes[i] for i in range(n))

    def configure_fit(self, server_round, parameters, client_manager):
        """Send the download to the participant whose local round Flower round `server_round` is."""
        if self.error is not None:
            return []
        try:
            if not self.clients:
                self._connect(client_manager)
        except DPTuneError as error:
            self.error = error
            return []
        position = (server_round - 1) % self.config.participants
        if position == 0:
            self.order = self.server.round_order()
        self.current = int(self.order[position])
        indices, values = self.server.download(self.current)
        return [(self.clients[self.current], FitIns(ndarrays_to_parameters([indices.astype(np.int64), values]), {}))]

    def _checked_upload(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The current participant's upload, if well formed: at most c distinct indices in [0, P)
        and as many finite values."""
        size = len(self.server.parameters)
        if len(arrays) == 2:
            indices, values = arrays
            if (indices.ndim == values.ndim == 1 and len(indices) == len(values) <= self.uploads
                    and np.issubdtype(indices.dtype, np.integer) and np.all((indices >= 0) & (indices < size))
                    and len(np.unique(indices)) == len(indices) and np.all(np.isfinite(values))):
                return indices.astype(np.int64), values.astype(np.float32)
        raise TrainingError(f"participant {self.current} sent a malformed upload (expected at most {self.uploads} "
                            f"distinct indices in [0, {size}) and as many finite values)")

    def aggregate_fit(self, server_round, results, failures):
        """Apply the one upload of this Flower round to the global parameters."""
        if self.error is None and (failures or len(results) != 1):
            self.error = TrainingError(f"participant {self.current}'s local round (Flower round {server_round}) "
                                       f"failed: {_failure_text(failures[0]) if failures else 'no reply'}")
        if self.error is None:
            try:
                self.server.apply(self.current, *self._checked_upload(parameters_to_ndarrays(results[0][1].parameters)))
            except DPTuneError as error:
                self.error = error
        return None, {}

    def evaluate(self, server_round, parameters):
        """After each global round (every N Flower rounds): the global validation accuracy,
        recorded and passed to `on_round`; Flower's own history gets nothing (None)."""
        if self.error is None and server_round > 0 and server_round % self.config.participants == 0:
            self.history.append(self.flat.evaluate(self.server.parameters, self.dataset))
            self.on_round(len(self.history), self.history[-1])
        return None

    def configure_evaluate(self, server_round, parameters, client_manager):
        """No evaluation on the participants: the server evaluates on the validation rows."""
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}


def _failure_text(failure) -> str:
    """One line for a Flower fit failure: an exception (a lost connection, say) or an error reply."""
    if isinstance(failure, BaseException):
        return f"{type(failure).__name__} {failure}".strip()
    return failure[1].status.message or "an error reply"


def serve(run: CollaborativeRun, dataset: Dataset, address: str, *, wait_s: float = DEFAULT_WAIT_S,
          on_round: Callable[[int, float], None] = lambda _round, _accuracy: None) -> FederatedResult:
    """Run the DSSGD server of `run` on `address` (host:port; 0.0.0.0:PORT to accept other
    machines) until its R·N Flower rounds are done; the participants must connect within
    `wait_s` seconds. `dataset` gives the model's shape and the validation rows."""
    started = time.perf_counter()
    config = run.collaborative
    strategy = DssgdStrategy(fresh_flat_model(dataset, run.model, config), dataset, run, wait_s, on_round)
    rounds = config.rounds * config.participants
    flwr.server.start_server(server_address=address, strategy=strategy,
                             config=flwr.server.ServerConfig(num_rounds=rounds))
    if strategy.error is not None:
        raise strategy.error
    size = len(strategy.server.parameters)
    return FederatedResult(
        shard_sizes=strategy.shard_sizes, parameter_count=size, uploads_per_round=strategy.uploads,
        bytes_uploaded_per_round=strategy.server.bytes_per_round(), history=tuple(strategy.history),
        privacy=participant_privacy(config, strategy.shard_sizes, size, run.delta), flower_rounds=rounds,
        seconds=time.perf_counter() - started,
    )
