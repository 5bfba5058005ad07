"""Judging a window's figures against the thresholds, and the histogram percentiles the
figures come from, against hand-computed expectations."""

from __future__ import annotations

import pytest

from deployer.config import Analysis
from deployer.pipeline.analysis_verdict import judge
from deployer.pipeline.measurements import Figures, Latencies


def rules(**values: float) -> Analysis:
    return Analysis.model_validate({"interval": 60, **values})


def test_percentile_interpolates_inside_its_bucket() -> None:
    # 10 requests under 10 ms, 10 in [10, 20), none above: the 95th of 20 is the 19th,
    # the 9th of 10 in the second bucket, 90 % of the way from 10 to 20.
    latencies = Latencies((10.0, 20.0), (10, 10, 0))
    assert latencies.percentile(0.95) == pytest.approx(19.0)
    assert latencies.percentile(0.5) == pytest.approx(10.0)
    assert Latencies().percentile(0.95) is None
    merged = latencies.merged(Latencies((10.0, 20.0), (0, 0, 20)))
    assert merged.counts == (10, 10, 20)


def test_absolute_thresholds() -> None:
    rule = rules(max_error_rate=0.01, max_latency_p95_ms=300)
    assert judge(Figures(200, 2, 120.0), None, "", rule).passed  # exactly 1 %
    verdict = judge(Figures(200, 21, 310.0), None, "", rule)
    assert not verdict.passed
    assert verdict.reasons == (
        "5xx rate 10.5% is above the maximum 1%",
        "p95 latency 310 ms is above the maximum 300 ms",
    )


def test_relative_thresholds_compare_with_stable() -> None:
    rule = rules(max_error_rate_increase=0.01, max_latency_p95_ratio=1.5)
    stable = Figures(1000, 5, 100.0)
    assert judge(Figures(100, 1, 140.0), stable, "", rule).passed
    verdict = judge(Figures(100, 3, 160.0), stable, "", rule)
    assert verdict.reasons == (
        "5xx rate 3% is 2.5 points above stable's 0.5% (at most 1 point)",
        "p95 latency 160 ms is 1.60x stable's 100 ms (at most 1.5x)",
    )
    # A few milliseconds apart, the ratio measures noise: 4 ms against 2 ms passes.
    assert judge(Figures(100, 0, 4.0), Figures(100, 0, 2.0), "", rule).passed


def test_without_stable_relative_thresholds_alone_fail_closed() -> None:
    why = "stable answered 3 requests in the window and 0 before the rollout (fewer than 50)"
    alone = judge(Figures(100, 0, 10.0), None, why, rules(max_latency_p95_ratio=2))
    assert not alone.passed and alone.reasons == (f"nothing to compare with: {why}",)
    mixed = judge(
        Figures(100, 0, 10.0), None, why, rules(max_latency_p95_ratio=2, max_error_rate=0.01)
    )
    assert mixed.passed and mixed.caveat == f"not compared with stable: {why}"


def test_analysis_needs_a_threshold() -> None:
    with pytest.raises(ValueError, match="analysis needs a threshold"):
        Analysis.model_validate({})
    assert Analysis.model_validate({"max_error_rate": 0.01}).interval == 60
