"""Health answers as a deploy quotes them: without its revision's environment values.

A candidate's answer (its body, the value a check found wrong) is the container's
own output, and may print what the revision was given. The health, gate and verify
probes of a deploy all go through `RedactingHealth`, so whichever of them fails, its
detail, its summary and its progress lines reach the record, the terminal and the
thread redacted (`deployer.redaction`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from deployer.config import HealthCheck
from deployer.pipeline.ports import Health, HealthOutcome, Progress
from deployer.redaction import redact


@dataclass(frozen=True)
class RedactingHealth:
    """`health`, its answers and progress redacted of `known` values and credential shapes."""

    health: Health
    known: tuple[str, ...]

    def check(
        self,
        url: str,
        check: HealthCheck,
        commit: str,
        timeout: float,
        audience: str,
        progress: Progress,
    ) -> HealthOutcome:
        def told(message: str) -> None:
            progress(redact(message, self.known))

        outcome = self.health.check(url, check, commit, timeout, audience, told)
        return dataclasses.replace(
            outcome,
            body=redact(outcome.body, self.known),
            message=redact(outcome.message, self.known),
        )
