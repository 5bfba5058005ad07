"""Faults the sandbox injects on demand, so failure paths can be exercised for real.

Armed through the control endpoint (`POST /_sandbox/faults` on the Slack API's
host, see `harness.http_server`). Each kind is consumed where it happens:

    build_fail      the next build fails at a step (`step`: id or index, `message`)
    build_hang      the next build stays WORKING until its timeout or a cancel
    revision_crash  the next created revision's container exits at start-up
    health_500      the next created revision (or `revision`) answers /health with 500
    health_hang     the next created revision (or `revision`) never answers /health
    error_rate      until cleared, the next created revision (or `revision`) has the share
                    `rate` (0 to 1) of its non-health requests answered 500 by the router,
                    before they reach the app (`cloud_run.router`)
    latency         until cleared, every request to the next created revision (or
                    `revision`) waits `ms` milliseconds in the router first, health included
    slack_429       the next `times` Slack calls answer 429 with `retry_after` seconds
    slack_5xx       the next `times` Slack calls answer `status` (default 503)
    slack_latency   the next `times` Slack calls wait `ms` milliseconds, then go on as usual
    slack_error     the next `times` calls of Slack's `method` answer 200 {"ok": false,
                    "error": `error`} (e.g. usergroups.users.list, plan_upgrade_required)
    iam_denied      the next `times` SetIamPolicy calls on a service answer PERMISSION_DENIED
    iam_conflict    the next SetIamPolicy finds the policy changed since it was read (ABORTED)
    run_job_unavailable  the next `times` Cloud Run RunJob calls answer UNAVAILABLE
    template_drift  until cleared, reads of a Cloud Run service show its template with a
                    server-filled default spelled differently (`cloud_run.masks`)
    caller_roles    until cleared, the caller holds only `roles` (a list of predefined
                    roles, `cloud_run.roles`): TestIamPermissions on a Cloud Run service or job
                    answers only the asked permissions those roles grant there
    monitoring_denied  until cleared, Cloud Monitoring's ListTimeSeries answers
                    PERMISSION_DENIED, as to a caller without monitoring.timeSeries.list
    iam_org_policy  until cleared, a SetIamPolicy on a Cloud Run service whose policy would
                    name allUsers or allAuthenticatedUsers is FAILED_PRECONDITION, as under
                    the domain restricted sharing constraint (`cloud_run.iam`)

Health faults, `error_rate` and `latency` stick to the revision they were bound to:
a broken revision stays broken until the fault is cleared. `slack_429` and `slack_5xx` take `after_post`
(default false): true performs the call (the message is posted) and answers the
error anyway, as when Slack's answer is lost on its way back; and `method` (a
Web API method, e.g. "chat.update"): only calls of that method meet the fault,
others pass untouched. `slack_error` needs both `method` and `error`.
"""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from deployer_sandbox.cloud_run.roles import ROLES
from deployer_sandbox.slack.methods import HANDLERS

KINDS = (
    "build_fail",
    "build_hang",
    "revision_crash",
    "health_500",
    "health_hang",
    "error_rate",
    "latency",
    "slack_429",
    "slack_5xx",
    "slack_latency",
    "slack_error",
    "iam_denied",
    "iam_conflict",
    "run_job_unavailable",
    "template_drift",
    "caller_roles",
    "iam_org_policy",
    "monitoring_denied",
)
_UNTIL_CLEARED = (
    "health_500",
    "health_hang",
    "error_rate",
    "latency",
    "template_drift",
    "caller_roles",
    "iam_org_policy",
    "monitoring_denied",
)
# Faults that are looked at, never consumed: a count would mean nothing.
_NO_TIMES = ("caller_roles", "iam_org_policy", "monitoring_denied")
_BOUND_TO_REVISION = ("revision_crash", "health_500", "health_hang", "error_rate", "latency")
# Faults a revision created after arming takes for its own (`bind_new_revision`).
_BOUND_TO_NEXT_REVISION = ("health_500", "health_hang", "error_rate", "latency")
_BY_METHOD = ("slack_429", "slack_5xx", "slack_error")
MAX_LATENCY_MS = 60_000
# Slack's error codes are lower-case words joined by underscores ("not_in_channel").
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]*$")


class FaultError(ValueError):
    """A fault request the sandbox cannot honour; the message says why."""


def _check_roles(roles: object) -> None:
    """FaultError unless `roles` is a list of predefined roles the sandbox models."""
    example = '{"kind": "caller_roles", "roles": ["roles/run.developer"]}'
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise FaultError(
            f"caller_roles needs roles, a list of predefined roles, e.g. {example}; got {roles!r}"
        )
    unknown = [role for role in roles if role not in ROLES]
    if unknown:
        raise FaultError(
            f"unknown role(s) {', '.join(unknown)}: caller_roles models {', '.join(ROLES)}"
        )


def _check_ms(kind: str, ms: object) -> None:
    """FaultError unless `ms` is a whole number of milliseconds the sandbox will wait."""
    if isinstance(ms, bool) or not isinstance(ms, int) or not 0 < ms <= MAX_LATENCY_MS:
        raise FaultError(
            f"{kind} needs ms, a whole number of milliseconds from 1 to "
            f'{MAX_LATENCY_MS}, e.g. {{"kind": "{kind}", "ms": 500}}'
        )


def _check_rate(rate: object) -> None:
    """FaultError unless `rate` is a share of requests, from 0 to 1."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise FaultError(
            "error_rate needs rate, the share of requests answered 500, from 0 to 1, "
            f'e.g. {{"kind": "error_rate", "rate": 0.2}}; got {rate!r}'
        )


@dataclass
class Fault:
    id: int
    kind: str
    times: int | None  # None: until cleared
    revision: str | None = None  # bound revision for revision faults
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "times": self.times,
            "revision": self.revision,
            **self.params,
        }


class Faults:
    """Thread-safe registry of armed faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._faults: list[Fault] = []

    def arm(self, kind: str, **params: Any) -> Fault:
        """Arm a fault; raise `FaultError` for unknown kinds or bad parameters."""
        if kind not in KINDS:
            raise FaultError(f"unknown fault kind {kind!r}; expected one of {', '.join(KINDS)}")
        if kind in _NO_TIMES and "times" in params:
            raise FaultError(f"{kind} lasts until the faults are cleared; it takes no times")
        times = params.pop("times", None if kind in _UNTIL_CLEARED else 1)
        if times is not None and (not isinstance(times, int) or times < 1):
            raise FaultError("times must be a positive integer")
        revision = params.pop("revision", None)
        if revision is not None and (
            kind not in _BOUND_TO_REVISION or not isinstance(revision, str)
        ):
            raise FaultError(f"revision applies only to {', '.join(_BOUND_TO_REVISION)}")
        if kind == "slack_429":
            params.setdefault("retry_after", 1)
        if kind == "slack_5xx":
            params.setdefault("status", 503)
            if params["status"] not in (500, 502, 503, 504):
                raise FaultError("status must be one of 500, 502, 503, 504")
        if kind in ("slack_429", "slack_5xx"):
            params.setdefault("after_post", False)
            if not isinstance(params["after_post"], bool):
                raise FaultError("after_post must be true or false")
        elif "after_post" in params:
            raise FaultError("after_post applies only to slack_429 and slack_5xx")
        if "method" in params or kind == "slack_error":
            method = params.get("method")
            if kind not in _BY_METHOD:
                raise FaultError("method applies only to slack_429, slack_5xx and slack_error")
            if method not in HANDLERS:
                raise FaultError(
                    f"method must be a Web API method the sandbox serves, one of "
                    f'{", ".join(HANDLERS)}; got {method!r}, e.g. "method": "chat.update"'
                )
        if kind == "slack_error":
            error = params.get("error")
            if not isinstance(error, str) or not _ERROR_CODE.match(error):
                raise FaultError(
                    "slack_error needs error, a Slack error code such as "
                    f'"plan_upgrade_required"; got {error!r}'
                )
        elif "error" in params:
            raise FaultError("error applies only to slack_error")
        if kind == "slack_latency":
            _check_ms(kind, params.get("ms"))
        if kind == "error_rate":
            _check_rate(params.get("rate"))
        elif "rate" in params:
            raise FaultError("rate applies only to error_rate")
        if kind == "latency":
            _check_ms(kind, params.get("ms"))
        if kind == "caller_roles":
            _check_roles(params.get("roles"))
            params["roles"] = list(params["roles"])  # the caller's list stays the caller's
        elif "roles" in params:
            raise FaultError("roles applies only to caller_roles")
        fault = Fault(next(self._ids), kind, times, revision, params)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(
        self, kind: str, revision: str | None = None, *, method: str | None = None
    ) -> Fault | None:
        """Consume one use of the oldest matching fault, if any.

        A fault with no bound revision matches any revision; one bound to a
        revision matches only that one. Likewise a fault naming a Slack `method`
        matches only calls of that method; one without matches every call.
        """
        with self._lock:
            for fault in self._faults:
                if fault.kind != kind or (fault.revision and fault.revision != revision):
                    continue
                if fault.params.get("method") not in (None, method):
                    continue
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                return fault
        return None

    def armed(self, kind: str) -> bool:
        """Whether a fault of `kind` is armed (nothing is consumed)."""
        with self._lock:
            return any(fault.kind == kind for fault in self._faults)

    def caller_roles(self) -> frozenset[str] | None:
        """The roles the caller holds while `caller_roles` faults are armed (those of every
        one of them); None when none is armed: the caller may do anything."""
        with self._lock:
            armed = [fault for fault in self._faults if fault.kind == "caller_roles"]
            if not armed:
                return None
            return frozenset(role for fault in armed for role in fault.params["roles"])

    def bind_new_revision(self, revision: str) -> None:
        """Bind every unbound revision fault (health, error rate, latency) to a revision
        just created."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in _BOUND_TO_NEXT_REVISION and fault.revision is None:
                    fault.revision = revision

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [fault.to_json() for fault in self._faults]
