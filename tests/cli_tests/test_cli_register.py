"""`dptune register FILE`: the Data page's preparation, headless; its fingerprint feeds `dptune tune`."""

from __future__ import annotations

import numpy as np
import yaml
from search_helpers import TINY_MLP, end_to_end

from dptune.cli import main
from dptune.data import load_dataset
from dptune.data.dataset import Dataset


def _csv(path, rows: int = 300) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3))
    lines = ["id;a;b;c;site;outcome"] + [
        f"{i};{x[i, 0]:.4f};{x[i, 1]:.4f};{x[i, 2]:.4f};{'north' if i % 4 else 'south'};{int(x[i, 0] > 0)}"
        for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_register_stores_the_same_dataset_as_the_data_page_and_prints_the_yaml_block(tmp_path, capsys):
    source = _csv(tmp_path / "patients.csv")
    workspace = tmp_path / "ws"
    assert main(["register", source, "--label", "outcome", "--sensitive", "site", "--drop", "id",
                 "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    expected = load_dataset(source, label_column="outcome", sensitive_column="site", drop_columns=("id",)).dataset
    stored = Dataset.load(expected.fingerprint, workspace)
    assert stored.n_train == expected.n_train and stored.sensitive_name == "site"
    np.testing.assert_array_equal(stored.x_train, expected.x_train)
    block = yaml.safe_load(out[out.index("search YAML:") + len("search YAML:"):])
    assert block["dataset"] == {"name": expected.name, "fingerprint": expected.fingerprint,
                                "n_train": expected.n_train}
    assert block["workspace"] == str(workspace)


def test_a_refused_file_gives_one_error_line_and_writes_nothing(tmp_path, capsys):
    source = _csv(tmp_path / "patients.csv")
    workspace = tmp_path / "ws"
    assert main(["register", source, "--label", "no_such_column", "--workspace", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no_such_column" in err and "Traceback" not in err
    assert not workspace.exists()


def test_a_search_yaml_can_name_the_file_directly(tmp_path, capsys):
    """`dataset: {file: ..., options: ...}`: tune prepares the file as register does, stores it
    by fingerprint and pins that fingerprint; the exported run trains on the same rows."""
    source = _csv(tmp_path / "patients.csv", rows=400)
    out = end_to_end(tmp_path, capsys, {
        "mode": "budgeted", "dataset": {"file": source, "options": {"label": "outcome", "sensitive": "site",
                                                                    "drop": ["id"]}},
        "model": TINY_MLP, "target_epsilon": 3.0, "n_trials": 1, "study_name": "from-file", "sampler_seed": 0,
        "ranges": {"batch_size": 32, "epochs": 1},
    })
    expected = load_dataset(source, label_column="outcome", sensitive_column="site", drop_columns=("id",)).dataset
    pinned = out["spec"].dataset
    assert pinned.fingerprint == expected.fingerprint and pinned.n_train == expected.n_train
    assert pinned.file == source and pinned.name == expected.name
    assert Dataset.load(expected.fingerprint, tmp_path / "ws").n_train == expected.n_train
    assert out["exported"].dataset.fingerprint == expected.fingerprint
    assert out["study"].study_name == "from-file" and out["train_accuracy"] > 0


def test_every_problem_of_a_file_dataset_block_is_reported_at_once(tmp_path, capsys):
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({
        "mode": "budgeted", "model": {"kind": "logreg"}, "target_epsilon": 3.0, "workspace": str(tmp_path / "ws"),
        "dataset": {"file": "patients.csv", "builtin": "digits",
                    "options": {"label": "", "drop": "id", "header": "yes", "validation_fraction": 2, "colour": 1}},
    }))
    assert main(["tune", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    for expected in ("give `builtin` or `file`, not both", "unknown key(s) in dataset.options: colour",
                     "dataset.options.label must be a non-empty string", "dataset.options.drop must be a list",
                     "dataset.options.header must be true or false", "validation_fraction must be a number in (0, 1)"):
        assert expected in err, expected
    assert not (tmp_path / "ws").exists()


def test_a_file_dataset_with_a_wrong_column_says_which_and_writes_nothing(tmp_path, capsys):
    source = _csv(tmp_path / "patients.csv")
    config = tmp_path / "search.yaml"
    config.write_text(yaml.safe_dump({
        "mode": "budgeted", "model": {"kind": "logreg"}, "target_epsilon": 3.0, "workspace": str(tmp_path / "ws"),
        "storage": f"sqlite:///{tmp_path / 'studies.db'}",
        "dataset": {"file": source, "options": {"label": "no_such_column"}},
    }))
    assert main(["tune", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no_such_column" in err and "Traceback" not in err
    assert not (tmp_path / "ws").exists()
