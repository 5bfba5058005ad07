"""The deploy thread's last reply when traffic was judged on metrics: each window in words,
the thresholds, and the chart of the same numbers shared right after it.

The words stand on their own: the chart is a picture of them, and a chart Slack would
not take (no `files:write`, a channel the bot is not in) leaves the reply as it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from deployer.analysis_windows import window_labels
from deployer.front.mrkdwn import escape, says
from deployer.front.ports import SlackMessage
from deployer.pipeline.measurements import Figures, percent
from deployer.pipeline.record import DeployRecord

ANALYSIS_CHART = "analysis_chart"  # the kind of file `front/thread_files.py` draws


def analysis_reply(record: DeployRecord, thresholds: Mapping[str, float]) -> SlackMessage | None:
    """The reply telling the analysis of `record`, with its chart to share; None without one."""
    if not record.analysis:
        return None
    lines = ["*Analysis*, candidate against stable:"]
    for label, window in zip(window_labels(record.analysis), record.analysis, strict=True):
        verdict = "passed" if window.passed else "*failed*"
        line = f"• {label} {verdict}: candidate {_figures(window.candidate)}"
        if window.synthetic.requests:
            line += f" ({window.synthetic.requests} synthetic)"
        if window.stable is not None:
            line += f"; stable ({escape(window.stable_source)}) {_figures(window.stable)}"
        elif window.stable_source:
            line += f"; no stable figures ({escape(window.stable_source)})"
        if window.reasons:
            line += ": " + "; ".join(escape(reason) for reason in window.reasons)
        lines.append(line)
    limits = _thresholds(thresholds)
    if limits:
        lines.append(f"Thresholds: {limits}.")
    chart = {
        "kind": ANALYSIS_CHART,
        "filename": f"analysis-{record.id}.png",
        "title": f"Analysis of {record.id} ({record.environment})",
        "windows": [dataclasses.asdict(window) for window in record.analysis],
        "thresholds": dict(thresholds),
    }
    return dataclasses.replace(says("\n".join(lines)), file=chart)


def _figures(figures: Figures) -> str:
    return escape(figures.describe())


def _thresholds(thresholds: Mapping[str, float]) -> str:
    """The thresholds set, in words."""
    words: list[str] = []
    if (rate := thresholds.get("max_error_rate")) is not None:
        words.append(f"5xx at most {percent(rate)}")
    if (increase := thresholds.get("max_error_rate_increase")) is not None:
        words.append(f"at most {increase * 100:g} points over stable's 5xx")
    if (p95 := thresholds.get("max_latency_p95_ms")) is not None:
        words.append(f"p95 at most {p95:g} ms")
    if (ratio := thresholds.get("max_latency_p95_ratio")) is not None:
        words.append(f"p95 at most {ratio:g} times stable's")
    return ", ".join(words)
