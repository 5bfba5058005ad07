"""Secret Manager v1 in the sandbox: secrets, numbered versions, payloads with CRC32C.

Names are `projects/{p}/secrets/{s}[/versions/{n}]` or the regional
`projects/{p}/locations/{l}/secrets/{s}[...]`; a regional secret is a separate
resource from a global one of the same id, as in the real API. `latest` is an
alias to the most recently created version whatever its state, so accessing it
fails while that version is disabled or destroyed (the documented behaviour).
Payloads are never logged.
"""

from __future__ import annotations

import base64
import itertools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import google_crc32c
import grpc
from google.cloud.secretmanager_v1.types import resources, service
from google.protobuf import empty_pb2, timestamp_pb2

from deployer.sandbox import rpc
from deployer.sandbox.rpc import (
    aborted,
    already_exists,
    failed_precondition,
    invalid,
    not_found,
    unary,
)

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
MAX_PAYLOAD_BYTES = 64 * 1024
State = resources.SecretVersion.State

_PARENT = r"projects/[^/]+(?:/locations/[^/]+)?"
_PARENT_RE = re.compile(rf"^{_PARENT}$")
_SECRET_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,255}$")
_SECRET = rf"{_PARENT}/secrets/[a-zA-Z0-9_-]{{1,255}}"
_SECRET_RE = re.compile(rf"^{_SECRET}$")
_VERSION_RE = re.compile(rf"^(?P<secret>{_SECRET})/versions/(?P<version>[1-9][0-9]*|latest)$")
_UPDATABLE = ("labels", "annotations", "topics")

M = TypeVar("M")


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


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _copy(message: M) -> M:
    """A detached copy, so a response never aliases stored state."""
    cls: Any = type(message)
    copied: M = cls.deserialize(cls.serialize(message))
    return copied


def _crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


def _page(items: list[M], size: int, token: str) -> tuple[list[M], str]:
    """One page of `items` and the token of the next; tokens are opaque offsets."""
    if size < 0:
        raise invalid("page_size must not be negative.")
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("offset:"))
        except ValueError:
            raise invalid(f"Invalid page token [{token}].") from None
    end = len(items) if size == 0 else start + size
    if end >= len(items):
        return items[start:], ""
    return items[start:end], base64.urlsafe_b64encode(f"offset:{end}".encode()).decode()


def _check_parent(parent: str) -> None:
    if not _PARENT_RE.match(parent):
        raise invalid(
            f"The provided parent [{parent}] does not match the expected format "
            "[projects/*] or [projects/*/locations/*]."
        )


def _check_etag(given: str, current: str) -> None:
    if given and given != current:
        raise aborted(
            f"The etag provided in the request [{given}] does not match the current etag of "
            "the resource."
        )


class SecretManager:
    """In-memory Secret Manager served over gRPC; `access` is for the sandbox's Cloud Run."""

    def __init__(self) -> None:
        # One lock for all state: handlers run on the gRPC thread pool.
        self._lock = threading.RLock()
        self._secrets: dict[str, _Secret] = {}
        self._etags = itertools.count(1)

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
        return rpc.service(SERVICE, methods)

    # --- the interface the rest of the sandbox calls -------------------------------------

    def access(self, name: str) -> tuple[str, bytes]:
        """(concrete version name, payload) for a version, `latest`, or a bare secret name."""
        if _SECRET_RE.match(name):
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
        _check_parent(request.parent)
        if not _SECRET_ID_RE.match(request.secret_id):
            raise invalid(
                f"The provided Secret ID [{request.secret_id}] does not match the expected format: "
                "1 to 255 letters, digits, hyphens and underscores."
            )
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
                raise already_exists(f"Secret [{name}] already exists.")
            meta = _copy(request.secret)
            meta.name = name
            meta.create_time = _now()
            meta.etag = self._etag()
            self._secrets[name] = _Secret(meta)
            return _copy(meta)

    def _get_secret(self, request: service.GetSecretRequest) -> resources.Secret:
        with self._lock:
            return _copy(self._secret(request.name).meta)

    def _list_secrets(self, request: service.ListSecretsRequest) -> service.ListSecretsResponse:
        _check_parent(request.parent)
        prefix = f"{request.parent}/secrets/"
        with self._lock:
            secrets = sorted(
                (s.meta for n, s in self._secrets.items() if n.startswith(prefix)),
                key=lambda meta: str(meta.name),
            )
            matching = [s for s in secrets if _matches_secret(s, request.filter)]
            page, token = _page(matching, request.page_size, request.page_token)
            return service.ListSecretsResponse(
                secrets=[_copy(s) for s in page], next_page_token=token, total_size=len(matching)
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
            _check_etag(request.secret.etag, stored.meta.etag)
            target, source = resources.Secret.pb(stored.meta), resources.Secret.pb(request.secret)
            for path in paths:
                # Maps and repeated fields are replaced whole, as a field mask means.
                target.ClearField(path)
                getattr(target, path).MergeFrom(getattr(source, path))
            stored.meta.etag = self._etag()
            return _copy(stored.meta)

    def _delete_secret(self, request: service.DeleteSecretRequest) -> empty_pb2.Empty:
        with self._lock:
            stored = self._secret(request.name)
            _check_etag(request.etag, stored.meta.etag)
            del self._secrets[str(stored.meta.name)]
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
                create_time=_now(),
                state=State.ENABLED,
                etag=self._etag(),
                client_specified_payload_checksum=client_checksum,
                replication_status=_replication_status(stored.meta.replication),
            )
            stored.versions[number] = _Version(meta, bytes(payload.data), crc)
            return _copy(meta)

    def _get_version(self, request: service.GetSecretVersionRequest) -> resources.SecretVersion:
        with self._lock:
            return _copy(self._version(request.name).meta)

    def _list_versions(
        self, request: service.ListSecretVersionsRequest
    ) -> service.ListSecretVersionsResponse:
        with self._lock:
            stored = self._secret(request.parent)
            # Newest first, as the real API lists them.
            versions = [stored.versions[n].meta for n in sorted(stored.versions, reverse=True)]
            matching = [v for v in versions if _matches_version(v, request.filter)]
            page, token = _page(matching, request.page_size, request.page_token)
            return service.ListSecretVersionsResponse(
                versions=[_copy(v) for v in page], next_page_token=token, total_size=len(matching)
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
        if _VERSION_RE.match(name) and name.endswith("/versions/latest"):
            raise invalid(
                f"The provided Secret Version ID [{name}] does not match the expected format "
                "[projects/*/secrets/*/versions/*]: a version number is required."
            )
        with self._lock:
            version = self._version(name)
            _check_etag(etag, version.meta.etag)
            if version.meta.state == State.DESTROYED:
                raise failed_precondition(
                    f"Secret Version [{version.meta.name}] is in DESTROYED state."
                )
            version.meta.state = state
            if state == State.DESTROYED:
                version.data, version.crc32c = b"", 0
                version.meta.destroy_time = _now()
            version.meta.etag = self._etag()
            return _copy(version.meta)

    # --- lookups (callers hold the lock) ---------------------------------------------------

    def _secret(self, name: str) -> _Secret:
        if not _SECRET_RE.match(name):
            raise invalid(
                f"The provided Secret ID [{name}] does not match the expected format "
                "[projects/*/secrets/*]"
            )
        stored = self._secrets.get(name)
        if stored is None:
            raise not_found(f"Secret [{name}] not found.")
        return stored

    def _version(self, name: str) -> _Version:
        match = _VERSION_RE.match(name)
        if match is None:
            raise invalid(
                f"The provided Secret Version ID [{name}] does not match the expected format "
                "[projects/*/secrets/*/versions/*]"
            )
        secret_name, number = match["secret"], match["version"]
        stored = self._secrets.get(secret_name)
        if number == "latest":
            if stored is None or not stored.versions:
                raise not_found(f"Secret [{secret_name}] not found or has no versions.")
            return stored.versions[max(stored.versions)]
        version = stored.versions.get(int(number)) if stored else None
        if version is None:
            raise not_found(f"Secret Version [{name}] not found.")
        return version

    def _enabled_version(self, name: str) -> _Version:
        version = self._version(name)
        if version.meta.state != State.ENABLED:
            state = State(version.meta.state).name
            raise failed_precondition(f"Secret Version [{version.meta.name}] is in {state} state.")
        return version

    def _etag(self) -> str:
        # Quoted and opaque, like the real API's; unique for every write.
        return f'"{next(self._etags):016x}"'


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


def _filter_terms(text: str) -> Iterable[tuple[str, str, str]]:
    """(field, operator, value) for each space-separated `field:value` / `field=value` term."""
    for term in text.split():
        match = re.fullmatch(r"([A-Za-z_.\-0-9]+)([:=])(.*)", term)
        if match is None:
            raise invalid(f"Invalid filter [{text}]: cannot parse [{term}].")
        yield match[1], match[2], match[3].strip('"')


def _matches_secret(secret: resources.Secret, text: str) -> bool:
    """The subset of the list filter syntax the sandbox supports: name and labels terms, ANDed."""
    for key, op, value in _filter_terms(text):
        if key == "name":
            short = str(secret.name).rsplit("/", 1)[-1]
            if not (value in short if op == ":" else value == short):
                return False
        elif key.startswith("labels."):
            label = secret.labels.get(key.removeprefix("labels."))
            if label is None or (value not in ("*", label) if op == ":" else value != label):
                return False
        else:
            raise invalid(f"Unsupported filter field [{key}] in the sandbox.")
    return True


def _matches_version(version: resources.SecretVersion, text: str) -> bool:
    """Supports `state:ENABLED`-style terms only."""
    for key, _, value in _filter_terms(text):
        if key != "state":
            raise invalid(f"Unsupported filter field [{key}] in the sandbox.")
        if State(version.state).name != value.upper():
            return False
    return True


__all__ = ["MAX_PAYLOAD_BYTES", "SecretManager"]
