"""The analysis chart a deploy's final Slack reply carries: a PNG of 800x400 drawn from the
record's judged windows, and matplotlib imported only when one is drawn."""

from __future__ import annotations

import struct
import subprocess
import sys

from deployer.front.analysis_chart import HEIGHT_PX, WIDTH_PX, analysis_chart
from deployer.pipeline.measurements import Figures
from tests.analysis_records import THRESHOLDS, judged_record, window

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(content: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, which the format puts first."""
    assert content[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", content[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", content[16:24])
    return width, height


def test_a_judged_record_draws_a_png_of_800_by_400() -> None:
    record = judged_record()

    chart = analysis_chart(record.analysis, THRESHOLDS, f"Analysis of {record.id}")

    assert chart is not None
    assert png_size(chart) == (WIDTH_PX, HEIGHT_PX) == (800, 400)
    assert len(chart) < 200_000  # small enough for a thread


def test_windows_without_stable_figures_or_thresholds_still_draw() -> None:
    windows = [
        window("step", 25, Figures(0, 0, None), None, source="stable answered nothing"),
        window("step", 100, Figures(90, 9, 120.0), None, reasons=("5xx 10% above 1%",)),
    ]

    chart = analysis_chart(windows, {})

    assert chart is not None and png_size(chart) == (800, 400)


def test_no_analysis_draws_nothing() -> None:
    assert analysis_chart([], THRESHOLDS) is None


def test_the_front_starts_without_matplotlib() -> None:
    # The front must start fast: the chart's module imports matplotlib only to draw.
    probe = (
        "import sys, deployer.front.outbox, deployer.front.thread, deployer.terminal;"
        "print('matplotlib' in sys.modules)"
    )
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert answer.stdout.strip() == "False"
