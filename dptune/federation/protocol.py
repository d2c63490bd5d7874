"""What the Flower server and the participants tell each other beyond the parameters.

Each participant answers the server's property request with its participant id (0..N-1), the
number of rows of its shard (N_i, what its ε is computed with) and its parameter count P (a
check that both sides built the same model). A fit request carries the download as two arrays
(int64 indices into the P values, float32 global values); the fit reply carries the upload the
same way.
"""

PARTICIPANT_KEY = "participant"
ROWS_KEY = "rows"
PARAMETERS_KEY = "parameters"

DEFAULT_ADDRESS = "127.0.0.1:8080"
DEFAULT_WAIT_S = 600.0
"""Seconds the server waits for all participants to connect, and a participant for the server."""
