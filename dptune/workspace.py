"""The workspace: the one folder where dptune keeps what it needs between processes, and
the one owner of its layout (no other module spells a path inside it). Bottom layer: no
dptune import.

Layout under the root (default `./dptune-data/`; `$DPTUNE_WORKSPACE` in the app):

    <fingerprint>.npz                   prepared datasets, stored once (Dataset.save)
    models/<sha256>.keras               uploaded model files, named by their content
    uploads/<sha256>-<name>             files a user uploaded (data, `.keras` models); nowhere else
    workers/<study>/                    one JSON record and one log per worker process the app started
    exports/<study>-trial<n>.yaml       run YAML written by the Export page
    audits/<study>-trial<n>-<mode>.json the latest `dptune audit` of that trial's run YAML (shown on Trade-offs)
    profiles/<fingerprint>-<model>.npy  exact per-example gradient norms: private, like the datasets
                                        (only the noisy histogram released from them leaves), with
                                        a `.log` of the process that computed them
    studies.db                          the default Optuna storage (SQLite); `$DPTUNE_STORAGE` for a URL
    ui_state.json                       the dashboard's choices (a reload or restarted app shows the same)

Files are written atomically (a temporary file in the same folder, then a rename), so a
reader in another process never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

DEFAULT_WORKSPACE = Path("dptune-data")
"""Where datasets, models and studies live unless a workspace is given."""

WORKSPACE_ENV = "DPTUNE_WORKSPACE"
"""The environment variable that moves the dashboard's workspace."""

STORAGE_ENV = "DPTUNE_STORAGE"
"""The environment variable that points the dashboard at another Optuna storage URL."""

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str, *, default: str = "upload") -> str:
    """A file name without directories or odd characters (what users name never leaves the workspace)."""
    base = os.path.basename(str(name).replace("\\", "/")).strip()
    base = _SAFE_NAME.sub("_", base).lstrip(".")
    return base[:120] or default


def write_once(target: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Create `target` (named by its content's hash) by `write(handle)`, atomically; an
    existing target is kept as is, and a failed write leaves nothing behind. OSError
    propagates for the caller to explain."""
    if not target.exists():
        write_atomically(target, write)
    return target


def write_atomically(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace `target` by what `write(handle)` writes into a temporary file in the same
    folder, then an atomic rename; a failed write leaves nothing behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = None
    try:
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=target.suffix + ".tmp", delete=False) as handle:
            temporary = Path(handle.name)
            write(handle)
        os.replace(temporary, target)
        temporary = None
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def model_key(model: Mapping[str, Any]) -> str:
    """A short content key of a model spec mapping (ModelSpec.to_dict()): equal specs, equal keys."""
    return hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Workspace:
    """One workspace: its absolute `root` (so every process agrees on it), the Optuna
    `storage_url` (default: `studies.db` in the root) and every path inside it."""

    root: Path
    storage_url: str

    @classmethod
    def at(cls, root: str | os.PathLike = DEFAULT_WORKSPACE, storage_url: str | None = None) -> Workspace:
        """The workspace rooted at `root` (made absolute; nothing is created)."""
        path = Path(root).expanduser().resolve()
        return cls(root=path, storage_url=storage_url or f"sqlite:///{path / 'studies.db'}")

    @classmethod
    def from_env(cls, root: str | os.PathLike | None = None, storage_url: str | None = None) -> Workspace:
        """The dashboard's workspace: `root`, else `$DPTUNE_WORKSPACE`, else ./dptune-data; the
        storage `storage_url`, else `$DPTUNE_STORAGE`, else its `studies.db`. Its folders are created."""
        workspace = cls.at(root or os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE,
                           storage_url or os.environ.get(STORAGE_ENV))
        workspace.ensure()
        return workspace

    def ensure(self) -> None:
        """Create the root and the folders the dashboard writes into."""
        for directory in (self.root, self.uploads_dir, self.workers_dir):
            directory.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------- the layout
    @property
    def studies_db(self) -> Path:
        """The default SQLite Optuna storage file."""
        return self.root / "studies.db"

    def dataset_path(self, fingerprint: str) -> Path:
        """Where the dataset with this SHA-256 fingerprint is stored (`<fingerprint>.npz`)."""
        return self.root / f"{safe_filename(fingerprint, default='dataset')}.npz"

    @property
    def models_dir(self) -> Path:
        """Uploaded `.keras` model files, named by their content's SHA-256."""
        return self.root / "models"

    def model_path(self, sha256: str) -> Path:
        """Where the model file with this content hash is stored."""
        return self.models_dir / f"{safe_filename(sha256, default='model')}.keras"

    @property
    def uploads_dir(self) -> Path:
        """Files users uploaded (data and models), under content-prefixed safe names."""
        return self.root / "uploads"

    @property
    def workers_dir(self) -> Path:
        """One folder per study with the records and logs of the worker processes started for it."""
        return self.root / "workers"

    def worker_dir(self, study: str) -> Path:
        """The records and logs of the workers of `study`."""
        return self.workers_dir / safe_filename(study, default="study")

    @property
    def exports_dir(self) -> Path:
        """Run YAML files written by the dashboard."""
        return self.root / "exports"

    def export_path(self, study: str, trial_number: int) -> Path:
        """The run YAML of one trial of `study`."""
        return self.exports_dir / f"{safe_filename(study, default='study')}-trial{int(trial_number)}.yaml"

    @property
    def audits_dir(self) -> Path:
        """Results of `dptune audit` (JSON), read by the dashboard."""
        return self.root / "audits"

    def audit_path(self, study: str, trial_number: int, mode: str) -> Path:
        """The latest `mode` ("black_box" | "white_box") one-run audit of one trial of `study`."""
        return self.audits_dir / f"{safe_filename(study, default='study')}-trial{int(trial_number)}-{safe_filename(mode)}.json"

    @property
    def profiles_dir(self) -> Path:
        """Exact per-example gradient-norm profiles (private data: never shown, never exported)."""
        return self.root / "profiles"

    def profile_path(self, fingerprint: str, model: Mapping[str, Any]) -> Path:
        """The gradient-norm profile of the dataset `fingerprint` under the initial model
        `model` (a ModelSpec mapping), `<fingerprint>-<model key>.npy`."""
        return self.profiles_dir / f"{safe_filename(fingerprint, default='dataset')}-{model_key(model)}.npy"

    def profile_log_path(self, fingerprint: str, model: Mapping[str, Any]) -> Path:
        """The messages of the last process that computed that profile (`.log` beside it)."""
        return self.profile_path(fingerprint, model).with_suffix(".log")

    @property
    def state_path(self) -> Path:
        """The dashboard's saved page choices."""
        return self.root / "ui_state.json"

    def upload_path(self, name: str, content: bytes) -> Path:
        """Where an uploaded file is kept: `uploads/<sha256 prefix>-<safe name>`."""
        return self.uploads_dir / f"{hashlib.sha256(content).hexdigest()[:16]}-{safe_filename(name)}"

    # ------------------------------------------------------------------------- its files
    def load_state(self) -> dict[str, Any]:
        """The saved page choices ({} when none or unreadable)."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def save_state(self, state: dict[str, Any]) -> None:
        """Replace the saved page choices, atomically."""
        text = json.dumps(state, indent=1, sort_keys=True, default=str).encode()
        write_atomically(self.state_path, lambda handle: handle.write(text))
