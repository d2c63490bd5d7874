"""Distributed selective SGD (`dptune.engine.collaborative`) across processes and machines, on Flower.

One server process (`dptune.federation.server`) holds the `ParameterServer`; each participant
process (`dptune.federation.participant`) holds one `Participant` and its own shard. The
protocol is the simulation's, step for step: Flower round k is the local round of one
participant (round robin, or the server's public random order), so R rounds of N participants
take R·N Flower rounds. docs/FEDERATION.md says how to run it.

Flower's usage telemetry is switched off (FLWR_TELEMETRY_ENABLED=0, unless already set) before
any Flower module is imported: a privacy tool does not report to a third party by default.
"""

import os

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
