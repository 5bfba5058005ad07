"""Shared helpers for the Cloud Run sandbox tests: templates, services, what a URL serves."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import httpx
import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import run_v2

from tests.conftest import PROJECT, REGION

PARENT = f"projects/{PROJECT}/locations/{REGION}"
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


def id_token_for(sandbox: Sandbox, audience: str) -> str:
    """An ID token for `audience` from the sandbox's metadata server, fetched as google-auth
    fetches one on Cloud Run (`.../service-accounts/default/identity?audience=...`)."""
    response = httpx.get(
        f"http://{sandbox.metadata_address}/computeMetadata/v1/instance/service-accounts/"
        "default/identity",
        params={"audience": audience, "format": "full"},
        headers={"Metadata-Flavor": "Google"},
        timeout=10,
    )
    response.raise_for_status()
    return response.text


def invoker(sandbox: Sandbox, service_uri: str) -> dict[str, str]:
    """Headers that let a call into the private service at `service_uri` (its main URL: the
    token's audience also for its tag URLs), as `curl -H "Authorization: Bearer $(gcloud auth
    print-identity-token --audiences=URI)"` does."""
    return {"Authorization": f"Bearer {id_token_for(sandbox, service_uri)}"}


def health(url: str, headers: Mapping[str, str] | None = None) -> dict[str, object]:
    """The sample service's `/health` answer at `url` (`headers`: `invoker(...)` when private)."""
    response = httpx.get(f"{url}/health", headers=dict(headers or {}), timeout=10)
    response.raise_for_status()
    body: dict[str, object] = response.json()
    return body


def served_revision(url: str, headers: Mapping[str, str] | None = None) -> str:
    """The revision that answered a request to `url`."""
    version = health(url, headers)["version"]
    assert isinstance(version, dict)
    return str(version["revision"])


def use_metadata_server(monkeypatch: pytest.MonkeyPatch, sandbox: Sandbox) -> None:
    """google-auth in this process finds the sandbox's metadata server, as code on Cloud Run
    finds Google's: GCE_METADATA_HOST and GCE_METADATA_IP name it, and no key file is named.

    Processes the sandbox starts get the two variables from it and need nothing more. In
    the test process google-auth may have read GCE_METADATA_HOST already (it does once,
    when `google.auth.compute_engine._metadata` is first imported), so it is set there too.
    """
    for name, value in sandbox.metadata.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    from google.auth.compute_engine import _metadata

    monkeypatch.setattr(_metadata, "_GCE_METADATA_HOST", sandbox.metadata_address)
