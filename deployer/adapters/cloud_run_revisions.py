"""Reading Cloud Run revisions: what `deployer history` lists, and why one failed."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from google.api_core import exceptions
from google.cloud import run_v2

from deployer.adapters.cloud_logging import RevisionLogs
from deployer.adapters.cloud_run_template import ready_condition, short_name
from deployer.config import ServiceConfig
from deployer.pipeline.ports import COMMIT_LABEL, PinnedSecret, RevisionInfo, RevisionSpec

State = run_v2.Condition.State
_EPOCH = datetime.datetime.fromtimestamp(0, datetime.UTC)
_CALL_TIMEOUT = 30.0
# Cloud Run's condition message does not quote the container: its last lines are read
# from Cloud Logging, within this budget so a slow Logging API cannot stall the report.
LOG_LINES = 20
_LOG_TIMEOUT = 10.0


def revision_failure(
    revisions: run_v2.RevisionsClient,
    logs: RevisionLogs,
    service_path: str,
    service: ServiceConfig,
    revision: str,
) -> str:
    """The failed revision's Ready message and its container's last lines, or ""."""
    try:
        found = revisions.get_revision(
            name=f"{service_path}/revisions/{revision}", timeout=_CALL_TIMEOUT
        )
    except exceptions.GoogleAPICallError:
        return ""
    condition = ready_condition(found.conditions)
    if condition is None or condition.state != State.CONDITION_FAILED:
        return ""
    message: str = condition.message
    since = created(found) if "create_time" in found else None
    # The container may print its own environment (pydantic does when it refuses it):
    # its plain values, as Cloud Run holds them, are hidden from what is quoted.
    # Secret references carry no value, and none is read to hide it.
    known = [env.value for container in found.containers for env in container.env]
    lines = logs.tail(service, revision, LOG_LINES, _LOG_TIMEOUT, since=since, known=known)
    if not lines:
        return message
    output = "\n".join(lines)
    return f"{message}\n\nContainer output (last {len(lines)} lines):\n{output}"


def created(revision: run_v2.Revision) -> datetime.datetime:
    """When the revision was created (the epoch when Cloud Run did not say)."""
    # proto-plus hands timestamps out as datetimes, whatever the stubs say.
    stamp: Any = revision.create_time
    return stamp if isinstance(stamp, datetime.datetime) else _EPOCH


def revision_info(revision: run_v2.Revision) -> RevisionInfo:
    """A revision as `deployer history` and rollback read it."""
    condition = ready_condition(revision.conditions)
    ready = condition is not None and condition.state == State.CONDITION_SUCCEEDED
    return RevisionInfo(
        name=short_name(revision.name),
        created=created(revision).isoformat() if "create_time" in revision else "",
        ready=ready,
        image=revision.containers[0].image if revision.containers else "",
        labels=dict(revision.labels),
        message="" if ready or condition is None else condition.message,
    )


def revision_spec(revision: run_v2.Revision) -> RevisionSpec:
    """What a revision runs, for "what changes": its ingress container (the first, as the
    deployer writes it) and its settings. A plain variable's value is kept only as a
    fingerprint: it is compared, never shown."""
    container = revision.containers[0] if revision.containers else run_v2.Container()
    env: dict[str, str] = {}
    secret_env: dict[str, PinnedSecret] = {}
    for variable in container.env:
        if "value_source" in variable:
            ref = variable.value_source.secret_key_ref
            # `secret`: "{secret_name} if the secret is in the same project.
            # projects/{project}/secrets/{secret_name} if ... in a different project"
            # (run_v2 k8s_min SecretKeySelector); kept as written, the project with it.
            secret_env[variable.name] = PinnedSecret(ref.secret, ref.version)
        else:
            env[variable.name] = hashlib.sha256(variable.value.encode()).hexdigest()
    limits = container.resources.limits
    return RevisionSpec(
        name=short_name(revision.name),
        image=container.image,
        commit=revision.labels.get(COMMIT_LABEL, ""),
        env=env,
        secret_env=secret_env,
        service_account=revision.service_account,
        cpu=limits.get("cpu", ""),
        memory=limits.get("memory", ""),
        min_instances=revision.scaling.min_instance_count,
        max_instances=revision.scaling.max_instance_count,
    )
