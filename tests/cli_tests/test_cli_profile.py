"""`dptune profile`: the exact gradient norms written into the workspace, equal to the
in-process profile, reused, and kept inside the workspace."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dptune.cli import main
from dptune.data import builtin_dataset
from dptune.data.dataset import Dataset
from dptune.engine.profile import gradient_norm_profile
from dptune.spec.config import ModelSpec
from dptune.workspace import Workspace

ROWS = 64
SPEC = ModelSpec("mlp", hidden_units=(8,))


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    digits = builtin_dataset("digits", seed=0)
    return Dataset(name="digits-64", x_train=digits.x_train[:ROWS], y_train=digits.y_train[:ROWS],
                   x_val=digits.x_val[:ROWS], y_val=digits.y_val[:ROWS], class_names=digits.class_names)


@pytest.fixture
def stored(tmp_path, tiny) -> Workspace:
    """A workspace holding `tiny` by its fingerprint."""
    workspace = Workspace.at(tmp_path / "ws")
    tiny.save(workspace.root)
    return workspace


def profile(capsys, workspace: Workspace, fingerprint: str, *extra: str, model: str | None = None):
    """Run `dptune profile` in-process; (exit code, stdout, stderr)."""
    code = main(["profile", "--workspace", str(workspace.root), "--dataset", fingerprint,
                 "--model", model or json.dumps(SPEC.to_dict()), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_writes_the_in_process_profile_into_the_workspace_and_reuses_it(capsys, stored, tiny):
    code, out, err = profile(capsys, stored, tiny.fingerprint)
    assert code == 0, err
    path = stored.profile_path(tiny.fingerprint, SPEC.to_dict())
    assert path.parent == stored.root / "profiles" and str(path) in out
    norms = np.load(path)
    assert norms.shape == (ROWS,) and norms.dtype == np.float64
    np.testing.assert_allclose(norms, gradient_norm_profile(tiny, SPEC), rtol=1e-6)
    assert not [name for name in path.parent.iterdir() if name.suffix == ".tmp"]

    written = path.stat().st_mtime_ns
    code, out, _ = profile(capsys, stored, tiny.fingerprint)
    assert code == 0 and "reusing" in out and path.stat().st_mtime_ns == written


def test_output_inside_the_workspace_only(capsys, stored, tiny):
    inside = stored.root / "mine.npy"
    assert profile(capsys, stored, tiny.fingerprint, "--output", str(inside))[0] == 0
    np.testing.assert_allclose(np.load(inside), gradient_norm_profile(tiny, SPEC), rtol=1e-6)

    outside = stored.root.parent / "leaked.npy"
    code, _, err = profile(capsys, stored, tiny.fingerprint, "--output", str(outside))
    assert code == 2 and "outside the workspace" in err and not outside.exists()


@pytest.mark.parametrize(("model", "fingerprint", "message"), [
    ("{kind: mlp}", None, "--model must be a JSON object"),
    ('{"kind": "mlp", "layers": 3}', None, "unknown key(s) in model: layers"),
    (None, "0" * 64, "is not in the workspace"),
    (None, "../../etc", "is not a dataset fingerprint"),
])
def test_user_mistakes_exit_2_with_a_message(capsys, stored, tiny, model, fingerprint, message):
    code, _, err = profile(capsys, stored, fingerprint or tiny.fingerprint, model=model)
    assert code == 2 and message in err, err
    assert not stored.profiles_dir.exists() or not list(stored.profiles_dir.iterdir())
