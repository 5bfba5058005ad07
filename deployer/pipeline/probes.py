"""Health probes beyond the candidate's own health stage: one good answer is enough.

A deploy's gate keeps probing its candidate while traffic soaks; a deploy or a
rollback ends by verifying that what serves is what it asked for, healthy;
status asks the service how it is. Each wants a single good answer, not the
`consecutive` good answers a candidate must give before it gets traffic.
"""

from __future__ import annotations

import json

from deployer.config import HealthCheck, ServiceConfig
from deployer.pipeline import traffic
from deployer.pipeline.ports import Health, HealthOutcome, Platform, Progress
from deployer.pipeline.stages import Deadline, StageFailed


def _quiet(message: str) -> None:
    """Progress nobody follows."""


def passed(check: HealthCheck, commit: str) -> str:
    """What a passed check proved, and nothing more: `healthy 3x (/health 200,
    status=healthy)`, with `, reports COMMIT in FIELD` only when the version field
    is configured (with `version_field = ""` no answer was asked for a commit)."""
    checked = [f"{check.path} {check.expect_status}"]
    for key, expected in check.expect_json.items():
        shown = expected if isinstance(expected, str) else json.dumps(expected)
        checked.append(f"{key}={shown}")
    # Every one of the `consecutive` good answers in a row met all of it; earlier
    # bad answers, if any, were not counted.
    text = f"healthy {check.consecutive}x ({', '.join(checked)})"
    if check.version_field and commit:
        text += f", reports {commit[:12]} in {check.version_field}"
    return text


def probe_once(
    health: Health,
    check: HealthCheck,
    base_url: str,
    *,
    commit: str,
    timeout: float,
    audience: str,
    progress: Progress = _quiet,
    failures: int | None = None,
) -> HealthOutcome:
    """Probe `base_url` plus the check's path until one good answer, or `timeout`.

    The answer must report `commit` in the check's version field; with no commit
    ("", a revision the deployer did not label) the version is not checked.
    `failures`, when given, replaces how many bad answers in a row end it early.
    """
    update: dict[str, object] = {
        "consecutive": 1,
        "version_field": check.version_field if commit else "",
    }
    if failures is not None:
        update["failures"] = failures
    once = check.model_copy(update=update)
    return health.check(base_url + check.path, once, commit, timeout, audience, progress)


def verify_serving(
    platform: Platform,
    service: ServiceConfig,
    revision: str,
    commit: str,
    public: bool,
    deadline: Deadline,
    progress: Progress,
    *,
    unhealthy: str,
) -> str:
    """100 % on `revision`, read back, and the service URL healthy on `commit` (any
    version when ""); the service URL. StageFailed otherwise, `unhealthy` leading
    the message when the probe fails."""
    state = platform.services.current(service)
    now = traffic.serving(state)
    if now != [(revision, 100)]:
        raise StageFailed(f"traffic is {traffic.describe(now)}, expected 100% on {revision}")
    assert state is not None
    outcome = probe_once(
        platform.health,
        service.health,
        state.uri,
        commit=commit,
        timeout=deadline.left(),
        audience=traffic.audience(public, state.uri),
        progress=progress,
    )
    if not outcome.ok:
        raise StageFailed(f"{unhealthy}: {outcome.message}", outcome.body)
    return state.uri
