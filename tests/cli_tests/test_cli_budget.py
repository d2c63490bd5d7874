"""`dptune tune` checks the privacy budget before any trial runs, as the dashboard does."""

from __future__ import annotations

from pathlib import Path

import optuna
import yaml
from search_helpers import TINY_MLP, write_yaml
from ui_testing import messages, open_page

from dptune.cli import main
from dptune.data import builtin_dataset
from dptune.spec.search import load_search_spec
from dptune.study.budget import check_budget


def _lines(text: str, prefix: str) -> list[str]:
    return [line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)]


def _no_study(storage: str) -> bool:
    path = Path(storage.removeprefix("sqlite:///"))
    return not path.exists() or optuna.get_all_study_names(storage) == []


def test_tune_prints_every_problem_and_exits_2_before_creating_the_study(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    config = write_yaml(tmp_path / "search.yaml", {
        "mode": "budgeted", "dataset": {"builtin": "digits"}, "model": TINY_MLP, "target_epsilon": 0.001,
        "delta": 0.01, "ranges": {"batch_size": 1024, "epochs": 2000}, "workspace": str(tmp_path / "ws"),
        "storage": storage,
    })
    assert main(["tune", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    expected = check_budget(load_search_spec(config), builtin_dataset("digits").n_train)
    assert len(expected.errors) == 1 and len(expected.warnings) == 2  # an impossible ε and a δ above 1/N
    assert _lines(err, "error: ") == expected.errors
    assert _lines(err, "warning: ") == [w.removeprefix("Warning: ") for w in expected.warnings]
    assert _no_study(storage)


def test_the_cli_refuses_what_the_dashboard_refuses_with_the_same_messages(workspace, capsys):
    """Impossible settings on the Search page; the YAML the page shows for `dptune tune` gets the
    same errors and warnings from the CLI."""
    at = open_page(workspace, "search")
    at.toggle(key="search-custom-delta").set_value(True).run()
    at.number_input(key="search-delta").set_value(0.01).run()
    at.number_input(key="search-epsilon").set_value(0.01).run()
    for key in ("search-epochs-low", "search-epochs-high"):
        at.number_input(key=key).set_value(2000).run()
    for key in ("search-batch-low", "search-batch-high"):
        at.number_input(key=key).set_value(1024).run()
    assert not at.exception
    shown = messages(at)
    assert at.button(key="search-start").disabled
    assert any(e.startswith("Impossible budget") for e in shown["error"]), shown
    (page_yaml,) = [c.value for c in at.code if c.value.startswith("mode: budgeted")]
    config = Path(workspace) / "search.yaml"
    config.write_text(page_yaml)

    assert main(["tune", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert _lines(err, "error: ") == shown["error"]
    cli_warnings = _lines(err, "warning: ")
    assert len(cli_warnings) == 2 and cli_warnings == [w.removeprefix("Warning: ") for w in shown["warning"]]
    assert _no_study(yaml.safe_load(page_yaml)["storage"])
