"""`deployer check` for `[analysis]`: can the deployer read what it will judge on?

One ListTimeSeries read of the service's last ten minutes, as a step's would be: Monitoring
refusing it (no `roles/monitoring.viewer`, the API not enabled) fails the check, as it
would fail every step; the figures read are quoted, so a team sees whether its service
has the traffic `min_requests` asks for.
"""

from __future__ import annotations

import time

from deployer.check_results import Check, Status
from deployer.config import Environment, ServiceConfig
from deployer.pipeline.analysis_verdict import thresholds_text
from deployer.pipeline.measurements import Figures, MetricsUnavailable
from deployer.pipeline.ports import Platform
from deployer.pipeline.preflight import MONITORING_LAG, analysis_fits
from deployer.pipeline.stages import StageFailed

LOOKBACK = 600.0
READ_TIMEOUT = 20.0


def check_analysis(
    platform: Platform, service: ServiceConfig, settings: Environment, environment: str
) -> list[Check]:
    """The analysis table's checks; none when the environment has no analysis."""
    rules = settings.analysis
    if rules is None:
        return []
    subject = "analysis"
    try:
        warnings = analysis_fits(settings, environment, platform.metrics.min_interval)
    except StageFailed as refused:
        return [Check(Status.FAIL, subject, f"{refused.summary}: {refused.detail}")]
    checks = [Check(Status.WARN, subject, warning) for warning in warnings]
    end = time.time()
    try:
        found = platform.metrics.requests(service, end - LOOKBACK, end, READ_TIMEOUT)
    except MetricsUnavailable as error:
        checks.append(Check(Status.FAIL, subject, f"{error}: every step would fail closed"))
        return checks
    served = Figures.of(found, found)
    lag = f"the last {MONITORING_LAG:.0f} s may not be in yet"
    checks.append(
        Check(
            Status.OK,
            subject,
            f"Cloud Monitoring readable: {service.service} answered {served.describe()} in "
            f"the last {LOOKBACK / 60:.0f} min ({lag}); judged on {thresholds_text(rules)}, "
            f"{rules.min_requests} requests a step",
        )
    )
    return checks
