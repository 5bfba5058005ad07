"""The judged windows of a deploy's analysis as people read them: the chart in its Slack
thread (`front/analysis_chart.py`), the text reply beside it and the terminal's table.

    window label   "10%", "50%" for the traffic steps (the candidate's share meanwhile),
                   "watch 1", "watch 2" ... for the looks after verify
    limits         per window, what each threshold allowed there:

        threshold                 limit in a window
        max_error_rate            the rate itself, the same in every window
        max_error_rate_increase   stable's 5xx rate in that window + the increase
        max_latency_p95_ms        the p95 itself, the same in every window
        max_latency_p95_ratio     stable's p95 in that window x the ratio

    A relative limit is None in a window where stable had no figures (nothing to
    compare with): the analysis then judged on the absolute thresholds alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deployer.pipeline.measurements import Figures, Measurement, percent


def window_labels(windows: Sequence[Measurement]) -> list[str]:
    """One label per window: "10%" for a traffic step, "watch N" for the Nth look after verify."""
    labels, watched = [], 0
    for window in windows:
        if window.phase == "watch":
            watched += 1
            labels.append(f"watch {watched}")
        else:
            labels.append(f"{window.percent}%")
    return labels


@dataclass(frozen=True)
class WindowLimits:
    """What the thresholds allowed in one window (None: not set, or nothing to compare with)."""

    error_rate: float | None  # max_error_rate
    error_rate_over_stable: float | None  # stable's rate + max_error_rate_increase
    p95_ms: float | None  # max_latency_p95_ms
    p95_over_stable: float | None  # stable's p95 x max_latency_p95_ratio


def window_limits(window: Measurement, thresholds: Mapping[str, float]) -> WindowLimits:
    """The limits `thresholds` (as `Analysis.thresholds()` names them) set in `window`."""
    stable = window.stable
    stable_rate = stable.error_rate if stable is not None else None
    stable_p95 = stable.p95_ms if stable is not None else None
    increase = thresholds.get("max_error_rate_increase")
    ratio = thresholds.get("max_latency_p95_ratio")
    return WindowLimits(
        error_rate=thresholds.get("max_error_rate"),
        error_rate_over_stable=(
            stable_rate + increase if stable_rate is not None and increase is not None else None
        ),
        p95_ms=thresholds.get("max_latency_p95_ms"),
        p95_over_stable=stable_p95 * ratio
        if stable_p95 is not None and ratio is not None
        else None,
    )


def rate_text(figures: Figures | None) -> str:
    """A window's 5xx share, "-" without requests."""
    if figures is None or figures.error_rate is None:
        return "-"
    return percent(figures.error_rate)


def p95_text(figures: Figures | None) -> str:
    """A window's p95 latency in whole ms, "-" when unknown."""
    if figures is None or figures.p95_ms is None:
        return "-"
    return f"{figures.p95_ms:.0f} ms"


def verdict_text(window: Measurement) -> str:
    """ "passed", or "FAILED: " and each reason."""
    if window.passed:
        return "passed"
    return "FAILED: " + ("; ".join(window.reasons) or "no reason recorded")
