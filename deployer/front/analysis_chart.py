"""The analysis of a deploy as a small PNG for its Slack thread: candidate against stable,
window by window, with the thresholds drawn.

    ┌──── 5xx rate (%) ─────────────┐ ┌──── p95 latency (ms) ─────────┐
    │ candidate ●──●──✕   stable ○  │ │ candidate ●──●──●   stable ○  │
    │ ---- max_error_rate           │ │ ---- max_latency_p95_ms       │
    │ ···· stable + increase        │ │ ···· stable x ratio           │
    └ 10%   50%   watch 1 ──────────┘ └ 10%   50%   watch 1 ──────────┘

A failed window is shaded and its candidate point drawn as a red cross. 800x400 px.

matplotlib is imported only when a chart is drawn, never at import: the front must
start fast, and most processes never draw one. Its object-oriented API (a `Figure`
with the Agg canvas, no `pyplot`) keeps no global state, so two drains may draw at
once (matplotlib's "Embedding in a web application server" example does the same).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from deployer.analysis_windows import window_labels, window_limits
from deployer.pipeline.measurements import Figures, Measurement

if TYPE_CHECKING:
    from matplotlib.axes import Axes

WIDTH_PX, HEIGHT_PX, DPI = 800, 400, 100
CANDIDATE, STABLE, LIMIT, FAILED = "#1f6feb", "#6e7781", "#cf222e", "#cf222e"


def analysis_chart(
    windows: Sequence[Measurement], thresholds: Mapping[str, float], title: str = ""
) -> bytes | None:
    """The chart of `windows` as PNG bytes; None when there is no window to draw.

    `thresholds`: the environment's as `Analysis.thresholds()` names them (may be empty).
    """
    if not windows:
        return None
    # Imported here: see the module's docstring.
    from matplotlib.figure import Figure

    labels = window_labels(windows)
    limits = [window_limits(window, thresholds) for window in windows]
    failed = [index for index, window in enumerate(windows) if not window.passed]
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    rate_axes, p95_axes = figure.subplots(1, 2)

    _panel(
        rate_axes,
        "5xx rate (%)",
        labels,
        candidate=[_rate(window.candidate) for window in windows],
        stable=[_rate(window.stable) for window in windows],
        lines={
            "max 5xx rate": [_scaled(limit.error_rate, 100) for limit in limits],
            "stable + max increase": [
                _scaled(limit.error_rate_over_stable, 100) for limit in limits
            ],
        },
        failed=failed,
    )
    _panel(
        p95_axes,
        "p95 latency (ms)",
        labels,
        candidate=[_p95(window.candidate) for window in windows],
        stable=[_p95(window.stable) for window in windows],
        lines={
            "max p95": [_scaled(limit.p95_ms, 1) for limit in limits],
            "stable x max ratio": [_scaled(limit.p95_over_stable, 1) for limit in limits],
        },
        failed=failed,
    )
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _panel(
    axes: Axes,
    heading: str,
    labels: list[str],
    *,
    candidate: list[float],
    stable: list[float],
    lines: dict[str, list[float]],
    failed: list[int],
) -> None:
    """One panel: candidate and stable per window, each threshold as a line, failures marked."""
    xs = list(range(len(labels)))
    for index in failed:
        axes.axvspan(index - 0.5, index + 0.5, color=FAILED, alpha=0.08, linewidth=0)
    axes.plot(xs, stable, marker="o", color=STABLE, label="stable", fillstyle="none")
    axes.plot(xs, candidate, marker="o", color=CANDIDATE, label="candidate")
    crosses = [i for i in failed if not math.isnan(candidate[i])]
    if crosses:
        axes.scatter(
            crosses,
            [candidate[i] for i in crosses],
            marker="X",
            s=90,
            color=FAILED,
            zorder=5,
            label="failed",
        )
    for (name, values), style in zip(lines.items(), ("--", ":"), strict=True):
        if all(math.isnan(value) for value in values):
            continue  # a threshold not set draws nothing
        # A step line: each window's limit spans the width of its window.
        axes.step(
            [xs[0] - 0.5, *xs, xs[-1] + 0.5],
            [values[0], *values, values[-1]],
            where="mid",
            color=LIMIT,
            linestyle=style,
            linewidth=1.2,
            label=name,
        )
    axes.set_title(heading, fontsize=10)
    axes.set_xticks(xs, labels, fontsize=8)
    axes.set_xlim(-0.5, len(labels) - 0.5)
    axes.set_ylim(bottom=0)
    axes.tick_params(axis="y", labelsize=8)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=7, loc="best")


def _rate(figures: Figures | None) -> float:
    """The 5xx share in percent; NaN (a gap in the line) without requests."""
    rate = figures.error_rate if figures is not None else None
    return math.nan if rate is None else rate * 100


def _p95(figures: Figures | None) -> float:
    p95 = figures.p95_ms if figures is not None else None
    return math.nan if p95 is None else float(p95)


def _scaled(value: float | None, factor: float) -> float:
    return math.nan if value is None else value * factor
