"""Search page (AppTest): settings change the spec, budget errors, start/stop, live monitor."""

import json

import optuna
import pytest
from synthetic_studies import make_study
from ui_testing import messages, open_page, storage_url

from dptune.ui import searching

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def started(monkeypatch):
    """Record worker starts instead of starting processes."""
    calls = []

    def fake_start(workspace, study, **kwargs):
        calls.append({"study": study, **kwargs})
        return []

    monkeypatch.setattr(searching, "start_workers", fake_start)
    return calls


def state(workspace):
    return json.loads((workspace / "ui_state.json").read_text())["search"]


def test_widgets_change_the_search_spec(workspace):
    at = open_page(workspace, "search")
    assert not at.exception and not at.error, messages(at)
    at.radio(key="search-mode").set_value("pareto").run()
    at.number_input(key="search-epsilon").set_value(2.0).run()
    at.number_input(key="search-trials").set_value(7).run()
    at.number_input(key="search-lr-low").set_value(0.05).run()
    at.multiselect(key="search-microbatches").set_value([1, "per_example"]).run()
    assert not at.exception and not at.error, messages(at)
    saved = state(workspace)
    assert saved["mode"] == "pareto" and saved["target_epsilon"] == 2.0 and saved["n_trials"] == 7
    assert saved["learning_rate"][0] == 0.05 and saved["num_microbatches"] == [1, "per_example"]
    shown = [c.value for c in at.code if "mode: pareto" in c.value]
    assert shown and "target_epsilon: 2.0" in shown[0] and "noise_multiplier" in shown[0]


def test_impossible_budget_is_an_error_and_start_is_disabled(workspace):
    at = open_page(workspace, "search")
    at.toggle(key="search-custom-delta").set_value(True).run()
    at.number_input(key="search-delta").set_value(1e-15).run()
    at.number_input(key="search-epsilon").set_value(0.01).run()
    at.number_input(key="search-epochs-low").set_value(50).run()
    at.number_input(key="search-epochs-high").set_value(50).run()
    at.number_input(key="search-batch-low").set_value(1024).run()
    at.number_input(key="search-batch-high").set_value(1024).run()
    assert not at.exception
    errors = messages(at)["error"]
    assert any("Impossible budget" in e and "Raise the target" in e for e in errors), errors
    assert at.button(key="search-start").disabled


def test_delta_at_least_one_over_n_warns(workspace):
    at = open_page(workspace, "search")
    at.toggle(key="search-custom-delta").set_value(True).run()
    at.number_input(key="search-delta").set_value(0.01).run()
    assert any("δ" in w or "delta" in w for w in messages(at)["warning"]), messages(at)


def test_low_above_high_is_explained(workspace):
    at = open_page(workspace, "search")
    at.number_input(key="search-lr-low").set_value(5.0).run()
    assert any("learning-rate range" in e for e in messages(at)["error"]), messages(at)


def test_start_creates_the_study_and_starts_workers(workspace, started):
    at = open_page(workspace, "search")
    at.number_input(key="search-trials").set_value(2).run()
    at.number_input(key="search-workers").set_value(1).run()
    at.button(key="search-start").click().run()
    assert not at.exception and not at.error, messages(at)
    assert len(started) == 1 and started[0]["n_workers"] == 1
    names = optuna.get_all_study_names(storage_url(workspace))
    assert names == [started[0]["study"]]
    study = optuna.load_study(study_name=names[0], storage=storage_url(workspace))
    assert study.user_attrs["mode"] == "budgeted" and study.user_attrs["n_trials_planned"] == 2
    assert json.loads((workspace / "ui_state.json").read_text())["study"] == names[0]
    # the study is shown; its trials wait for workers
    assert at.selectbox(key="search-study").value == names[0]
    assert any("2 queued" in p.proto.text for p in at.get("progress"))


def test_live_monitor_shows_running_trials_and_reasons(workspace):
    workspace.mkdir(parents=True)
    make_study(storage_url(workspace), "live", 3, running=1, failed=1, pruned=1, epochs=4)
    at = open_page(workspace, "search")
    assert not at.exception and not at.error, messages(at)
    texts = [p.proto.text for p in at.get("progress")]
    assert any(t.startswith("3 of 6 trials done") or "3 finished" in t for t in texts), texts
    assert any(t.startswith("trial 3 · epoch 2/4") for t in texts), texts
    table = at.dataframe[0].value
    reasons = " ".join(str(r) for r in table["reason"])
    assert "NaN" in reasons and "pruned after epoch" in reasons
    assert set(table["status"]) == {"finished", "failed", "pruned"}


def test_stop_and_resume_call_the_worker_functions(workspace, monkeypatch, started):
    workspace.mkdir(parents=True)
    study = make_study(storage_url(workspace), "queued", 1)
    study.enqueue_trial({})
    stopped = []
    monkeypatch.setattr(searching, "stop_workers", lambda ws, name: stopped.append(name) or [])
    at = open_page(workspace, "search")
    assert at.button(key="search-stop").disabled  # no worker alive
    at.button(key="search-resume").click().run()
    assert started and started[0]["study"] == "queued"


def test_a_stopped_workers_trial_is_failed_and_requeued_after_its_heartbeat(workspace, monkeypatch):
    """The trial a stopped worker was running does not stay RUNNING forever."""
    import time

    from dptune.data import builtin_dataset
    from dptune.engine.user_models import suggest_model_spec
    from dptune.spec.search import SearchSpec
    from dptune.study.search import create_study, open_storage
    from dptune.ui import specs

    dataset = builtin_dataset("digits")
    state = specs.default_state()
    state["search"].update(specs.QUICK_START_SEARCH, n_trials=1)
    values = specs.search_spec_dict(
        state, dataset_ref={"builtin": "digits", "fingerprint": dataset.fingerprint, "n_train": dataset.n_train},
        model_spec=suggest_model_spec(dataset), workspace=str(workspace), storage=storage_url(workspace),
        study_name="hb",
    )
    values["heartbeat_seconds"] = 1
    create_study(SearchSpec.from_dict(values), dataset=dataset)
    # a "worker" takes the queued trial, beats once, then goes silent (stopped)
    storage = open_storage(storage_url(workspace), heartbeat_seconds=1)
    study = optuna.load_study(study_name="hb", storage=storage)
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    time.sleep(4)  # > 3 heartbeats
    at = open_page(workspace, "search")  # the live monitor notices: no worker of ours runs it
    assert not at.exception and not at.error, messages(at)
    states = [t.state.name for t in optuna.load_study(study_name="hb", storage=storage_url(workspace)).trials]
    assert states == ["FAIL", "WAITING"], states  # failed, and its retry is queued for the next worker


def test_recipe_progress_is_shown_step_by_step(workspace):
    workspace.mkdir(parents=True)
    study = make_study(storage_url(workspace), "r", 2, mode="recipe")
    study.set_user_attr("recipe", {
        "clip": {"source": "private", "l2_norm_clip": 4.95, "quantile": 0.75, "epsilon": 0.1},
        "status": "no_feasible_noise",
        "baseline": {"trial": 0, "val_accuracy": 0.82, "tolerance": 0.05, "threshold": 0.77},
        "noise_search": {"feasible_trials": 0, "message": "no m = 1 trial kept validation accuracy >= 0.7700; lower "
                         "ranges.noise_multiplier"},
    })
    at = open_page(workspace, "search")
    assert not at.exception and not at.error, messages(at)
    text = " ".join(m.value for m in at.markdown)
    assert "C = 4.95 (private, 75% quantile, ε_C = 0.1)" in text
    assert "val accuracy 0.82" in text and "lower ranges.noise_multiplier" in text


def test_recipe_mode_uses_its_own_sigma_range(workspace):
    at = open_page(workspace, "search")
    at.radio(key="search-mode").set_value("recipe").run()
    assert not at.exception and not at.error, messages(at)
    assert at.number_input(key="search-sigma-m1-low").value == 0.001
    shown = [c.value for c in at.code if "mode: recipe" in c.value][0]
    assert "- 0.001" in shown and "num_microbatches:\n  - 1" in shown


def test_start_search_refuses_an_impossible_budget_before_creating_the_study(workspace, started):
    """The library refuses too, not only the disabled button: nothing is created or started."""
    from dptune.data import builtin_dataset
    from dptune.errors import ConfigError
    from dptune.spec.search import SearchSpec

    dataset = builtin_dataset("digits")
    spec = SearchSpec.from_dict({
        "mode": "budgeted", "dataset": {"builtin": "digits"}, "model": {"kind": "mlp", "hidden_units": [16]},
        "target_epsilon": 0.01, "delta": 1e-15, "ranges": {"batch_size": 1024, "epochs": 50},
        "workspace": str(workspace), "storage": storage_url(workspace), "study_name": "refused",
    })
    with pytest.raises(ConfigError, match="^Impossible budget"):
        searching.start_search(spec, dataset, n_workers=1)
    assert started == [] and optuna.get_all_study_names(storage_url(workspace)) == []
