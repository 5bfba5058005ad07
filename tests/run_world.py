"""Shared helpers for the Cloud Run sandbox tests: templates, services, what a URL serves."""

from __future__ import annotations

import uuid

import httpx
from google.cloud import run_v2

from tests.conftest import PROJECT, REGION

PARENT = f"projects/{PROJECT}/locations/{REGION}"
# Services created here keep Cloud Run's default IAM policy (private), so calls carry a
# token, as `curl -H "Authorization: Bearer $(gcloud auth print-identity-token)"` does;
# the sandbox takes any bearer token.
INVOKER = {"Authorization": "Bearer test-identity-token"}
OP_TIMEOUT = 30
State = run_v2.Condition.State
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST


def unique(prefix: str) -> str:
    """A fresh service id: the sandbox is shared by the session."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def env(**values: str) -> list[run_v2.EnvVar]:
    return [run_v2.EnvVar(name=k, value=v) for k, v in values.items()]


def template(image: str, revision: str = "", **extra: str) -> run_v2.RevisionTemplate:
    """The sample service's template: the settings it needs to start, plus `extra`."""
    values = {"MONGODB_URL": "mongodb://db.invalid/app", "SECRET_KEY": "s3cret", **extra}
    return run_v2.RevisionTemplate(
        revision=revision, containers=[run_v2.Container(image=image, env=env(**values))]
    )


def create(client: run_v2.ServicesClient, service_id: str, image: str) -> run_v2.Service:
    """A ready service running `image`, created under `PARENT`."""
    operation = client.create_service(
        parent=PARENT, service_id=service_id, service=run_v2.Service(template=template(image))
    )
    return operation.result(timeout=OP_TIMEOUT)


def short(name: str) -> str:
    """The last segment of a resource name."""
    return name.rsplit("/", 1)[-1]


def health(url: str) -> dict[str, object]:
    """The sample service's `/health` answer at `url`."""
    response = httpx.get(f"{url}/health", headers=INVOKER, timeout=10)
    response.raise_for_status()
    body: dict[str, object] = response.json()
    return body


def served_revision(url: str) -> str:
    """The revision that answered a request to `url`."""
    version = health(url)["version"]
    assert isinstance(version, dict)
    return str(version["revision"])
