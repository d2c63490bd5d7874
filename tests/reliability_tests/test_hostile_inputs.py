"""The hostile-input battery (issue 11, items 6-8): every case, run as a real process, ends in
one short `error:` line with exit code 2, no traceback, no hang, bounded memory, and nothing
written next to its inputs (the working directory and the workspace).

`python tests/reliability_tests/hostile.py [words]` prints the table of the same cases;
`DPTUNE_SRC=<unpacked older dptune>` measures another version (the before/after table)."""

from __future__ import annotations

import os

import pytest
from hostile import CASES, MAX_RSS_MIB, run_case

SKIP_AS_ROOT = os.geteuid() == 0  # root writes into read-only folders
pytestmark = pytest.mark.slow  # ~35 real processes, most importing TensorFlow: minutes (CI: -m "not gpu")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_refused_cleanly_within_bounds_and_nothing_written(case, tmp_path):
    if case.root_only_skip and SKIP_AS_ROOT:
        pytest.skip("root ignores folder permissions")
    outcome = run_case(case, tmp_path / "case")
    assert not outcome.hang, f"{case.name}: still running after the timeout"
    assert not outcome.crash, f"{case.name}: exit {outcome.exit_code}\n{outcome.stderr[-3000:]}"
    assert outcome.clean_error, f"{case.name}: exit {outcome.exit_code}\n{outcome.stderr[-3000:]}"
    errors = [line for line in outcome.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(len(line) < 600 for line in errors), errors
    assert outcome.max_rss_mib < MAX_RSS_MIB, f"{case.name}: peak memory {outcome.max_rss_mib:.0f} MiB"
    assert outcome.written == [], f"{case.name} wrote {outcome.written}"
