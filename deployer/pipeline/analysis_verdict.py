"""Judging one window's figures against `[analysis]`'s thresholds, and saying it.

    max_error_rate            the candidate's 5xx share
    max_latency_p95_ms        the candidate's p95
    max_error_rate_increase   the candidate's 5xx share minus the stable revision's
    max_latency_p95_ratio     the candidate's p95 over the stable revision's (and more
                              than `RATIO_FLOOR_MS` above it)

The relative two need the stable revision's figures. When it answered too few requests
(in the window, and before the rollout), they are not applied and the verdict says so;
when they are the only thresholds set, nothing could be judged, and the window fails:
analysis never passes blindly.
"""

from __future__ import annotations

from dataclasses import dataclass

from deployer.config import Analysis
from deployer.pipeline.measurements import Figures, percent

# A p95 within this many ms of stable's never breaks `max_latency_p95_ratio`: at a few
# milliseconds (an app answering from memory, a histogram bucket apart) the ratio measures
# noise, not a regression.
RATIO_FLOOR_MS = 10.0


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]  # each threshold broken, or why nothing could be judged
    caveat: str = ""  # thresholds that could not be applied, when others were


def judge(
    candidate: Figures, stable: Figures | None, why_no_stable: str, rules: Analysis
) -> Verdict:
    """The verdict on `candidate`'s figures (with `min_requests` or more requests)."""
    broken: list[str] = []
    rate = candidate.error_rate or 0.0
    if rules.max_error_rate is not None and rate > rules.max_error_rate:
        broken.append(
            f"5xx rate {percent(rate)} is above the maximum {percent(rules.max_error_rate)}"
        )
    p95 = candidate.p95_ms
    if rules.max_latency_p95_ms is not None and p95 is not None and p95 > rules.max_latency_p95_ms:
        broken.append(
            f"p95 latency {p95:.0f} ms is above the maximum {rules.max_latency_p95_ms:.0f} ms"
        )
    if not rules.relative():
        return Verdict(not broken, tuple(broken))
    if stable is None:
        if not rules.absolute():
            return Verdict(False, (f"nothing to compare with: {why_no_stable}",))
        return Verdict(not broken, tuple(broken), f"not compared with stable: {why_no_stable}")
    stable_rate = stable.error_rate or 0.0
    increase = rules.max_error_rate_increase
    if increase is not None and rate - stable_rate > increase + 1e-12:
        broken.append(
            f"5xx rate {percent(rate)} is {points(rate - stable_rate)} above stable's "
            f"{percent(stable_rate)} (at most {points(increase)})"
        )
    ratio = rules.max_latency_p95_ratio
    if (
        ratio is not None
        and p95 is not None
        and stable.p95_ms
        and p95 / stable.p95_ms > ratio
        and p95 - stable.p95_ms > RATIO_FLOOR_MS
    ):
        broken.append(
            f"p95 latency {p95:.0f} ms is {p95 / stable.p95_ms:.2f}x stable's "
            f"{stable.p95_ms:.0f} ms (at most {ratio:g}x)"
        )
    return Verdict(not broken, tuple(broken))


def points(share: float) -> str:
    """0.098 -> "9.8 points"."""
    value = f"{share * 100:.1f}".rstrip("0").rstrip(".")
    return f"{value} point{'' if value == '1' else 's'}"


def thresholds_text(rules: Analysis) -> str:
    """ "5xx at most 1%, at most 1 point above stable; p95 at most 500 ms"."""
    errors, latency = [], []
    if rules.max_error_rate is not None:
        errors.append(f"at most {percent(rules.max_error_rate)}")
    if rules.max_error_rate_increase is not None:
        errors.append(f"at most {points(rules.max_error_rate_increase)} above stable")
    if rules.max_latency_p95_ms is not None:
        latency.append(f"at most {rules.max_latency_p95_ms:.0f} ms")
    if rules.max_latency_p95_ratio is not None:
        latency.append(f"at most {rules.max_latency_p95_ratio:g}x stable")
    parts = []
    if errors:
        parts.append("5xx " + ", ".join(errors))
    if latency:
        parts.append("p95 " + ", ".join(latency))
    return "; ".join(parts)
