"""The sidebar accountant calculator (AppTest): the CLI's numbers, updated as inputs change."""

import json

import pytest
from ui_testing import messages, open_page

from dptune import privacy
from dptune.cli import main as cli_main
from dptune.data import builtin_dataset
from dptune.privacy.statement import format_epsilon

DIGITS_N = builtin_dataset("digits").n_train  # N of the default dataset


def sidebar_metrics(at):
    return {m.label: m.value for m in at.metric}


def cli_json(capsys, command):
    args = command.split()[1:]  # drop "dptune"
    assert cli_main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("page", ["home", "data", "model", "clip_norm", "search", "tradeoffs", "export"])
def test_calculator_is_in_the_sidebar_of_every_page(workspace, page):
    at = open_page(workspace, page)
    assert {m.label for m in at.sidebar.metric} >= {"ε (RDP)", "ε (PLD)", "σ for ε (RDP)", "σ for ε (PLD)"}
    assert {"ε (RDP)", "ε (PLD)", "σ for ε (RDP)", "σ for ε (PLD)"} <= set(sidebar_metrics(at))
    assert at.number_input(key="calc-n").value == DIGITS_N  # N of the current dataset (digits)


def test_calculator_matches_the_cli_and_the_accountant(workspace, capsys):
    at = open_page(workspace, "home")
    at.number_input(key="calc-b").set_value(64).run()
    at.number_input(key="calc-s").set_value(0.9).run()
    at.number_input(key="calc-e").set_value(3.0).run()
    shown = sidebar_metrics(at)
    report = privacy.compute_epsilon(DIGITS_N, 64, 0.9, epochs=3.0, delta=None)
    # shown rounded up (conservative): never below the accountant's value, at most one unit above
    for key, exact in (("ε (RDP)", report.epsilon_rdp), ("ε (PLD)", report.epsilon_pld)):
        assert exact <= float(shown[key]) <= exact + 1e-3
    command = [c.value for c in at.code if c.value.startswith("dptune epsilon")][0]
    printed = cli_json(capsys, command)
    assert format_epsilon(printed["epsilon_rdp"]) == shown["ε (RDP)"]
    assert format_epsilon(printed["epsilon_pld"]) == shown["ε (PLD)"]
    sigma = privacy.calibrate_noise_multiplier(3.0, DIGITS_N, 64, epochs=3.0, delta=None)
    assert sigma <= float(shown["σ for ε (RDP)"]) <= sigma * 1.001  # σ rounded up: never less noise
    assert privacy.compute_epsilon(DIGITS_N, 64, float(shown["σ for ε (RDP)"]), epochs=3.0, delta=None,
                                   pld=False).epsilon_rdp <= 3.0


def test_microbatching_charges_half_sigma(workspace, capsys):
    at = open_page(workspace, "home")
    before = sidebar_metrics(at)["ε (RDP)"]
    at.checkbox(key="calc-pe").set_value(False).run()
    at.number_input(key="calc-m").set_value(8).run()
    after = sidebar_metrics(at)["ε (RDP)"]
    assert float(after) > float(before)
    command = [c.value for c in at.code if c.value.startswith("dptune epsilon")][0]
    assert "--microbatches 8" in command
    assert format_epsilon(cli_json(capsys, command)["epsilon_rdp"]) == after
    assert any("σ/2" in c.value for c in at.caption)


def test_custom_delta_and_warning(workspace):
    at = open_page(workspace, "home")
    at.checkbox(key="calc-dd").set_value(False).run()
    at.number_input(key="calc-d").set_value(0.01).run()
    assert any("δ" in w or "delta" in w for w in [w.value for w in at.warning])
    command = [c.value for c in at.code if c.value.startswith("dptune epsilon")][0]
    assert "--delta 0.01" in command


def test_batch_larger_than_n_is_an_error_not_a_crash(workspace):
    at = open_page(workspace, "home")
    at.number_input(key="calc-b").set_value(5000).run()
    assert not at.exception
    assert any("larger than N" in e.value for e in at.error)


def test_unreachable_sigma_is_a_warning(workspace):
    at = open_page(workspace, "home")
    at.number_input(key="calc-t").set_value(0.01).run()
    at.number_input(key="calc-e").set_value(1000.0).run()
    at.number_input(key="calc-b").set_value(DIGITS_N).run()
    assert not at.exception
    assert any("unreachable" in w.value for w in at.warning), messages(at)
