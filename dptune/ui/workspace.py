"""The dashboard's workspace: `dptune.workspace` owns the layout (datasets, `models/`,
`uploads/`, `workers/`, `exports/`, `profiles/`, `studies.db`, `ui_state.json`) and the saved
page choices; this module adds storing an upload, which can fail as a user's mistake.

No Streamlit import here: tests and benchmarks use it directly.
"""

from __future__ import annotations

from pathlib import Path

from dptune import workspace as layout
from dptune.errors import DataError
from dptune.workspace import safe_filename, write_once

__all__ = ["Workspace", "safe_filename"]


class Workspace(layout.Workspace):
    """The dashboard's workspace (`Workspace.from_env`): the layout plus storing uploads."""

    def save_upload(self, name: str, content: bytes) -> Path:
        """Write an uploaded file under `uploads/` (content-addressed prefix, safe name), once."""
        target = self.upload_path(name, content)
        if not target.resolve().is_relative_to(self.uploads_dir.resolve()):
            raise DataError(f"refusing to store the upload {name!r} outside the workspace")
        return write_once(target, lambda handle: handle.write(content))
