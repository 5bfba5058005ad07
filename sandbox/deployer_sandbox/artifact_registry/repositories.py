"""Artifact Registry repositories as records: CreateRepository and GetRepository.

Pushes do not need one here (any `L-docker.pkg.dev/P/R` path takes images, see `api.py`);
these records are what `deployer setup` creates and reads back, as on Google:

    CreateRepository  parent projects/P/locations/L, repository_id, repository
                      -> an operation whose response is the Repository (name, format,
                         create_time, update_time); ALREADY_EXISTS when the name is taken;
                         INVALID_ARGUMENT for an id Google refuses
    GetRepository     the record, or NOT_FOUND ("Requested entity was not found.")

Repository ids: "may only contain lowercase letters, numbers, and hyphens, and must
begin with a letter and end with a letter or number" (cloud.google.com/artifact-registry/
docs/repositories/create-repos, "Repository names"), at most 63 characters.
"""

from __future__ import annotations

import re
import threading

from google.cloud.artifactregistry_v1.types import repository, service
from google.longrunning import operations_pb2

from deployer_sandbox.artifact_registry.names import entity_not_found
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.protos import now
from deployer_sandbox.common.rpc import already_exists, invalid

_ID = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_LOCATION = re.compile(r"^projects/[^/]+/locations/[^/]+$")
_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/repositories/[^/]+$")


class RepositoryRecords:
    """The repositories created through the API, by name. Thread-safe."""

    def __init__(self, operations: Operations) -> None:
        self._operations = operations
        self._lock = threading.Lock()
        self._records: dict[str, repository.Repository] = {}

    def create(self, request: repository.CreateRepositoryRequest) -> operations_pb2.Operation:
        if not _LOCATION.match(request.parent):
            raise invalid(f"Invalid parent {request.parent!r}: expected projects/*/locations/*.")
        if not _ID.match(request.repository_id):
            raise invalid(
                f"Invalid repository id {request.repository_id!r}: it may only contain "
                "lowercase letters, numbers, and hyphens, and must begin with a letter and "
                "end with a letter or number."
            )
        name = f"{request.parent}/repositories/{request.repository_id}"
        created = repository.Repository(request.repository)
        created.name = name
        stamp = now()
        created.create_time = stamp
        created.update_time = stamp
        with self._lock:
            if name in self._records:
                raise already_exists(f"the repository already exists: {name}")
            self._records[name] = created
        operation = self._operations.start(request.parent, service.OperationMetadata())
        self._operations.succeed(
            operation, repository.Repository(created), service.OperationMetadata()
        )
        return self._operations.get(operation)

    def get(self, request: repository.GetRepositoryRequest) -> repository.Repository:
        if not _NAME.match(request.name):
            raise invalid(
                f"Invalid repository name {request.name!r}: expected "
                "projects/*/locations/*/repositories/*."
            )
        with self._lock:
            found = self._records.get(request.name)
        if found is None:
            raise entity_not_found()
        return repository.Repository(found)
