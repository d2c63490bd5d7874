"""The dashboard's workspace: where its state lives between browser sessions and restarts.

Layout under the workspace root (default `./dptune-data/`, or `$DPTUNE_WORKSPACE`):

    studies.db            Optuna storage (SQLite) holding every study and trial
    <fingerprint>.npz     datasets, stored once (dptune.data.dataset.Dataset.save)
    uploads/              files a user uploaded (data files, `.keras` models); nowhere else
    workers/<study>/      one JSON record and one log per worker process the app started
    ui_state.json         the choices made on the pages (dataset, model, C, search settings,
                          current study), so a reload or restarted app shows the same

No Streamlit import here: tests and benchmarks use it directly.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dptune.errors import DataError

WORKSPACE_ENV = "DPTUNE_WORKSPACE"
STORAGE_ENV = "DPTUNE_STORAGE"
DEFAULT_ROOT = "dptune-data"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str, *, default: str = "upload") -> str:
    """A file name without directories or odd characters (uploads never leave the workspace)."""
    base = os.path.basename(str(name).replace("\\", "/")).strip()
    base = _SAFE_NAME.sub("_", base).lstrip(".")
    return base[:120] or default


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace; `root` is absolute so worker processes agree on it."""

    root: Path
    storage_url: str

    @classmethod
    def from_env(cls, root: str | os.PathLike | None = None, storage_url: str | None = None) -> Workspace:
        path = Path(root or os.environ.get(WORKSPACE_ENV) or DEFAULT_ROOT).expanduser().resolve()
        url = storage_url or os.environ.get(STORAGE_ENV) or f"sqlite:///{path / 'studies.db'}"
        workspace = cls(root=path, storage_url=url)
        workspace.ensure()
        return workspace

    def ensure(self) -> None:
        for directory in (self.root, self.uploads_dir, self.workers_dir):
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def workers_dir(self) -> Path:
        return self.root / "workers"

    @property
    def state_path(self) -> Path:
        return self.root / "ui_state.json"

    def save_upload(self, name: str, content: bytes) -> Path:
        """Write an uploaded file under `uploads/` (content-addressed prefix, safe name)."""
        import hashlib

        digest = hashlib.sha256(content).hexdigest()[:16]
        target = self.uploads_dir / f"{digest}-{safe_filename(name)}"
        if not target.resolve().is_relative_to(self.uploads_dir.resolve()):
            raise DataError(f"refusing to store the upload {name!r} outside the workspace")
        if not target.exists():
            _atomic_write(target, content)
        return target

    def load_state(self) -> dict[str, Any]:
        """The saved page choices ({} when none or unreadable)."""
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def save_state(self, state: dict[str, Any]) -> None:
        _atomic_write(self.state_path, json.dumps(state, indent=1, sort_keys=True, default=str).encode())


def _atomic_write(target: Path, content: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as handle:
        handle.write(content)
    os.replace(handle.name, target)
