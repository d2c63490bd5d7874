"""Documented limits (dptune.spec.limits) checked before anything is allocated, short messages,
no writes on failure, the workspace rules of exports and `train --workspace`, and the
dashboard's localhost guard (issue 11, items 6-9a). In-process and fast; the same inputs as real
processes are in test_hostile_inputs.py."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hostile import billion_laughs, deep_yaml, deep_yaml_blocks_small, non_utf8_yaml, run_yaml

from dptune.cli import main
from dptune.errors import ConfigError, DataError
from dptune.spec import limits
from dptune.spec.config import DPSGDConfig, ModelSpec
from dptune.spec.run import load_run_config, portable_workspace
from dptune.spec.yaml_fields import load_yaml_mapping, safe_load_bounded


def _refused(path: Path, match: str) -> str:
    start = time.monotonic()
    with pytest.raises(ConfigError, match=match) as info:
        load_yaml_mapping(path, "run config")
    assert time.monotonic() - start < 2.0
    assert len(str(info.value)) < 400
    return str(info.value)


# ---------------------------------------------------------------------------- YAML
def test_billion_laughs_is_refused_while_composing_without_expanding(tmp_path):
    for kind in ("search", "run"):
        path = billion_laughs(tmp_path, kind)
        assert path.stat().st_size < 2048
        _refused(path, "once its aliases are expanded")


def test_a_few_aliases_are_still_fine():
    values = safe_load_bounded("base: &b {optimizer: sgd, seed: 0}\nfixed: *b\nother: *b\n", "x.yaml")
    assert values["fixed"] == {"optimizer": "sgd", "seed": 0}


def test_more_aliases_than_the_limit_are_refused():
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * (limits.MAX_YAML_ALIASES + 1)) + "]\n"
    with pytest.raises(ConfigError, match="aliases"):
        safe_load_bounded(text, "x.yaml")


@pytest.mark.parametrize("build", [deep_yaml, deep_yaml_blocks_small])
def test_deep_nesting_is_refused(tmp_path, build):
    _refused(build(tmp_path), f"more than {limits.MAX_YAML_DEPTH} levels deep")


def test_non_utf8_folder_missing_and_oversized_files(tmp_path):
    _refused(non_utf8_yaml(tmp_path), "is not UTF-8")
    _refused(tmp_path, "is a folder")
    _refused(tmp_path / "missing.yaml", "does not exist")
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * limits.MAX_YAML_BYTES + "\n")
    _refused(big, "over dptune's limit")


def test_a_huge_integer_is_a_clean_error():
    with pytest.raises(ConfigError, match="cannot read"):
        safe_load_bounded("epochs: " + "9" * 100_000 + "\n", "x.yaml")


def test_messages_never_print_a_huge_value():
    with pytest.raises(ConfigError) as info:
        DPSGDConfig(epochs=[1] * 1_000_000)  # type: ignore[arg-type]
    assert len(str(info.value)) < 300
    assert len(limits.short_repr("x" * 10**6)) <= limits.MESSAGE_VALUE_CHARS + 30
    assert "1,000,000 items" in limits.short_repr(list(range(10**6)))


# ---------------------------------------------------------------------------- sizes of a run
@pytest.mark.parametrize("changes, match", [
    ({"epochs": limits.MAX_EPOCHS + 1}, "epochs"),
    ({"epochs": 1e300}, "epochs"),
    ({"batch_size": limits.MAX_BATCH_SIZE + 1, "num_microbatches": 1}, "batch_size"),
])
def test_run_sizes_are_bounded(changes, match):
    with pytest.raises(ConfigError, match=match):
        DPSGDConfig(**changes)


@pytest.mark.parametrize("units, match", [
    ([limits.MAX_HIDDEN_UNITS + 1], "per layer"),
    ([8] * (limits.MAX_HIDDEN_LAYERS + 1), "layers"),
    ([60_000, 60_000], "weights"),
    (10**9, "list"),
])
def test_hidden_units_are_bounded(units, match):
    with pytest.raises(ConfigError, match=match):
        ModelSpec(kind="mlp", hidden_units=units)


def test_synthetic_sizes_are_checked_before_generating():
    from dptune.data import builtin_dataset

    start = time.monotonic()
    with pytest.raises(DataError, match="over dptune's limit"):
        builtin_dataset("synthetic", n_examples=10**8, n_features=10**6)
    with pytest.raises(DataError, match="image_shape"):
        builtin_dataset("synthetic", image_shape=["a", 1, 1])
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("flags", [["--steps", str(10**12)], ["--epochs", "1e15"], ["--epochs", "10000"]])
def test_epsilon_sizes_are_bounded(flags, capsys):
    code = main(["epsilon", "--n", "60000", "--batch-size", "1", "--noise-multiplier", "1.1", *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "over dptune's limit" in err and len(err) < 300


# ---------------------------------------------------------------------------- tables, arrays, images
def test_duplicate_header_check_is_linear():
    from dptune.data.tabular import _name_problems
    from dptune.data.text import unique_names

    names = ("label",) + ("x",) * 199_999
    start = time.monotonic()
    unique = unique_names(names)
    problems = _name_problems(names, list(unique))
    assert time.monotonic() - start < 5.0
    assert len(set(unique)) == len(names) and len(problems) == len(names) - 2
    assert unique_names(("a", "a", "a.1", "")) == ("a", "a.2", "a.1", "col_4")


def test_a_table_lists_at_most_20_problems():
    from dptune.data.diagnose import MAX_LISTED_PROBLEMS, ColumnProblem, TableProblems

    error = TableProblems("t.csv", [ColumnProblem(f"c{i}", f"column c{i} is bad") for i in range(5000)])
    assert len(error.problems) == 5000
    assert str(error).count("\n- ") == MAX_LISTED_PROBLEMS + 1 and len(str(error)) < 4000


def test_too_many_columns_is_refused_before_parsing(tmp_path):
    from dptune.data import load_dataset

    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(limits.MAX_TABLE_COLUMNS + 1)) + "\n" + "1," * limits.MAX_TABLE_COLUMNS + "1\n")
    with pytest.raises(DataError, match="columns, over dptune's limit"):
        load_dataset(path)


def test_parquet_cells_are_checked_from_its_metadata(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dptune.data import load_dataset

    path = tmp_path / "long.parquet"
    n = limits.MAX_TABLE_CELLS // 2 + 1
    pq.write_table(pa.table({"label": np.zeros(n, dtype=np.int8), "x": np.zeros(n, dtype=np.int8)}), path)
    with pytest.raises(DataError, match="cells"):
        load_dataset(path)


def test_npz_arrays_are_sized_from_their_headers(tmp_path):
    from dptune.data import load_dataset
    from dptune.data.sources import Limits

    path = tmp_path / "a.npz"
    np.savez_compressed(path, x=np.zeros((1000, 100)), y=np.zeros(1000, dtype=np.int8))
    with pytest.raises(DataError, match="would need"):
        load_dataset(path, limits=Limits(max_array_bytes=1_000_000))


def test_image_members_that_expand_like_bombs_are_refused(tmp_path):
    import zipfile

    from dptune.data import load_dataset

    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for label in ("a", "b"):
            archive.writestr(f"{label}/0.png", bytes(8 * 1024 * 1024))
    with pytest.raises(DataError, match="zip bomb"):
        load_dataset(path)


def test_keras_config_depth_is_measured_without_recursion():
    from dptune.engine.keras_limits import check_config_depth, json_depth

    assert json_depth(b'{"a": [1, {"b": "[[[["}]}') == 3
    with pytest.raises(Exception, match="levels deep"):
        check_config_depth(b"[" * 100_000 + b"]" * 100_000, "m.keras")


# ---------------------------------------------------------------------------- the CLI's last line of defence
def test_storage_and_file_system_errors_are_one_line(tmp_path, capsys):
    corrupt = tmp_path / "studies.db"
    corrupt.write_bytes(np.random.default_rng(0).bytes(50_000))
    for argv in (["export", "--storage", f"sqlite:///{corrupt}", "--study", "s", "-o", str(tmp_path / "o.yaml")],
                 ["export", "--storage", "not a url", "--study", "s", "-o", str(tmp_path / "o.yaml")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: cannot use the study storage") and err.count("\n") == 1, err
    assert not (tmp_path / "o.yaml").exists()


# ---------------------------------------------------------------------------- workspaces (item 8)
def test_exports_carry_no_absolute_path(tmp_path, monkeypatch):
    inside = tmp_path / "project" / "dptune-data"
    assert portable_workspace(inside, cwd=tmp_path / "project") == "dptune-data"
    assert portable_workspace(inside, cwd=tmp_path / "elsewhere") is None
    assert portable_workspace("dptune-data") == "dptune-data"
    assert portable_workspace(None) is None


def test_export_of_a_study_with_an_absolute_workspace(tmp_path, monkeypatch):
    import optuna
    from synthetic_studies import make_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    make_study(storage, "s", 3, workspace=str(tmp_path / "ws"))
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--storage", storage, "--study", "s", "-o", "here.yaml"]) == 0
    assert yaml.safe_load((tmp_path / "here.yaml").read_text())["dataset"]["workspace"] == "ws"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["export", "--storage", storage, "--study", "s", "-o", "there.yaml"]) == 0
    text = (elsewhere / "there.yaml").read_text()
    assert "workspace" not in yaml.safe_load(text)["dataset"] and str(tmp_path) not in text.split("search:")[0]


def test_an_old_export_with_an_absolute_workspace_still_loads(tmp_path):
    path = run_yaml(tmp_path, dataset={"builtin": "digits", "workspace": "/somewhere/else/dptune-data"})
    assert load_run_config(path).dataset.workspace == "/somewhere/else/dptune-data"


def test_train_workspace_overrides_the_yaml_and_train_writes_no_dataset(tmp_path, monkeypatch):
    from search_helpers import fake_trainer

    from dptune.data import builtin_dataset
    from dptune.report.export import train_from_config

    digits = builtin_dataset("digits")
    mine = tmp_path / "mine"
    digits.save(mine)
    recorded = tmp_path / "recorded-elsewhere"
    path = run_yaml(tmp_path, dataset={"name": "digits", "fingerprint": digits.fingerprint,
                                       "workspace": str(recorded)}, delta=1e-5)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="not in the workspace"):
        train_from_config(path, train_fn=fake_trainer())
    reproduction = train_from_config(path, workspace=str(mine), train_fn=fake_trainer())
    assert reproduction.result is not None
    assert not recorded.exists() and not (tmp_path / "dptune-data").exists()
    path = run_yaml(tmp_path, dataset={"builtin": "digits", "workspace": str(recorded)}, delta=1e-5)
    train_from_config(path, train_fn=fake_trainer())  # a built-in is rebuilt in memory, stored nowhere
    assert not recorded.exists() and not (tmp_path / "dptune-data").exists()


def test_tune_with_an_impossible_budget_writes_nothing(tmp_path, monkeypatch, capsys):
    from search_helpers import TINY_MLP, write_yaml

    ws = tmp_path / "ws"
    config = write_yaml(tmp_path / "search.yaml", {
        "mode": "budgeted", "dataset": {"builtin": "digits"}, "model": TINY_MLP, "target_epsilon": 0.001,
        "ranges": {"batch_size": 1024, "epochs": 50}, "workspace": str(ws),
    })
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "--config", str(config), "--no-progress"]) == 2
    assert "error: " in capsys.readouterr().err
    assert not ws.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["search.yaml"]


# ---------------------------------------------------------------------------- the app's address (item 9a)
def test_the_app_refuses_to_serve_on_all_interfaces_unless_asked():
    from dptune.ui.serving import serving_problem

    problem = serving_problem(None, real_server=True)
    assert problem and "--server.address localhost" in problem and "cd " in problem
    assert serving_problem("", real_server=True)
    assert serving_problem("localhost", real_server=True) is None
    assert serving_problem("0.0.0.0", real_server=True) is None  # asked for on purpose
    assert serving_problem(None, real_server=False) is None  # AppTest: no server


def test_the_start_page_stops_with_the_command_when_no_address_is_set(tmp_path, monkeypatch):
    from ui_testing import app_test

    from dptune.ui import serving

    monkeypatch.setattr(serving, "_real_server", lambda: True)
    monkeypatch.setattr(serving, "_address", lambda: None)
    at = app_test(tmp_path / "ws").run()
    assert not at.exception
    assert len(at.error) == 1 and "--server.address localhost" in at.error[0].value
    assert not at.button  # nothing of the app is shown
    assert not (tmp_path / "ws").exists()


@pytest.mark.browser
def test_a_real_server_without_an_address_shows_only_the_restart_command(tmp_path):
    """A real `streamlit run` from a folder without config (no address: every interface) runs
    the guard and shows the command; headless Chromium reads the page."""
    import os
    import socket
    import subprocess
    import sys

    chromium = "/usr/bin/chromium"
    if not os.path.exists(chromium):
        pytest.skip(f"{chromium} is missing")
    from playwright.sync_api import sync_playwright

    script = tmp_path / "guarded.py"
    script.write_text("from dptune.ui import serving\nserving.require_local_or_explicit()\nimport streamlit as st\n"
                      "st.write('SERVED')\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                               "--server.port", str(port)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page()
            for _ in range(60):
                try:
                    page.goto(f"http://127.0.0.1:{port}/")
                    break
                except Exception:  # noqa: BLE001 - the server is still starting
                    time.sleep(0.5)
            page.wait_for_selector("text=serves on this machine only", timeout=30_000)
            body = page.inner_text("body")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "--server.address localhost" in body and "SERVED" not in body


def test_file_system_refusals_are_explained_in_one_line():
    import errno

    from dptune.cli.main import environment_error_message

    assert "is a file, not a folder" in environment_error_message(FileExistsError(errno.EEXIST, "x", __file__))
    assert "is a file, not a folder" in environment_error_message(NotADirectoryError(errno.ENOTDIR, "x", "/a/b"))
    for code in (errno.EACCES, errno.EROFS):  # a read-only workspace (root ignores chmod: tested here)
        assert "choose a folder you can write to" in environment_error_message(OSError(code, "read-only", "/ws"))
    assert "no space left" in environment_error_message(OSError(errno.ENOSPC, "full", "/ws/studies.db"))
    assert environment_error_message(ValueError("a bug")) is None  # bugs keep their traceback


def test_a_read_only_workspace_for_tune_is_one_error_line(tmp_path, monkeypatch, capsys):
    import errno

    from search_helpers import TINY_MLP, write_yaml

    config = write_yaml(tmp_path / "search.yaml", {
        "mode": "budgeted", "dataset": {"builtin": "digits"}, "model": TINY_MLP, "target_epsilon": 3.0,
        "n_trials": 1, "ranges": {"batch_size": 64, "epochs": 1}, "workspace": str(tmp_path / "ws"),
    })

    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    assert main(["tune", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if line.startswith("error: ")] == [
        f"error: cannot write {tmp_path / 'ws'} (Read-only file system): choose a folder you can write to "
        "(e.g. --workspace)"]
    assert "Traceback" not in err and not (tmp_path / "ws").exists()


@pytest.mark.parametrize("changes, match", [
    ({"n_trials": limits.MAX_TRIALS + 1}, "n_trials"),
    ({"n_trials": {"distribution": "poisson", "mean": 10**9}}, "n_trials.mean"),
    ({"ranges": {"epochs": [1, 10**9]}}, r"ranges.epochs\[1\]"),
    ({"ranges": {"batch_size": [8, 10**9]}}, r"ranges.batch_size\[1\]"),
    ({"ranges": {"num_microbatches": [10**9]}}, "num_microbatches"),
    ({"workers": 10**6}, "workers"),
    ({"model": {"kind": "mlp", "hidden_units": [10**9]}}, "hidden_units"),
])
def test_search_sizes_are_bounded(changes, match):
    from dptune.spec.search import SearchSpec

    values = {"mode": "budgeted", "dataset": {"builtin": "digits"}, "model": {"kind": "mlp"}, "target_epsilon": 3.0}
    values.update(changes)
    with pytest.raises(ConfigError, match=match) as info:
        SearchSpec.from_dict(values)
    assert len(str(info.value)) < 300


def test_recipe_sizes_are_bounded():
    from dptune.spec.recipe import RecipeSpec

    for key in ("epochs", "batch_size", "verify_trials"):
        with pytest.raises(ConfigError, match=f"recipe.{key}"):
            RecipeSpec(**{key: 10**9})
