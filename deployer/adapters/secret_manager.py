"""Secret Manager behind the pipeline's `Secrets` port.

Pinning reads metadata only (roles/secretmanager.viewer is enough); values are
read only for `env_from_secret`, checked against their CRC32C, and never logged.
"""

from __future__ import annotations

from typing import Any

import google_crc32c
from google.api_core import exceptions
from google.cloud import secretmanager_v1

from deployer.adapters.google_clients import google_client
from deployer.config import SecretRef
from deployer.pipeline.ports import PinnedSecret, SecretProblem

_CALL_TIMEOUT = 30.0


class SecretManagerSecrets:
    """`Secrets` over the Secret Manager v1 API."""

    def __init__(self, client: secretmanager_v1.SecretManagerServiceClient | None = None) -> None:
        self._client = client or google_client(secretmanager_v1.SecretManagerServiceClient)

    def pin(self, project: str, ref: SecretRef) -> PinnedSecret:
        name = f"projects/{project}/secrets/{ref.secret}/versions/{ref.version}"
        try:
            version: Any = self._client.get_secret_version(name=name, timeout=_CALL_TIMEOUT)
        except exceptions.GoogleAPICallError as error:
            raise SecretProblem(_describe(ref, project, error)) from None
        number = version.name.rsplit("/", 1)[-1]
        state = secretmanager_v1.SecretVersion.State(version.state)
        if state != secretmanager_v1.SecretVersion.State.ENABLED:
            raise SecretProblem(
                f"secret {ref.secret} version {number} is {state.name}; enable it or pin another version"
            )
        return PinnedSecret(ref.secret, number)

    def read_text(self, project: str, ref: SecretRef) -> tuple[PinnedSecret, str]:
        name = f"projects/{project}/secrets/{ref.secret}/versions/{ref.version}"
        try:
            answer: Any = self._client.access_secret_version(name=name, timeout=_CALL_TIMEOUT)
        except exceptions.GoogleAPICallError as error:
            raise SecretProblem(_describe(ref, project, error)) from None
        data: bytes = answer.payload.data
        pinned = PinnedSecret(ref.secret, answer.name.rsplit("/", 1)[-1])
        if (
            "data_crc32c" in answer.payload
            and google_crc32c.value(data) != answer.payload.data_crc32c
        ):
            raise SecretProblem(
                f"secret {ref.secret} version {pinned.version} arrived corrupted (CRC32C mismatch)"
            )
        try:
            return pinned, data.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretProblem(
                f"secret {ref.secret} version {pinned.version} is not UTF-8 text"
            ) from None


def _describe(ref: SecretRef, project: str, error: exceptions.GoogleAPICallError) -> str:
    if isinstance(error, exceptions.NotFound):
        if ref.version == "latest":
            return f"secret {ref.secret} not found in project {project} (or it has no versions)"
        return f"secret {ref.secret} has no version {ref.version} in project {project}"
    if isinstance(error, exceptions.FailedPrecondition):
        return f"secret {ref.secret} version {ref.version} cannot be used: {error.message}"
    if isinstance(error, exceptions.PermissionDenied):
        return f"no permission to read secret {ref.secret} in {project}; grant roles/secretmanager.viewer"
    return f"secret {ref.secret}: {type(error).__name__}: {error.message}"
