"""The analysis as the terminal prints it at a deploy's end: one row per judged window."""

from __future__ import annotations

import io
from dataclasses import replace

from deployer.pipeline.events import DeployFinished
from deployer.pipeline.record import DeployRecord, State
from deployer.terminal import TerminalProgress, render_analysis, render_record
from tests.analysis_records import judged_record

TABLE = """\
analysis (candidate against stable, per window):
  window   requests  5xx   p95     stable 5xx  stable p95  stable from         synthetic  verdict
  10%      80        0%    41 ms   0.1%        38 ms       same window         30         passed
  50%      400       0.5%  44 ms   0.2%        39 ms       same window         0          passed
  watch 1  600       10%   310 ms  0.2%        38 ms       before the rollout  0          FAILED: 5xx 10% above 1%; p95 310 ms above 250 ms"""


def test_the_table_has_a_row_per_window() -> None:
    assert render_analysis(judged_record()) == TABLE


def test_a_window_without_stable_figures_shows_why() -> None:
    record = judged_record()
    first = record.analysis[0]
    record.analysis = [replace(first, stable=None, stable_source="stable had no traffic")]

    [_, _, row] = render_analysis(record).splitlines()

    assert " ".join(row.split()) == "10% 80 0% 41 ms - - stable had no traffic 30 passed"


def test_the_end_of_a_deploy_prints_the_table_after_its_summary() -> None:
    out = io.StringIO()

    TerminalProgress(out)(DeployFinished(judged_record()))

    printed = out.getvalue()
    assert printed.index("deploy d-chart-1 of prod failed and was rolled back") < printed.index(
        TABLE
    )


def test_a_deploy_without_analysis_prints_no_table() -> None:
    out = io.StringIO()
    record = DeployRecord("d-plain", "deploy", "prod", "app", "cli:ada", state=State.SUCCEEDED)

    TerminalProgress(out)(DeployFinished(record))

    assert "analysis" not in out.getvalue()


def test_show_includes_the_table() -> None:
    assert TABLE in render_record(judged_record())
