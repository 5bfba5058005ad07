"""IAM questions for `deployer check`: `testIamPermissions` and `getIamPolicy`.

`testIamPermissions` answers for the caller (whoever runs `deployer check`),
never for another principal; the runtime service account's access is read
from the secret's policy instead. An API that does not implement these calls
(the sandbox's Secret Manager) is reported as "not checked", never as a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.api_core import exceptions
from google.cloud import run_v2, secretmanager_v1
from google.iam.v1 import iam_policy_pb2

from deployer.adapters.google_clients import google_client
from deployer.cli_ports import Bindings, Grant
from deployer.config import ServiceConfig

_CALL_TIMEOUT = 15.0


class GooglePermissions:
    """`Permissions` over the Cloud Run v2 and Secret Manager v1 IAM methods."""

    def __init__(
        self,
        services: run_v2.ServicesClient | None = None,
        secrets: secretmanager_v1.SecretManagerServiceClient | None = None,
    ) -> None:
        self._services = services or google_client(run_v2.ServicesClient)
        self._secrets = secrets or google_client(secretmanager_v1.SecretManagerServiceClient)
        self._jobs: run_v2.JobsClient | None = None  # built when a job is asked about

    def on_service(self, service: ServiceConfig, permissions: Sequence[str]) -> Grant:
        return _test(self._services, _service_name(service), permissions)

    def on_secret(self, project: str, secret: str, permissions: Sequence[str]) -> Grant:
        return _test(self._secrets, f"projects/{project}/secrets/{secret}", permissions)

    def on_job(self, job: str, permissions: Sequence[str]) -> Grant:
        if self._jobs is None:
            self._jobs = google_client(run_v2.JobsClient)
        return _test(self._jobs, job, permissions)

    def service_policy(self, service: ServiceConfig) -> Bindings:
        return _policy(self._services, _service_name(service))

    def secret_policy(self, project: str, secret: str) -> Bindings:
        return _policy(self._secrets, f"projects/{project}/secrets/{secret}")


def _service_name(service: ServiceConfig) -> str:
    return f"projects/{service.project}/locations/{service.region}/services/{service.service}"


def _why_not(error: exceptions.GoogleAPICallError) -> str:
    if isinstance(error, exceptions.MethodNotImplemented):
        return "API does not answer"
    if isinstance(error, exceptions.NotFound):
        return "the resource does not exist"
    if isinstance(error, exceptions.PermissionDenied):
        return "no permission to ask"
    return f"{type(error).__name__}: {error.message}"


def _test(client: Any, resource: str, permissions: Sequence[str]) -> Grant:
    request = iam_policy_pb2.TestIamPermissionsRequest(
        resource=resource, permissions=list(permissions)
    )
    try:
        answer = client.test_iam_permissions(request=request, timeout=_CALL_TIMEOUT)
    except exceptions.GoogleAPICallError as error:
        return Grant(checked=False, note=_why_not(error))
    held = set(answer.permissions)
    return Grant(checked=True, missing=tuple(p for p in permissions if p not in held))


def _policy(client: Any, resource: str) -> Bindings:
    request = iam_policy_pb2.GetIamPolicyRequest(resource=resource)
    try:
        policy = client.get_iam_policy(request=request, timeout=_CALL_TIMEOUT)
    except exceptions.GoogleAPICallError as error:
        return Bindings(checked=False, note=_why_not(error))
    roles: dict[str, frozenset[str]] = {}
    for binding in policy.bindings:
        roles[binding.role] = roles.get(binding.role, frozenset()) | frozenset(binding.members)
    return Bindings(checked=True, roles=roles)
