"""`dptune register FILE`: the Data page's preparation, headless; its fingerprint feeds `dptune tune`."""

from __future__ import annotations

import numpy as np
import yaml

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
