"""Building blocks of Cloud Run resources: conditions, specs and defaults.

A service's *spec* is what its owner writes (template, traffic, labels, ...);
everything else is status that Cloud Run fills in. The generation counts spec
changes only, so specs are compared with the status fields cleared.
"""

from __future__ import annotations

import datetime
from typing import Any

from google.cloud import run_v2

from deployer_sandbox.common.protos import clone, now

Condition = run_v2.Condition
State = run_v2.Condition.State

# Fields of `Service` that Cloud Run owns; whatever a request puts there is ignored.
SERVICE_OUTPUT_FIELDS = (
    "uid",
    "generation",
    "create_time",
    "update_time",
    "delete_time",
    "expire_time",
    "creator",
    "last_modifier",
    "observed_generation",
    "terminal_condition",
    "conditions",
    "latest_ready_revision",
    "latest_created_revision",
    "traffic_statuses",
    "uri",
    "urls",
    "satisfies_pzs",
    "reconciling",
    "etag",
)

# The identity mutations are recorded under: the sandbox takes any credentials.
SANDBOX_PRINCIPAL = "sandbox-user@sandbox.local"
DEFAULT_TIMEOUT_S = 300
DEFAULT_CONCURRENCY = 80
DEFAULT_MAX_INSTANCES = 100
DEFAULT_PORT = 8080
DEFAULT_LIMITS = {"cpu": "1000m", "memory": "512Mi"}


def same(a: Any, b: Any) -> bool:
    """Whether two proto-plus messages are equal (map order does not matter)."""
    return bool(type(a).pb(a) == type(b).pb(b))


def condition(
    type_: str,
    state: Any,
    message: str = "",
    *,
    failure_severity: Any = Condition.Severity.ERROR,
    **reasons: Any,
) -> run_v2.Condition:
    """A condition of a service, revision, job or execution, stamped with the current time.

    A failed one is of `failure_severity` (None: none, as on executions). `reasons`
    holds at most one of the oneof `reason`, `revision_reason`, `execution_reason`;
    a None value is left out.
    """
    built = run_v2.Condition(type_=type_, state=state, message=message, last_transition_time=now())
    if state == State.CONDITION_FAILED and failure_severity is not None:
        built.severity = failure_severity
    for field, value in reasons.items():
        if value is not None:
            setattr(built, field, value)
    return built


def service_spec(service: run_v2.Service) -> run_v2.Service:
    """The owner-written part of a service: a copy with every output field cleared."""
    spec = clone(service)
    for field in SERVICE_OUTPUT_FIELDS:
        delattr(spec, field)
    spec.name = ""
    return spec


def template_config(template: run_v2.RevisionTemplate) -> run_v2.RevisionTemplate:
    """What makes two templates the same revision: everything but the revision name."""
    config = clone(template)
    config.revision = ""
    return config


def apply_template_defaults(template: run_v2.RevisionTemplate) -> None:
    """Fill the defaults Cloud Run stores, so a read-modify-write round trip changes nothing."""
    if not template.timeout:  # proto-plus reads a Duration as a timedelta
        template.timeout = datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)
    if not template.max_instance_request_concurrency:
        template.max_instance_request_concurrency = DEFAULT_CONCURRENCY
    if not template.scaling.max_instance_count:
        template.scaling.max_instance_count = DEFAULT_MAX_INSTANCES
    for container in template.containers:
        if not container.ports and len(template.containers) == 1:
            container.ports.append(run_v2.ContainerPort(name="http1", container_port=DEFAULT_PORT))
        for key, value in DEFAULT_LIMITS.items():
            container.resources.limits.setdefault(key, value)
