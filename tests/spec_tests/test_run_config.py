"""The run YAML and the search YAML: round trips, and a clear error naming the key for
every wrong type, unknown key, missing key and out-of-range value."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from dptune.data import resolve_dataset
from dptune.data.dataset import Dataset
from dptune.errors import ConfigError, DataError
from dptune.spec.config import DPSGDConfig, ModelSpec
from dptune.spec.dataset_ref import DatasetRef
from dptune.spec.run import load_run_config, package_versions
from dptune.spec.search import SearchSpec, load_search_spec
from dptune.spec.trial_count import TrialCount, tnb_mean

FINGERPRINT = "a" * 64


def run_yaml() -> dict:
    return {
        "l2_norm_clip": 1.5,
        "noise_multiplier": 1.1,
        "num_microbatches": 64,
        "learning_rate": 0.25,
        "batch_size": 64,
        "epochs": 3,
        "optimizer": "sgd",
        "momentum": 0.9,
        "sampling": "poisson",
        "seed": 0,
        "epsilon": 2.5,
        "delta": 1e-5,
        "accountant": {"method": "rdp", "epsilon_rdp": 2.5, "steps": 60, "microbatched": False},
        "dataset": {"name": "digits", "builtin": "digits", "fingerprint": FINGERPRINT, "n_train": 1438},
        "model": {"kind": "mlp", "hidden_units": [32], "activation": "relu", "path": None},
        "metrics": {"val_accuracy": 0.9},
        "search": {"study": "s", "trial": 3, "mode": "budgeted"},
        "versions": {"dptune": "0.1.0"},
    }


def write(tmp_path, values, name="run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def test_run_yaml_round_trip(tmp_path):
    config = load_run_config(write(tmp_path, run_yaml()))
    assert config.training == DPSGDConfig(l2_norm_clip=1.5, noise_multiplier=1.1, num_microbatches=64,
                                          learning_rate=0.25, batch_size=64, epochs=3)
    assert config.model == ModelSpec(kind="mlp", hidden_units=(32,))
    assert config.dataset.fingerprint == FINGERPRINT and config.epsilon == 2.5
    dumped = config.dump(tmp_path / "again.yaml")
    text = dumped.read_text()
    # TF Privacy's key names, at the top level
    for key in ("l2_norm_clip:", "noise_multiplier:", "num_microbatches:", "learning_rate:", "batch_size:", "epochs:"):
        assert key in text
    assert load_run_config(dumped) == config


@pytest.mark.parametrize(
    "change,key",
    [
        ({"batch_size": "64"}, "batch_size"),  # wrong type
        ({"l2_norm_clip": -1.0}, "l2_norm_clip"),  # out of range
        ({"num_microbatches": 65}, "num_microbatches"),  # above the batch size
        ({"delta": 1.5}, "delta"),
        ({"epsilon": "small"}, "epsilon"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"sampling": 3}, "sampling"),
        ({"clip_norm": 1.0}, "clip_norm"),  # unknown key
        ({"model": {"kind": "mlp", "hidden_units": 32}}, "model.hidden_units"),
        ({"model": {"kind": "mlp", "layers": [3]}}, "layers"),
        ({"dataset": {"name": "digits"}}, "dataset"),
        ({"dataset": {"builtin": "digits", "fingerprint": "xyz"}}, "dataset.fingerprint"),
        ({"dataset": {"builtin": "digits", "rows": 3}}, "dataset.rows"),
        ({"accountant": {"method": "moments"}}, "accountant.method"),
        ({"accountant": {"epsilon_rdp": 1.0}}, "accountant.method"),
        ({"accountant": {"method": "rdp", "steps": 0}}, "accountant.steps"),
        ({"metrics": {"accuracy": 0.9}}, "metrics.accuracy"),
        ({"search": {"trial_number": 3}}, "search.trial_number"),
        ({"versions": {"tensorflow": 2.21}}, "versions.tensorflow"),
    ],
)
def test_run_yaml_errors_name_the_key(tmp_path, change, key):
    values = {**run_yaml(), **change}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        load_run_config(write(tmp_path, values))
    assert "run.yaml" in str(info.value)


@pytest.mark.parametrize("missing", ["l2_norm_clip", "noise_multiplier", "delta", "dataset", "model", "seed"])
def test_run_yaml_missing_key(tmp_path, missing):
    values = run_yaml()
    del values[missing]
    with pytest.raises(ConfigError, match=f"missing key.*{missing}"):
        load_run_config(write(tmp_path, values))


def test_run_yaml_not_a_mapping_and_not_yaml(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_run_config(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(tmp_path / "nope.yaml")


def test_run_yaml_refuses_python_tags(tmp_path):
    (tmp_path / "evil.yaml").write_text("l2_norm_clip: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_run_config(tmp_path / "evil.yaml")


def test_versions_lists_the_packages():
    versions = package_versions()
    assert {"python", "tensorflow", "optuna", "dp-accounting"} <= set(versions)


# ---------------------------------------------------------------------------- dataset refs
def small_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset("tiny", rng.normal(size=(20, 3)), rng.integers(0, 2, 20), rng.normal(size=(6, 3)),
                   rng.integers(0, 2, 6), ("a", "b"))


def test_dataset_ref_resolves_by_fingerprint(tmp_path):
    dataset = small_dataset()
    dataset.save(tmp_path)
    ref = DatasetRef.from_dataset(dataset, workspace=tmp_path)
    assert resolve_dataset(ref).fingerprint == dataset.fingerprint
    with pytest.raises(DataError, match="not in the workspace"):
        resolve_dataset(DatasetRef(fingerprint="b" * 64), tmp_path)
    with pytest.raises(DataError, match="n_train"):
        resolve_dataset(DatasetRef(fingerprint=dataset.fingerprint, n_train=21), tmp_path)


def test_dataset_ref_rebuilds_a_builtin_and_checks_its_fingerprint(tmp_path):
    ref = DatasetRef(builtin="digits")
    dataset = resolve_dataset(ref, tmp_path)
    assert (tmp_path / f"{dataset.fingerprint}.npz").exists()
    with pytest.raises(DataError, match="changed"):
        resolve_dataset(DatasetRef(builtin="digits", fingerprint="c" * 64), tmp_path / "empty")


# ---------------------------------------------------------------------------- search YAML
def search_yaml(**changes) -> dict:
    values = {
        "mode": "budgeted",
        "dataset": {"builtin": "digits"},
        "model": {"kind": "mlp", "hidden_units": [32]},
        "target_epsilon": 3.0,
    }
    values.update(changes)
    return values


def test_search_yaml_defaults_and_round_trip(tmp_path):
    spec = load_search_spec(write(tmp_path, search_yaml(), "search.yaml"))
    assert spec.mode == "budgeted" and spec.n_trials == TrialCount(n=20)
    assert spec.pruner.kind == "median" and spec.sampler == "tpe"
    assert spec.ranges.noise_multiplier is None  # calibrated in budgeted mode
    assert spec.resolved_storage.startswith("sqlite:///") and spec.resolved_storage.endswith("studies.db")
    assert SearchSpec.from_dict(spec.to_dict()) == spec
    pareto = SearchSpec.from_dict(search_yaml(mode="pareto"))
    assert pareto.pruner.kind == "none" and pareto.ranges.noise_multiplier == (0.5, 5.0)
    recipe = SearchSpec.from_dict(search_yaml(mode="recipe", recipe={"clip_quantile": 0.9}))
    assert recipe.ranges.num_microbatches == (1,) and recipe.recipe.clip_quantile == 0.9


@pytest.mark.parametrize(
    "change,key",
    [
        ({"mode": "greedy"}, "mode"),
        ({"target_epsilon": 0}, "target_epsilon"),
        ({"target_epsilon": "3"}, "target_epsilon"),
        ({"delta": 2}, "delta"),
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": "ten"}, "n_trials"),
        ({"n_trials": {"distribution": "uniform", "mean": 3}}, "n_trials.distribution"),
        ({"n_trials": {"distribution": "poisson"}}, "n_trials.mean"),
        ({"n_trials": {"distribution": "truncated_negative_binomial", "mean": 5}}, "n_trials.shape"),
        ({"ranges": {"batch_size": [64, 8]}}, "ranges.batch_size"),
        ({"ranges": {"batch_size": [8.5, 64]}}, "ranges.batch_size"),
        ({"ranges": {"learning_rate": [-1, 1]}}, "ranges.learning_rate"),
        ({"ranges": {"num_microbatches": [0, 8]}}, "ranges.num_microbatches"),
        ({"ranges": {"momentum": [0, 1]}}, "ranges.momentum"),
        ({"ranges": {"noise_multiplier": [0.5, 2]}}, "ranges.noise_multiplier"),  # budgeted calibrates it
        ({"fixed": {"optimizer": "lbfgs"}}, "fixed.optimizer"),
        ({"fixed": {"seed": -1}}, "fixed.seed"),
        ({"fixed": {"batch": 3}}, "fixed.batch"),
        ({"sampler": "cmaes"}, "sampler"),
        ({"pruner": "aggressive"}, "pruner.kind"),
        ({"pruner": {"kind": "median", "n_warmup_steps": -1}}, "pruner.n_warmup_steps"),
        ({"recipe": {"clip_quantile": 1.5}}, "recipe.clip_quantile"),
        ({"recipe": {"tolerance": "5%"}}, "recipe.tolerance"),
        ({"recipe": {"clip_epsilon": 0}}, "recipe.clip_epsilon"),
        ({"recipe": {"speed": 1}}, "recipe.speed"),
        ({"study_name": "has space"}, "study_name"),
        ({"heartbeat_seconds": 0}, "heartbeat_seconds"),
        ({"epsilon_includes_search_cost": "yes"}, "epsilon_includes_search_cost"),
        ({"epoch": 3}, "epoch"),  # unknown top-level key
        ({"max_trial_epsilon": 9.0}, "max_trial_epsilon"),  # pareto only
        ({"mode": "pareto", "max_trial_epsilon": 2.0}, "max_trial_epsilon"),  # below the target
        ({"mode": "pareto", "max_trial_epsilon": -1}, "max_trial_epsilon"),
    ],
)
def test_search_yaml_errors_name_the_key(tmp_path, change, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        load_search_spec(write(tmp_path, search_yaml(**change), "search.yaml"))
    assert "search.yaml" in str(info.value)


@pytest.mark.parametrize("missing", ["mode", "dataset", "model", "target_epsilon"])
def test_search_yaml_missing_key(tmp_path, missing):
    values = search_yaml()
    del values[missing]
    with pytest.raises(ConfigError, match=f"missing key.*{missing}"):
        load_search_spec(write(tmp_path, values, "search.yaml"))


def test_pareto_caps_one_trials_epsilon_by_default(tmp_path):
    """max_trial_epsilon: default 3 × target (an old YAML without the key loads with it), a
    given cap round-trips through the YAML, and it follows the target when left out."""
    old = load_search_spec(write(tmp_path, search_yaml(mode="pareto"), "old.yaml"))
    assert old.max_trial_epsilon is None and old.trial_epsilon_cap == 9.0
    assert "max_trial_epsilon" not in old.to_dict() and SearchSpec.from_dict(old.to_dict()) == old
    assert old.replace(target_epsilon=1.0).trial_epsilon_cap == 3.0
    given = load_search_spec(write(tmp_path, search_yaml(mode="pareto", max_trial_epsilon=4.5), "new.yaml"))
    assert given.trial_epsilon_cap == 4.5 and given.to_dict()["max_trial_epsilon"] == 4.5
    assert SearchSpec.from_dict(yaml.safe_load(yaml.safe_dump(given.to_dict()))) == given
    assert SearchSpec.from_dict(search_yaml()).trial_epsilon_cap is None  # budgeted: every trial at the target


def test_search_cost_rules_are_enforced():
    random_trials = {"distribution": "poisson", "mean": 5}
    with pytest.raises(ConfigError, match="sampler: .*random"):
        SearchSpec.from_dict(search_yaml(n_trials=random_trials, pruner="none"))
    with pytest.raises(ConfigError, match="pruner"):
        SearchSpec.from_dict(search_yaml(n_trials=random_trials, sampler="random"))
    with pytest.raises(ConfigError, match="ranges.batch_size"):
        SearchSpec.from_dict(search_yaml(n_trials=random_trials, sampler="random", pruner="none"))
    with pytest.raises(ConfigError, match="pareto"):
        SearchSpec.from_dict(search_yaml(mode="pareto", pruner="median"))
    with pytest.raises(ConfigError, match="recipe"):
        SearchSpec.from_dict(search_yaml(mode="recipe", epsilon_includes_search_cost=True))
    spec = SearchSpec.from_dict(search_yaml(
        n_trials=random_trials, sampler="random", pruner="none", epsilon_includes_search_cost=True,
        ranges={"batch_size": 64, "epochs": 2},
    ))
    assert spec.n_trials.random and spec.ranges.batch_size == (64, 64)


def test_random_trial_counts_have_the_stated_mean():
    rng = np.random.default_rng(0)
    poisson = TrialCount(distribution="poisson", n=None, mean=6)
    tnb = TrialCount(distribution="truncated_negative_binomial", n=None, mean=6, shape=0.5)
    poisson_draws = [poisson.draw(rng) for _ in range(4000)]
    tnb_draws = [tnb.draw(rng) for _ in range(4000)]
    assert abs(np.mean(poisson_draws) - 6) < 0.2
    assert abs(np.mean(tnb_draws) - 6) < 0.5 and min(tnb_draws) >= 1  # truncated: never 0
    assert tnb_mean(0.5, 1.0) == pytest.approx(2.0)  # geometric: 1/gamma
    assert TrialCount(n=7).draw() == 7


def test_default_learning_rates_are_sensible_for_the_optimizer():
    """Issue 10 item 16: no default learning-rate range reaches 3; it follows the optimizer."""
    assert SearchSpec.from_dict(search_yaml()).ranges.learning_rate == (0.01, 1.0)
    adam = SearchSpec.from_dict(search_yaml(fixed={"optimizer": "adam"}, ranges={"batch_size": [64, 64]}))
    assert adam.ranges.learning_rate == (0.0001, 0.01) and adam.ranges.batch_size == (64, 64)
    assert SearchSpec.from_dict(search_yaml(fixed={"optimizer": "momentum"})).ranges.learning_rate == (0.001, 0.1)


def test_the_dashboards_optimizer_and_momentum_reach_the_search_yaml():
    """The Search page's state carries optimizer and momentum into the spec's `fixed`."""
    from dptune.ui import specs

    state = specs.default_state()
    assert state["search"]["learning_rate"] == [0.01, 1.0] and max(specs.QUICK_START_SEARCH["learning_rate"]) <= 1.0
    assert (state["search"]["optimizer"], state["search"]["momentum"]) == ("sgd", 0.9)
    kwargs = {"dataset_ref": {"builtin": "digits"}, "model_spec": ModelSpec(kind="mlp", hidden_units=(32,)),
              "workspace": "ws", "storage": "sqlite:///x.db", "study_name": "s"}
    spec = specs.search_spec_from_state(state, **kwargs)
    assert spec.fixed == {"optimizer": "sgd", "seed": 0}  # momentum only where it is used
    state["search"].update(optimizer="momentum", momentum=0.8, learning_rate=specs.LEARNING_RATE_RANGES["momentum"])
    spec = specs.search_spec_from_state(state, **kwargs)
    assert spec.fixed["optimizer"] == "momentum" and spec.base_config().momentum == 0.8
    assert yaml.safe_load(yaml.safe_dump(spec.to_dict()))["fixed"] == {"optimizer": "momentum", "seed": 0,
                                                                        "momentum": 0.8}
    state["search"].update(mode="pareto", target_epsilon=2.0)  # the dashboard writes the ε cap out
    assert specs.search_spec_from_state(state, **kwargs).to_dict()["max_trial_epsilon"] == 6.0
    state["search"]["max_trial_epsilon"] = 5.0
    assert specs.search_spec_from_state(state, **kwargs).trial_epsilon_cap == 5.0
    state["search"].update(mode="budgeted", optimizer="lbfgs")
    with pytest.raises(ConfigError, match="optimizer"):
        specs.search_spec_from_state(state, **kwargs)
    state["search"].update(optimizer="momentum", momentum=1.0)
    with pytest.raises(ConfigError, match="momentum"):
        specs.search_spec_from_state(state, **kwargs)
