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


# ------------------------------------------------------------------ issue 10, items 1, 2, 4, 5
def _progress(at) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


def _counts_line(at) -> str:
    return next(t for t in _progress(at) if " trials done — " in t)


def test_start_shows_the_new_study_even_when_another_was_selected(workspace, started):
    """Item 1: the Study selectbox follows Start (this session and after a reload)."""
    import re

    workspace.mkdir(parents=True)
    make_study(storage_url(workspace), "old", 2)
    at = open_page(workspace, "search")
    assert at.selectbox(key="search-study").value == "old"
    at.number_input(key="search-trials").set_value(3).run()
    at.button(key="search-start").click().run()
    assert not at.exception and not at.error, messages(at)
    new = started[0]["study"]
    assert new != "old" and at.selectbox(key="search-study").value == new
    assert json.loads((workspace / "ui_state.json").read_text())["study"] == new
    assert re.match(r"0 of 3 trials done .* 3 queued", _counts_line(at)), _counts_line(at)
    at.run()  # a later rerun does not write the old study back
    assert at.selectbox(key="search-study").value == new
    assert json.loads((workspace / "ui_state.json").read_text())["study"] == new
    again = open_page(workspace, "search")  # a reload
    assert again.selectbox(key="search-study").value == new
    # the user can still pick another study, and that choice is saved
    again.selectbox(key="search-study").set_value("old").run()
    assert json.loads((workspace / "ui_state.json").read_text())["study"] == "old"
    assert again.selectbox(key="search-study").value == "old"


def test_start_is_disabled_while_the_started_study_runs(workspace, started):
    """Item 2: a second Start needs a confirmation while the first study has queued trials."""
    at = open_page(workspace, "search")
    at.number_input(key="search-trials").set_value(2).run()
    at.button(key="search-start").click().run()
    assert not at.exception and not at.error, messages(at)
    assert len(started) == 1
    assert at.button(key="search-start").disabled
    warning = next(w for w in messages(at)["warning"] if "still running" in w)
    assert started[0]["study"] in warning and "0 running, 2 queued, 0 worker process(es)" in warning
    assert at.button(key="search-start-stop").disabled  # no worker of ours alive to stop
    with pytest.raises(Exception, match="disabled"):  # a browser user cannot click it
        at.button(key="search-start").click()
    at.run()
    assert len(started) == 1 and len(optuna.get_all_study_names(storage_url(workspace))) == 1
    assert at.button(key="search-start").disabled
    at.checkbox(key="search-start-anyway").check().run()
    assert not at.button(key="search-start").disabled
    at.number_input(key="search-epsilon").set_value(4.0).run()
    at.button(key="search-start").click().run()
    assert not at.exception and not at.error, messages(at)
    assert len(started) == 2 and len(optuna.get_all_study_names(storage_url(workspace))) == 2
    assert at.button(key="search-start").disabled  # the new one runs: asked again
    assert at.selectbox(key="search-study").value == started[1]["study"]


def test_start_offers_stop_workers_while_workers_of_the_study_live(workspace, monkeypatch, started):
    """Item 2: with live workers, Start is disabled and Stop workers stops them."""
    from types import SimpleNamespace

    workspace.mkdir(parents=True)
    make_study(storage_url(workspace), "busy", 2, running=1)
    alive = [SimpleNamespace(pid=1, alive=True)]
    stopped = []
    monkeypatch.setattr(searching, "live_workers", lambda ws, name: list(alive))
    monkeypatch.setattr(searching, "stop_workers", lambda ws, name: stopped.append(name) or alive.clear() or [1])
    at = open_page(workspace, "search").run()  # the first run saves "busy" as the current study
    assert at.button(key="search-start").disabled
    warning = next(w for w in messages(at)["warning"] if "still running" in w)
    assert "1 running, 0 queued, 1 worker process(es)" in warning
    at.button(key="search-start-stop").click().run()
    assert stopped == ["busy"]


def test_counts_and_running_panels_come_from_one_snapshot(workspace):
    """Item 4: the number of running trials in the counts equals the running trials shown."""
    import re

    workspace.mkdir(parents=True)
    make_study(storage_url(workspace), "live2", 2, running=2, failed=1, epochs=6)
    at = open_page(workspace, "search")
    assert not at.exception and not at.error, messages(at)
    line = _counts_line(at)
    found = re.match(r"(\d+) of (\d+) trials done — (\d+) finished, (\d+) pruned, (\d+) failed, (\d+) running, "
                     r"(\d+) queued", line)
    assert found, line
    done, total, finished, pruned, failed, running, queued = map(int, found.groups())
    panels = [t for t in _progress(at) if t.startswith("trial ")]
    assert running == len(panels) == 2, (line, panels)
    assert (done, finished, failed, total) == (3, 2, 1, 5)
    # one read: the panels are exactly the trials counted as running
    study = optuna.load_study(study_name="live2", storage=storage_url(workspace))
    numbers = sorted(t.number for t in study.trials if t.state.name == "RUNNING")
    assert sorted(int(t.split()[1]) for t in panels) == numbers


def test_live_view_counts_and_panels_agree():
    """Item 4, below the page: live_view derives counts and panels from the same trials."""
    from dptune.ui import core, live

    study = make_study("sqlite://", "mem", 3, running=1, pruned=1)
    trials = tuple(study.trials)
    snapshot = core.StudySnapshot("mem", dict(study.user_attrs), trials, None, {"RUNNING": 0}, 0.0)
    view = live.live_view(snapshot)  # the stale counts passed in are not used
    assert view.counts["RUNNING"] == len(view.running) == 1
    assert (view.finished, view.total) == (4, 5)


def test_recipe_shows_what_it_will_run_and_hides_unused_fields(workspace, started):
    """Item 5: the recipe's plan (phases and runs) is shown; workers and the C range are not asked."""
    at = open_page(workspace, "search")
    at.radio(key="search-mode").set_value("recipe").run()
    at.number_input(key="search-trials").set_value(6).run()
    assert not at.exception and not at.error, messages(at)
    keys = {w.key for w in at.number_input}
    assert "search-workers" not in keys and "search-clip-low" not in keys and "search-clip-high" not in keys
    plan = next(d.value for d in at.dataframe if "training runs" in d.value.columns)
    assert list(plan["training runs"]) == [0, 1, 6, 0, 2]
    assert "quantile" in plan["what"][0]
    text = " ".join(m.value for m in at.markdown)
    assert "9 training runs in 1 driver process" in text and "worker processes: **1**" in text
    assert any("9 run(s) (1 baseline + 6 noise search + 2 verify)" in c.value and "1 driver process" in c.value
               for c in at.caption)
    at.button(key="search-start").click().run()
    assert not at.exception and not at.error, messages(at)
    assert len(started) == 1 and started[0]["n_workers"] == 1 and started[0]["command"]
    study = optuna.load_study(study_name=started[0]["study"], storage=storage_url(workspace))
    assert study.user_attrs["n_trials_planned"] == 9  # what the page said, before the driver runs
    assert _counts_line(at).startswith("0 of 9 trials done")


def test_budgeted_mode_still_asks_for_workers_and_c(workspace, started):
    """Item 5: the fields the recipe hides are there in the modes that use them."""
    at = open_page(workspace, "search")
    keys = {w.key for w in at.number_input}
    assert {"search-workers", "search-clip-low", "search-clip-high"} <= keys
    at.number_input(key="search-workers").set_value(2).run()
    at.number_input(key="search-trials").set_value(4).run()
    assert any("4 trial(s)" in c.value and "2 worker process(es)" in c.value for c in at.caption)
    at.button(key="search-start").click().run()
    assert started[0]["n_workers"] == 2


def test_what_will_not_be_private_is_said_before_start(workspace):
    """Issue 10 item 15: the page shows the same notes `dptune tune` prints (study.budget.privacy_notes)."""
    at = open_page(workspace, "search")
    assert not at.exception, messages(at)
    at.radio(key="search-mode").set_value("recipe").run()
    assert not at.exception, messages(at)
    shown = " ".join(messages(at)["info"])
    assert "non-private baseline (σ = 0)" in shown and "∞" in shown


def test_optimizer_and_momentum_reach_the_search_yaml(workspace):
    at = open_page(workspace, "search")
    at.selectbox(key="search-optimizer").set_value("momentum").run()
    at.number_input(key="search-momentum").set_value(0.8).run()
    assert not at.exception, messages(at)
    yaml_text = " ".join(c.value for c in at.code)
    assert "optimizer: momentum" in yaml_text and "momentum: 0.8" in yaml_text
