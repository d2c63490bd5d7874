"""The workspace: the one folder where dptune keeps what it needs between processes.

Layout (relative to the workspace root, default `./dptune-data/`, `$DPTUNE_WORKSPACE` in the app):
`<fingerprint>.npz` prepared datasets, `models/<sha256>.keras` uploaded models, `uploads/`,
`workers/` (one log and pid record per worker process), `exports/` (run YAML), `studies.db`
(the default Optuna storage) and `ui_state.json` (the dashboard's choices).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_WORKSPACE = Path("dptune-data")
"""Where datasets, models and studies live unless a workspace is given."""
