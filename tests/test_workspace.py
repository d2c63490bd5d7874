"""dptune.workspace: the one owner of the workspace layout, and its atomic files."""

from __future__ import annotations

import pytest

from dptune.data import builtin_dataset
from dptune.errors import DataError
from dptune.ui.workspace import Workspace as DashboardWorkspace
from dptune.workspace import DEFAULT_WORKSPACE, Workspace, safe_filename, write_atomically, write_once

MODEL = {"kind": "mlp", "hidden_units": [64], "activation": "relu", "path": None}


def test_every_path_is_inside_the_root(tmp_path):
    workspace = Workspace.at(tmp_path / "ws")
    assert workspace.root == (tmp_path / "ws").resolve()
    assert workspace.storage_url == f"sqlite:///{workspace.root / 'studies.db'}"
    assert workspace.studies_db == workspace.root / "studies.db"
    fingerprint = "ab" * 32
    assert workspace.dataset_path(fingerprint) == workspace.root / f"{fingerprint}.npz"
    assert workspace.model_path("cd" * 32) == workspace.root / "models" / f"{'cd' * 32}.keras"
    assert workspace.upload_path("../../data.csv", b"x").parent == workspace.root / "uploads"
    assert workspace.worker_dir("a/../b c") == workspace.root / "workers" / "b_c"
    assert workspace.export_path("my study", 3) == workspace.root / "exports" / "my_study-trial3.yaml"
    assert workspace.state_path == workspace.root / "ui_state.json"
    profile = workspace.profile_path(fingerprint, MODEL)
    assert profile.parent == workspace.root / "profiles" and profile.name.startswith(fingerprint)
    assert not workspace.root.exists()  # a value: nothing is created until asked


def test_profile_path_follows_the_model_not_its_key_order(tmp_path):
    workspace = Workspace.at(tmp_path)
    reordered = dict(reversed(list(MODEL.items())))
    assert workspace.profile_path("f" * 64, reordered) == workspace.profile_path("f" * 64, MODEL)
    assert workspace.profile_path("f" * 64, {**MODEL, "hidden_units": [32]}) != workspace.profile_path("f" * 64, MODEL)
    assert workspace.profile_path("e" * 64, MODEL) != workspace.profile_path("f" * 64, MODEL)


def test_datasets_are_stored_where_the_layout_says(tmp_path):
    dataset = builtin_dataset("digits", seed=0)
    workspace = Workspace.at(tmp_path)
    assert dataset.save(workspace.root) == workspace.dataset_path(dataset.fingerprint)


def test_from_env_reads_the_environment_and_creates_the_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("DPTUNE_WORKSPACE", str(tmp_path / "env-ws"))
    monkeypatch.setenv("DPTUNE_STORAGE", "postgresql://db/studies")
    workspace = Workspace.from_env()
    assert workspace.root == (tmp_path / "env-ws").resolve() and workspace.storage_url == "postgresql://db/studies"
    assert workspace.uploads_dir.is_dir() and workspace.workers_dir.is_dir()
    explicit = DashboardWorkspace.from_env(tmp_path / "given", "sqlite:///x.db")
    assert isinstance(explicit, DashboardWorkspace) and explicit.root == (tmp_path / "given").resolve()
    monkeypatch.delenv("DPTUNE_WORKSPACE")
    monkeypatch.delenv("DPTUNE_STORAGE")
    monkeypatch.chdir(tmp_path)
    assert Workspace.from_env().root == (tmp_path / DEFAULT_WORKSPACE).resolve()


def test_page_choices_round_trip_and_unreadable_ones_are_empty(tmp_path):
    workspace = Workspace.at(tmp_path)
    assert workspace.load_state() == {}
    workspace.save_state({"clip": {"l2_norm_clip": 1.5}})
    assert workspace.load_state() == {"clip": {"l2_norm_clip": 1.5}}
    workspace.state_path.write_text("[1, 2")
    assert workspace.load_state() == {}
    workspace.state_path.write_text("[1, 2]")
    assert workspace.load_state() == {}


def test_uploads_are_stored_once_under_a_safe_content_addressed_name(tmp_path):
    workspace = DashboardWorkspace.from_env(tmp_path)
    first = workspace.save_upload("../../../etc/passwd", b"a,b\n1,2\n")
    assert first.parent == workspace.uploads_dir and first.name.endswith("-passwd")
    assert workspace.save_upload("passwd", b"a,b\n1,2\n") == first
    assert workspace.save_upload("passwd", b"other") != first
    assert safe_filename("...") == "upload" and safe_filename("a b/c d.csv") == "c_d.csv"


def test_an_upload_is_refused_when_uploads_lead_outside(tmp_path):
    workspace = DashboardWorkspace.from_env(tmp_path / "ws")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    digest_name = workspace.upload_path("x.csv", b"1").name
    (workspace.uploads_dir / digest_name).symlink_to(outside / digest_name)
    with pytest.raises(DataError, match="outside the workspace"):
        workspace.save_upload("x.csv", b"1")


def test_writes_are_atomic_and_once(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    assert write_once(target, lambda handle: handle.write(b"first")) == target
    write_once(target, lambda handle: handle.write(b"second"))
    assert target.read_bytes() == b"first"
    write_atomically(target, lambda handle: handle.write(b"replaced"))
    assert target.read_bytes() == b"replaced"

    def fails(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, fails)
    assert target.read_bytes() == b"replaced" and sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]
