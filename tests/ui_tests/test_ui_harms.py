"""Trade-offs page, "Attacks & fairness" tab (AppTest): membership inference and group fairness
against ε, and the chosen trial's tables, from metrics computed on real arrays."""

import json

import numpy as np
import optuna
from optuna.trial import create_trial
from synthetic_studies import make_study
from ui_testing import messages, open_page, storage_url

from dptune.data import builtin_dataset
from dptune.engine.one_run_audit import one_run_audit
from dptune.evaluation.fairness import fairness_report
from dptune.evaluation.membership import membership_report
from dptune.spec.config import DPSGDConfig, ModelSpec
from dptune.spec.fairness import FairnessLimit
from dptune.workspace import Workspace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _metrics(seed: int) -> dict:
    """fairness and membership dicts of a crafted model's outputs (two groups, two classes)."""
    rng = np.random.default_rng(seed)

    def side(n, boost):
        labels = rng.integers(0, 2, n)
        logits = rng.normal(size=(n, 2))
        logits[np.arange(n), labels] += boost
        return np.log(np.exp(logits).sum(1)) - logits[np.arange(n), labels], logits, labels

    train, val = side(300, 2.0 + seed), side(200, 1.0)
    groups = np.where(rng.random(200) < 0.1, "minority", "majority")
    fairness = fairness_report(val[2], val[1].argmax(1), ("no", "yes"), groups, sensitive_name="group")
    membership = membership_report(train, val, ("no", "yes"), delta=1e-5, rng=rng)
    return {"fairness": fairness.to_dict(), "membership": membership.to_dict(), "evaluation_seconds": 0.05}


def _study_with_metrics(workspace):
    """The synthetic study's trials, each with real fairness and membership reports added."""
    source = make_study(optuna.storages.InMemoryStorage(), "src", 4, target_epsilon=100.0)
    study = make_study(storage_url(workspace), "s", 0, target_epsilon=100.0)
    metrics = [_metrics(index) for index in range(len(source.trials))]
    study.add_trials([
        create_trial(state=t.state, values=t.values, params=t.params, distributions=t.distributions,
                     user_attrs={**t.user_attrs, **metrics[index]})
        for index, t in enumerate(source.trials)
    ])
    return study, metrics


def test_the_tab_draws_both_figures_and_the_chosen_trials_tables(workspace):
    study, metrics = _study_with_metrics(workspace)
    at = open_page(workspace, "tradeoffs")
    at.session_state["trade-tabs"] = "Attacks & fairness"
    at.run()
    assert not at.exception and not at.error, messages(at)
    assert len(at.get("plotly_chart")) == 4  # pareto, the trial's curves, the two harms figures
    chosen = at.selectbox(key="trade-trial-s").value
    shown = metrics[[t.number for t in study.trials].index(chosen)]
    frames = [frame.value for frame in at.dataframe]
    attacks = next(f for f in frames if "attack" in f.columns)
    assert list(attacks["auc"]) == [a["auc"] for a in shown["membership"]["attacks"]]
    groups = next(f for f in frames if "group" in f.columns)
    assert list(groups["accuracy"]) == [g["accuracy"] for g in shown["fairness"]["groups"]]
    assert list(groups["size"]) == [g["size"] for g in shown["fairness"]["groups"]]
    captions = " ".join(c.value for c in at.caption)
    assert "validation rows, which ε does not protect" in captions
    worst = shown["fairness"]["worst_group_accuracy"]
    assert f"worst-group accuracy {worst:.3f}" in captions


def test_without_recorded_metrics_the_tab_says_so(workspace):
    make_study(storage_url(workspace), "s", 3, target_epsilon=100.0)
    at = open_page(workspace, "tradeoffs")
    at.session_state["trade-tabs"] = "Attacks & fairness"
    at.run()
    assert not at.exception and not at.error, messages(at)
    assert any("No finished trial recorded membership-inference" in i for i in messages(at)["info"])


def test_trials_over_the_fairness_limit_are_listed_and_the_chosen_one_says_where_it_stands(workspace):
    """With a search fairness_limit, the tab names the trials over it (from the recorded
    distance, recomputed here from the real fairness reports) and the chosen trial's standing."""
    source = make_study(optuna.storages.InMemoryStorage(), "src", 4, target_epsilon=100.0)
    study = make_study(storage_url(workspace), "s", 0, target_epsilon=100.0)
    limit = FairnessLimit("worst_group_accuracy", 0.7)
    study.set_user_attr("search_spec", {**study.user_attrs["search_spec"], "fairness_limit": limit.to_dict()})
    metrics = [_metrics(index) for index in range(len(source.trials))]
    violations = [limit.violation(m["fairness"]) for m in metrics]
    study.add_trials([
        create_trial(state=t.state, values=t.values, params=t.params, distributions=t.distributions,
                     user_attrs={**t.user_attrs, **metrics[i], "fairness_violation": violations[i],
                                 "within_fairness_limit": violations[i] <= 0})
        for i, t in enumerate(source.trials)
    ])
    at = open_page(workspace, "tradeoffs")
    at.session_state["trade-tabs"] = "Attacks & fairness"
    at.run()
    assert not at.exception and not at.error, messages(at)
    captions = " ".join(c.value for c in at.caption)
    complete = [t.number for t in study.trials if t.state.name == "COMPLETE"]
    over = [n for n in complete if violations[n] > 0]
    assert over, "the crafted minority must miss a 0.7 floor in some trial"
    assert f"trial(s) {', '.join(map(str, over))}." in captions
    chosen = at.selectbox(key="trade-trial-s").value
    standing = "meets" if violations[chosen] <= 0 else "is over"
    assert f"Trial {chosen} {standing} the fairness limit worst_group_accuracy >= 0.7" in captions
    assert f"{violations[chosen]:+.3f}" in captions


def test_a_saved_one_run_audit_is_shown_beside_its_trial(workspace):
    """`dptune audit` of a trial's run YAML (here a real audit of a small run) appears on the tab
    with its bound, the accountant's ε and the verdict."""
    study, _ = _study_with_metrics(workspace)
    data = builtin_dataset("breast_cancer")
    report = one_run_audit(data, ModelSpec("logreg"), DPSGDConfig(noise_multiplier=1.5, num_microbatches=32, batch_size=32, epochs=1),
                           canaries=100, mode="black_box", delta=1e-5)
    at = open_page(workspace, "tradeoffs")
    at.session_state["trade-tabs"] = "Attacks & fairness"
    at.run()
    chosen = at.selectbox(key="trade-trial-s").value
    path = Workspace.at(workspace).audit_path("s", chosen, "black_box")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(report.to_dict()))
    at.run()
    assert not at.exception and not at.error, messages(at)
    captions = " ".join(c.value for c in at.caption)
    assert (f"One-run audit (black-box, 100 canaries; Steinke, Nasr & Jagielski 2023): ε lower bound "
            f"{report.audit.epsilon_lower_bound:.3f} at 95% confidence") in captions
    assert "consistent with the accountant's ε" in captions
