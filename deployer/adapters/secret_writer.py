"""Secret Manager writes for `deployer env import`: compare, create, add versions.

Needs roles/secretmanager.admin (or secretAccessor + secretVersionAdder + the
right to create secrets) on the project. Values are compared and sent, never logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import google_crc32c
from google.api_core import exceptions
from google.cloud import secretmanager_v1

from deployer.adapters.google_clients import google_client
from deployer.cli_ports import StoredSecret
from deployer.pipeline.ports import SecretProblem

_CALL_TIMEOUT = 30.0
_State = secretmanager_v1.SecretVersion.State


class SecretManagerWriter:
    """`SecretWriter` over the Secret Manager v1 API."""

    def __init__(self, client: secretmanager_v1.SecretManagerServiceClient | None = None) -> None:
        self._client = client or google_client(secretmanager_v1.SecretManagerServiceClient)

    def stored(self, project: str, secret: str) -> StoredSecret | None:
        name = f"projects/{project}/secrets/{secret}"
        try:
            self._client.get_secret(name=name, timeout=_CALL_TIMEOUT)
        except exceptions.NotFound:
            return None
        except exceptions.GoogleAPICallError as error:
            raise SecretProblem(_describe(secret, project, error)) from None
        # `latest` is the newest version even when disabled: ask for the newest enabled one.
        try:
            pages: Any = self._client.list_secret_versions(
                request={"parent": name, "filter": "state:ENABLED"}, timeout=_CALL_TIMEOUT
            )
            enabled = [v.name for v in pages if v.state == _State.ENABLED]
        except exceptions.GoogleAPICallError as error:
            raise SecretProblem(_describe(secret, project, error)) from None
        if not enabled:
            return StoredSecret(version=None, data=None)
        newest = max(enabled, key=lambda n: int(n.rsplit("/", 1)[-1]))
        try:
            answer: Any = self._client.access_secret_version(name=newest, timeout=_CALL_TIMEOUT)
        except exceptions.GoogleAPICallError as error:
            raise SecretProblem(_describe(secret, project, error)) from None
        data: bytes = answer.payload.data
        if (
            "data_crc32c" in answer.payload
            and google_crc32c.value(data) != answer.payload.data_crc32c
        ):
            raise SecretProblem(f"secret {secret} arrived corrupted (CRC32C mismatch)")
        return StoredSecret(version=newest.rsplit("/", 1)[-1], data=data)

    def create(self, project: str, secret: str, labels: Mapping[str, str]) -> None:
        replication = secretmanager_v1.Replication(
            automatic=secretmanager_v1.Replication.Automatic()
        )
        try:
            self._client.create_secret(
                parent=f"projects/{project}",
                secret_id=secret,
                secret=secretmanager_v1.Secret(replication=replication, labels=dict(labels)),
                timeout=_CALL_TIMEOUT,
            )
        except exceptions.AlreadyExists:
            return  # created meanwhile by someone else: adding a version is still right
        except exceptions.GoogleAPICallError as error:
            raise SecretProblem(_describe(secret, project, error)) from None

    def add_version(self, project: str, secret: str, data: bytes) -> str:
        payload = secretmanager_v1.SecretPayload(data=data, data_crc32c=google_crc32c.value(data))
        try:
            version: Any = self._client.add_secret_version(
                parent=f"projects/{project}/secrets/{secret}",
                payload=payload,
                timeout=_CALL_TIMEOUT,
            )
        except exceptions.GoogleAPICallError as error:
            raise SecretProblem(_describe(secret, project, error)) from None
        return str(version.name).rsplit("/", 1)[-1]


def _describe(secret: str, project: str, error: exceptions.GoogleAPICallError) -> str:
    if isinstance(error, exceptions.PermissionDenied):
        return (
            f"no permission on secret {secret} in project {project}; "
            "grant roles/secretmanager.admin to whoever runs the import"
        )
    return f"secret {secret}: {type(error).__name__}: {error.message}"
