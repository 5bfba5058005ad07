"""Secret Manager v1 in the sandbox: secrets, numbered versions, payloads with CRC32C.

Names are `projects/{p}/secrets/{s}[/versions/{n}]` or the regional
`projects/{p}/locations/{l}/secrets/{s}[...]`; a regional secret is a separate
resource from a global one of the same id, as in the real API. `latest` is an
alias to the most recently created version whatever its state, so accessing it
fails while that version is disabled or destroyed (the documented behaviour).
Payloads are never logged. Names and the errors about them are in
`secret_manager.names`, list filters in `secret_manager.listing`. A page size of 0
lists every item left.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import grpc
from google.cloud.secretmanager_v1.types import resources, service
from google.protobuf import empty_pb2

from deployer_sandbox.common import rpc
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone, new_etag, now
from deployer_sandbox.common.rpc import invalid, unary
from deployer_sandbox.secret_manager.iam import SecretIam
from deployer_sandbox.secret_manager.listing import matches_secret, matches_version
from deployer_sandbox.secret_manager.names import (
    check_etag,
    check_numbered_version,
    check_parent,
    check_secret_id,
    check_secret_name,
    is_secret_name,
    no_versions,
    parse_version,
    secret_exists,
    secret_not_found,
    version_in_state,
    version_not_found,
)

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
MAX_PAYLOAD_BYTES = 64 * 1024
State = resources.SecretVersion.State
_UPDATABLE = ("labels", "annotations", "topics")


@dataclass
class _Version:
    meta: resources.SecretVersion
    data: bytes
    crc32c: int


@dataclass
class _Secret:
    meta: resources.Secret
    versions: dict[int, _Version] = field(default_factory=dict)
    last_number: int = 0


def _crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


class SecretManager:
    """In-memory Secret Manager served over gRPC; `access` is for the sandbox's Cloud Run."""

    def __init__(self) -> None:
        # One lock for all state: handlers run on the gRPC thread pool.
        self._lock = threading.RLock()
        self._secrets: dict[str, _Secret] = {}
        self.iam = SecretIam(self._lock, self._secret)

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler for `google.cloud.secretmanager.v1.SecretManagerService`."""
        secret, version = resources.Secret, resources.SecretVersion
        table: list[tuple[str, Any, Any, Any]] = [
            ("CreateSecret", self._create_secret, service.CreateSecretRequest, secret),
            ("GetSecret", self._get_secret, service.GetSecretRequest, secret),
            (
                "ListSecrets",
                self._list_secrets,
                service.ListSecretsRequest,
                service.ListSecretsResponse,
            ),
            ("UpdateSecret", self._update_secret, service.UpdateSecretRequest, secret),
            ("DeleteSecret", self._delete_secret, service.DeleteSecretRequest, empty_pb2.Empty),
            ("AddSecretVersion", self._add_version, service.AddSecretVersionRequest, version),
            ("GetSecretVersion", self._get_version, service.GetSecretVersionRequest, version),
            (
                "ListSecretVersions",
                self._list_versions,
                service.ListSecretVersionsRequest,
                service.ListSecretVersionsResponse,
            ),
            (
                "AccessSecretVersion",
                self._access,
                service.AccessSecretVersionRequest,
                service.AccessSecretVersionResponse,
            ),
            ("EnableSecretVersion", self._enable, service.EnableSecretVersionRequest, version),
            ("DisableSecretVersion", self._disable, service.DisableSecretVersionRequest, version),
            ("DestroySecretVersion", self._destroy, service.DestroySecretVersionRequest, version),
        ]
        methods = {name: unary(handler, req, resp) for name, handler, req, resp in table}
        methods.update(self.iam.methods())
        return rpc.service(SERVICE, methods)

    # --- the interface the rest of the sandbox calls -------------------------------------

    def access(self, name: str) -> tuple[str, bytes]:
        """(concrete version name, payload) for a version, `latest`, or a bare secret name."""
        if is_secret_name(name):
            name = f"{name}/versions/latest"
        with self._lock:
            version = self._enabled_version(name)
            return version.meta.name, version.data

    def create_secret_with_value(self, project: str, secret_id: str, value: bytes) -> str:
        """Add `value` as a new version, creating the secret first if needed; the version name."""
        parent = f"projects/{project}"
        with self._lock:
            if f"{parent}/secrets/{secret_id}" not in self._secrets:
                self._create_secret(
                    service.CreateSecretRequest(
                        parent=parent,
                        secret_id=secret_id,
                        secret=resources.Secret(
                            replication=resources.Replication(
                                automatic=resources.Replication.Automatic()
                            )
                        ),
                    )
                )
            version = self._add_version(
                service.AddSecretVersionRequest(
                    parent=f"{parent}/secrets/{secret_id}",
                    payload=resources.SecretPayload(data=value),
                )
            )
            return str(version.name)

    # --- secrets ---------------------------------------------------------------------------

    def _create_secret(self, request: service.CreateSecretRequest) -> resources.Secret:
        check_parent(request.parent)
        check_secret_id(request.secret_id)
        regional = "/locations/" in request.parent
        replication = request.secret.replication
        # Global secrets must say how they replicate; regional ones live in their location.
        if not regional and "automatic" not in replication and "user_managed" not in replication:
            raise invalid("Secret.replication is required.")
        if "user_managed" in replication and not replication.user_managed.replicas:
            raise invalid("Secret.replication.user_managed.replicas must not be empty.")
        name = f"{request.parent}/secrets/{request.secret_id}"
        with self._lock:
            if name in self._secrets:
                raise secret_exists(name)
            meta = clone(request.secret)
            meta.name = name
            meta.create_time = now()
            meta.etag = new_etag()
            self._secrets[name] = _Secret(meta)
            return clone(meta)

    def _get_secret(self, request: service.GetSecretRequest) -> resources.Secret:
        with self._lock:
            return clone(self._secret(request.name).meta)

    def _list_secrets(self, request: service.ListSecretsRequest) -> service.ListSecretsResponse:
        check_parent(request.parent)
        prefix = f"{request.parent}/secrets/"
        with self._lock:
            secrets = sorted(
                (s.meta for n, s in self._secrets.items() if n.startswith(prefix)),
                key=lambda meta: str(meta.name),
            )
            matching = [s for s in secrets if matches_secret(s, request.filter)]
            found, token = page(matching, request.page_size, request.page_token, default_size=None)
            return service.ListSecretsResponse(
                secrets=[clone(s) for s in found], next_page_token=token, total_size=len(matching)
            )

    def _update_secret(self, request: service.UpdateSecretRequest) -> resources.Secret:
        paths = list(request.update_mask.paths) if "update_mask" in request else []
        if not paths:
            raise invalid("update_mask is required and must name at least one field.")
        unknown = [p for p in paths if p not in _UPDATABLE]
        if unknown:
            raise invalid(
                f"The update_mask contains paths that cannot be updated: {', '.join(unknown)}."
            )
        with self._lock:
            stored = self._secret(request.secret.name)
            check_etag(request.secret.etag, stored.meta.etag)
            target, source = resources.Secret.pb(stored.meta), resources.Secret.pb(request.secret)
            for path in paths:
                # Maps and repeated fields are replaced whole, as a field mask means.
                target.ClearField(path)
                getattr(target, path).MergeFrom(getattr(source, path))
            stored.meta.etag = new_etag()
            return clone(stored.meta)

    def _delete_secret(self, request: service.DeleteSecretRequest) -> empty_pb2.Empty:
        with self._lock:
            stored = self._secret(request.name)
            check_etag(request.etag, stored.meta.etag)
            del self._secrets[str(stored.meta.name)]
            self.iam.forget(str(stored.meta.name))
        return empty_pb2.Empty()

    # --- versions --------------------------------------------------------------------------

    def _add_version(self, request: service.AddSecretVersionRequest) -> resources.SecretVersion:
        payload = request.payload
        if len(payload.data) > MAX_PAYLOAD_BYTES:
            raise invalid(
                f"Secret payload must be no larger than 64KiB, got {len(payload.data)} bytes."
            )
        crc = _crc32c(payload.data)
        client_checksum = "data_crc32c" in payload
        if client_checksum and payload.data_crc32c != crc:
            raise invalid(
                "Checksum mismatch: data_crc32c does not match the CRC32C of the payload data."
            )
        with self._lock:
            stored = self._secret(request.parent)
            stored.last_number += 1
            number = stored.last_number
            meta = resources.SecretVersion(
                name=f"{stored.meta.name}/versions/{number}",
                create_time=now(),
                state=State.ENABLED,
                etag=new_etag(),
                client_specified_payload_checksum=client_checksum,
                replication_status=_replication_status(stored.meta.replication),
            )
            stored.versions[number] = _Version(meta, bytes(payload.data), crc)
            return clone(meta)

    def _get_version(self, request: service.GetSecretVersionRequest) -> resources.SecretVersion:
        with self._lock:
            return clone(self._version(request.name).meta)

    def _list_versions(
        self, request: service.ListSecretVersionsRequest
    ) -> service.ListSecretVersionsResponse:
        with self._lock:
            stored = self._secret(request.parent)
            # Newest first, as the real API lists them.
            versions = [stored.versions[n].meta for n in sorted(stored.versions, reverse=True)]
            matching = [v for v in versions if matches_version(v, request.filter)]
            found, token = page(matching, request.page_size, request.page_token, default_size=None)
            return service.ListSecretVersionsResponse(
                versions=[clone(v) for v in found], next_page_token=token, total_size=len(matching)
            )

    def _access(
        self, request: service.AccessSecretVersionRequest
    ) -> service.AccessSecretVersionResponse:
        with self._lock:
            version = self._enabled_version(request.name)
            return service.AccessSecretVersionResponse(
                name=version.meta.name,
                payload=resources.SecretPayload(data=version.data, data_crc32c=version.crc32c),
            )

    def _enable(self, request: service.EnableSecretVersionRequest) -> resources.SecretVersion:
        return self._transition(request.name, request.etag, State.ENABLED)

    def _disable(self, request: service.DisableSecretVersionRequest) -> resources.SecretVersion:
        return self._transition(request.name, request.etag, State.DISABLED)

    def _destroy(self, request: service.DestroySecretVersionRequest) -> resources.SecretVersion:
        return self._transition(request.name, request.etag, State.DESTROYED)

    def _transition(self, name: str, etag: str, state: Any) -> resources.SecretVersion:
        """Move a version to `state`; DESTROYED is final and drops the payload."""
        check_numbered_version(name)
        with self._lock:
            version = self._version(name)
            check_etag(etag, version.meta.etag)
            if version.meta.state == State.DESTROYED:
                raise version_in_state(version.meta.name, "DESTROYED")
            version.meta.state = state
            if state == State.DESTROYED:
                version.data, version.crc32c = b"", 0
                version.meta.destroy_time = now()
            version.meta.etag = new_etag()
            return clone(version.meta)

    # --- lookups (callers hold the lock) ---------------------------------------------------

    def _secret(self, name: str) -> _Secret:
        check_secret_name(name)
        stored = self._secrets.get(name)
        if stored is None:
            raise secret_not_found(name)
        return stored

    def _version(self, name: str) -> _Version:
        secret_name, number = parse_version(name)
        stored = self._secrets.get(secret_name)
        if number == "latest":
            if stored is None or not stored.versions:
                raise no_versions(secret_name)
            return stored.versions[max(stored.versions)]
        version = stored.versions.get(int(number)) if stored else None
        if version is None:
            raise version_not_found(name)
        return version

    def _enabled_version(self, name: str) -> _Version:
        version = self._version(name)
        if version.meta.state != State.ENABLED:
            raise version_in_state(version.meta.name, State(version.meta.state).name)
        return version


def _replication_status(replication: resources.Replication) -> resources.ReplicationStatus:
    if "user_managed" in replication:
        replicas = [
            resources.ReplicationStatus.UserManagedStatus.ReplicaStatus(location=r.location)
            for r in replication.user_managed.replicas
        ]
        return resources.ReplicationStatus(
            user_managed=resources.ReplicationStatus.UserManagedStatus(replicas=replicas)
        )
    if "automatic" in replication:
        return resources.ReplicationStatus(automatic=resources.ReplicationStatus.AutomaticStatus())
    return resources.ReplicationStatus()


__all__ = ["MAX_PAYLOAD_BYTES", "SecretManager"]
