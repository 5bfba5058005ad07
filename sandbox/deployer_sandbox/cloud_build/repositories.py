"""Cloud Build v2 RepositoryManager (`google.devtools.cloudbuild.v2.RepositoryManager`).

Methods: CreateConnection, GetConnection, ListConnections, DeleteConnection,
CreateRepository, GetRepository, ListRepositories, DeleteRepository,
FetchReadToken, FetchGitRefs. Every other method answers UNIMPLEMENTED. The
writes answer a long-running operation that is already done (metadata
`OperationMetadata`, response the resource, or `Empty` for a delete), polled
through `google.longrunning.Operations` as the client library does. What is
stored, and the names, are in `cloud_build.repository_store`.

Sandbox convenience: the sandbox cannot reach github.com, so CreateRepository's
`remote_uri` must be a local path or a `file://` URL of a git repository on this
machine. The sandbox serves that repository with its git server, and the
repository's `remote_uri` (stored, and in every answer) becomes the server's
URL for it, `http://127.0.0.1:PORT/<connection>/<repository>.git` (another owner,
`<connection>-2`..., when that pair already serves another local repository).
Like a private GitHub repository, it refuses anonymous reads: FetchReadToken
gives a token (`ghs_...`, one hour) that reads that repository only, as the
Basic-auth password of any username.

For harness code, `connect(project, location, connection_id, repository_id,
path)` creates the connection when missing and the repository (idempotent), and
returns the stored `Repository`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from google.cloud.devtools import cloudbuild_v2 as v2
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from deployer_sandbox.cloud_build.git_server import GitServer, GitServerError
from deployer_sandbox.cloud_build.repository_store import RepositoryStore, ServedRepository
from deployer_sandbox.cloud_build.sources import SourceError, ref_names
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone, now
from deployer_sandbox.common.rpc import failed_precondition, invalid, not_found, service, unary

RefType = v2.FetchGitRefsRequest.RefType


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def _location_of(name: str) -> str:
    """`projects/P/locations/L` of a connection's or a repository's name."""
    return "/".join(name.split("/")[:4])


class Repositories:
    """The RepositoryManager servicer over its connections and repositories."""

    def __init__(self, operations: Operations, git_server: GitServer) -> None:
        self._operations = operations
        self.git_server = git_server
        self._store = RepositoryStore(git_server)

    # --- for harness code and Cloud Build -------------------------------------------------

    def connect(
        self, project: str, location: str, connection_id: str, repository_id: str, path: Path
    ) -> v2.Repository:
        """See `RepositoryStore.connect`."""
        return self._store.connect(project, location, connection_id, repository_id, path)

    def served(self, name: str) -> ServedRepository:
        """See `RepositoryStore.served`."""
        return self._store.served(name)

    # --- operations -------------------------------------------------------------------------

    def _done(self, parent: str, target: str, verb: str, response: Any) -> operations_pb2.Operation:
        """An operation that is already done with `response`."""
        metadata = v2.OperationMetadata(
            create_time=now(), target=target, verb=verb, api_version="v2"
        )
        name = self._operations.start(parent, metadata)
        metadata.end_time = now()
        self._operations.succeed(name, response, metadata)
        return self._operations.get(name)

    # --- connections ------------------------------------------------------------------------

    def _create_connection(self, request: v2.CreateConnectionRequest) -> Any:
        stored = self._store.add_connection(
            request.parent, request.connection_id, request.connection
        )
        return self._done(request.parent, stored.name, "create", stored)

    def _get_connection(self, request: v2.GetConnectionRequest) -> v2.Connection:
        return self._store.connection(request.name)

    def _list_connections(self, request: v2.ListConnectionsRequest) -> Any:
        found = self._store.connections_in(request.parent)
        items, following = page(found, request.page_size, request.page_token, default_size=None)
        return v2.ListConnectionsResponse(connections=items, next_page_token=following)

    def _delete_connection(self, request: v2.DeleteConnectionRequest) -> Any:
        self._store.delete_connection(request.name, request.etag, request.validate_only)
        return self._done(_location_of(request.name), request.name, "delete", empty_pb2.Empty())

    # --- repositories -----------------------------------------------------------------------

    def _create_repository(self, request: v2.CreateRepositoryRequest) -> Any:
        stored = self._store.add_repository(
            request.parent, request.repository_id, request.repository
        )
        return self._done(_location_of(request.parent), stored.name, "create", stored)

    def _get_repository(self, request: v2.GetRepositoryRequest) -> v2.Repository:
        return clone(self._store.repository(request.name).record)

    def _list_repositories(self, request: v2.ListRepositoriesRequest) -> Any:
        self._store.connection(request.parent)
        if request.filter:
            raise invalid(f"invalid filter {request.filter!r}: the sandbox does not filter")
        found = self._store.repositories_in(request.parent)
        items, following = page(found, request.page_size, request.page_token, default_size=None)
        return v2.ListRepositoriesResponse(repositories=items, next_page_token=following)

    def _delete_repository(self, request: v2.DeleteRepositoryRequest) -> Any:
        self._store.delete_repository(request.name, request.etag, request.validate_only)
        return self._done(_location_of(request.name), request.name, "delete", empty_pb2.Empty())

    def _fetch_read_token(self, request: v2.FetchReadTokenRequest) -> Any:
        found = self._store.usable(request.repository, "repository")
        try:
            token, expires_at = self.git_server.issue_token(found.owner, found.repo)
        except GitServerError:
            raise not_found(f"Repository {request.repository} not found.") from None
        # "Expiration timestamp. Can be empty if unknown or non-expiring." GitHub's
        # installation tokens expire after an hour; this one says when.
        return v2.FetchReadTokenResponse(token=token, expiration_time=_timestamp(expires_at))

    def _fetch_git_refs(self, request: v2.FetchGitRefsRequest) -> Any:
        found = self._store.usable(request.repository, "repository")
        prefixes = {RefType.TAG: "refs/tags/", RefType.BRANCH: "refs/heads/"}
        prefix = prefixes.get(RefType(request.ref_type))
        if prefix is None:
            # "Type of refs to fetch": the sandbox asks for one, the stricter reading.
            raise invalid("ref_type must be TAG or BRANCH")
        try:
            names = ref_names(found.path, prefix)
        except SourceError as error:
            raise failed_precondition(f"cannot read {request.repository}: {error}") from None
        # "Name of the refs fetched": the full names, `refs/heads/main`.
        return v2.FetchGitRefsResponse(ref_names=names)

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler serving `google.devtools.cloudbuild.v2.RepositoryManager`."""
        op = operations_pb2.Operation
        return service(
            "google.devtools.cloudbuild.v2.RepositoryManager",
            {
                "CreateConnection": unary(self._create_connection, v2.CreateConnectionRequest, op),
                "GetConnection": unary(
                    self._get_connection, v2.GetConnectionRequest, v2.Connection
                ),
                "ListConnections": unary(
                    self._list_connections, v2.ListConnectionsRequest, v2.ListConnectionsResponse
                ),
                "DeleteConnection": unary(self._delete_connection, v2.DeleteConnectionRequest, op),
                "CreateRepository": unary(self._create_repository, v2.CreateRepositoryRequest, op),
                "GetRepository": unary(
                    self._get_repository, v2.GetRepositoryRequest, v2.Repository
                ),
                "ListRepositories": unary(
                    self._list_repositories,
                    v2.ListRepositoriesRequest,
                    v2.ListRepositoriesResponse,
                ),
                "DeleteRepository": unary(self._delete_repository, v2.DeleteRepositoryRequest, op),
                "FetchReadToken": unary(
                    self._fetch_read_token, v2.FetchReadTokenRequest, v2.FetchReadTokenResponse
                ),
                "FetchGitRefs": unary(
                    self._fetch_git_refs, v2.FetchGitRefsRequest, v2.FetchGitRefsResponse
                ),
            },
        )
