"""Cloud Build v2 RepositoryManager (`google.devtools.cloudbuild.v2.RepositoryManager`).

    projects/P/locations/L/connections/C                  a connection (github.com only)
    projects/P/locations/L/connections/C/repositories/R   a repository, served by the
                                                          git server (git_server.py)

Methods: CreateConnection, GetConnection, ListConnections, DeleteConnection,
CreateRepository, GetRepository, ListRepositories, DeleteRepository,
FetchReadToken, FetchGitRefs. Every other method answers UNIMPLEMENTED. The
writes answer a long-running operation that is already done (metadata
`OperationMetadata`, response the resource, or `Empty` for a delete), polled
through `google.longrunning.Operations` as the client library does.

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

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.cloud.devtools import cloudbuild_v2 as v2
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from deployer_sandbox.cloud_build.git_server import GitServer, GitServerError, NameTaken, git_dir
from deployer_sandbox.cloud_build.sources import SourceError, ref_names, repository_path
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.protos import clone, now
from deployer_sandbox.common.rpc import (
    RpcError,
    aborted,
    already_exists,
    failed_precondition,
    invalid,
    not_found,
    service,
    unary,
    unimplemented,
)
from deployer_sandbox.secret_manager.listing import page

# "Allows alphanumeric characters and any of -._~%!$&'()*+,;=@."
# (CreateConnectionRequest.connection_id, CreateRepositoryRequest.repository_id)
_ID = r"[A-Za-z0-9\-._~%!$&'()*+,;=@]+"
_PARENT = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")
_CONNECTION = re.compile(rf"^projects/([^/]+)/locations/([^/]+)/connections/({_ID})$")
_REPOSITORY = re.compile(
    rf"^(projects/([^/]+)/locations/([^/]+)/connections/({_ID}))/repositories/({_ID})$"
)
Stage = v2.InstallationState.Stage
RefType = v2.FetchGitRefsRequest.RefType


@dataclass(frozen=True)
class ServedRepository:
    """A 2nd-gen repository as builds see it: where it is, and how it is served."""

    name: str  # projects/P/locations/L/connections/C/repositories/R
    project: str
    location: str
    connection: str  # the connection's full name
    path: Path  # the local repository behind it
    remote_uri: str  # the git server's URL for it
    owner: str  # the git server's owner/name pair, as GitHub's would be
    repo: str

    @property
    def full_name(self) -> str:
        """`owner/name`, what GitHub calls the repository's full name."""
        return f"{self.owner}/{self.repo}"


@dataclass(frozen=True)
class RepositoryName:
    """The parts of `projects/P/locations/L/connections/C/repositories/R`."""

    name: str
    connection: str
    project: str
    location: str


def parse_repository_name(name: str, field: str = "repository") -> RepositoryName:
    """The parts of a repository's resource name; INVALID_ARGUMENT when it is none."""
    match = _REPOSITORY.match(name)
    if match is None:
        raise invalid(
            f"{field} {name!r} must look like "
            "projects/PROJECT/locations/LOCATION/connections/CONNECTION/repositories/REPOSITORY"
        )
    return RepositoryName(name, match.group(1), match.group(2), match.group(3))


@dataclass
class _Repository:
    record: v2.Repository
    path: Path
    owner: str
    repo: str


def _etag(message: Any) -> str:
    """A checksum of the resource's other fields, as `etag` is described."""
    return hashlib.sha256(type(message).serialize(message)).hexdigest()[:16]


def _timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


class Repositories:
    """The RepositoryManager servicer, its connections and repositories."""

    def __init__(self, operations: Operations, git_server: GitServer) -> None:
        self._operations = operations
        self.git_server = git_server
        self._lock = threading.Lock()
        self._connections: dict[str, v2.Connection] = {}
        self._repositories: dict[str, _Repository] = {}

    # --- for harness code and Cloud Build -------------------------------------------------

    def connect(
        self, project: str, location: str, connection_id: str, repository_id: str, path: Path
    ) -> v2.Repository:
        """Connect the local repository at `path` as `repository_id` under `connection_id`.

        The connection (github.com, installed) is created when missing; the repository
        too, and calling again with the same repository returns the stored one. A
        repository of that name backed by another local repository raises `RpcError`
        (ALREADY_EXISTS), as any other refusal of CreateRepository would.
        """
        parent = f"projects/{project}/locations/{location}"
        connection_name = f"{parent}/connections/{connection_id}"
        with self._lock:
            has_connection = connection_name in self._connections
        if not has_connection:
            try:
                self._add_connection(
                    parent,
                    connection_id,
                    v2.Connection(github_config=v2.GitHubConfig(app_installation_id=1)),
                )
            except RpcError as error:
                if error.code != grpc.StatusCode.ALREADY_EXISTS:
                    raise
        name = f"{connection_name}/repositories/{repository_id}"
        with self._lock:
            existing = self._repositories.get(name)
        if existing is not None:
            try:
                same = git_dir(existing.path) == git_dir(Path(path))
            except GitServerError:
                same = False
            if not same:
                raise already_exists(f"Repository {name} already exists.")
            return clone(existing.record)
        return self._add_repository(
            connection_name, repository_id, v2.Repository(remote_uri=str(path))
        )

    def served(self, name: str) -> ServedRepository:
        """The repository `name` as builds use it: INVALID_ARGUMENT, NOT_FOUND or
        FAILED_PRECONDITION (its connection is disabled) as a repository method answers."""
        parsed = parse_repository_name(name)
        with self._lock:
            found = self._repositories.get(name)
            connection = self._connections.get(parsed.connection)
        if found is None or connection is None:
            raise not_found(f"Repository {name} not found.")
        if connection.disabled:
            raise failed_precondition(f"Connection {parsed.connection} is disabled.")
        return ServedRepository(
            name=name,
            project=parsed.project,
            location=parsed.location,
            connection=parsed.connection,
            path=found.path,
            remote_uri=found.record.remote_uri,
            owner=found.owner,
            repo=found.repo,
        )

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

    def _add_connection(
        self, parent: str, connection_id: str, connection: v2.Connection
    ) -> v2.Connection:
        if _PARENT.match(parent) is None:
            raise invalid(f"parent {parent!r} must look like projects/PROJECT/locations/LOCATION")
        if not connection_id:
            raise invalid("connection_id is required")
        if not re.fullmatch(_ID, connection_id):
            raise invalid(
                f"connection_id {connection_id!r} may hold only alphanumeric characters "
                "and any of -._~%!$&'()*+,;=@"
            )
        kind = v2.Connection.pb(connection).WhichOneof("connection_config")
        if kind is None:
            raise invalid("connection: a connection config (github_config, ...) is required")
        if kind != "github_config":
            raise unimplemented(
                f"The sandbox connects to github.com only (github_config); {kind} is not served."
            )
        stored = clone(connection)
        stored.name = f"{parent}/connections/{connection_id}"
        stored.create_time = stored.update_time = now()
        # Installed at once: the sandbox has no GitHub App to install and authorize
        # (InstallationState.Stage.COMPLETE: "Installation process has been completed").
        stored.installation_state = v2.InstallationState(stage=Stage.COMPLETE)
        stored.reconciling = False
        stored.etag = ""
        stored.etag = _etag(stored)
        with self._lock:
            if stored.name in self._connections:
                raise already_exists(f"Connection {stored.name} already exists.")
            self._connections[stored.name] = stored
        return clone(stored)

    def _connection(self, name: str) -> v2.Connection:
        if _CONNECTION.match(name) is None:
            raise invalid(
                f"name {name!r} must look like "
                "projects/PROJECT/locations/LOCATION/connections/CONNECTION"
            )
        with self._lock:
            found = self._connections.get(name)
        if found is None:
            raise not_found(f"Connection {name} not found.")
        return clone(found)

    def _create_connection(self, request: v2.CreateConnectionRequest) -> Any:
        stored = self._add_connection(request.parent, request.connection_id, request.connection)
        return self._done(request.parent, stored.name, "create", stored)

    def _get_connection(self, request: v2.GetConnectionRequest) -> v2.Connection:
        return self._connection(request.name)

    def _list_connections(self, request: v2.ListConnectionsRequest) -> Any:
        if _PARENT.match(request.parent) is None:
            raise invalid(
                f"parent {request.parent!r} must look like projects/PROJECT/locations/LOCATION"
            )
        prefix = request.parent + "/connections/"
        with self._lock:
            found = [clone(c) for n, c in sorted(self._connections.items()) if n.startswith(prefix)]
        items, following = page(found, request.page_size, request.page_token)
        return v2.ListConnectionsResponse(connections=items, next_page_token=following)

    def _delete_connection(self, request: v2.DeleteConnectionRequest) -> Any:
        found = self._connection(request.name)
        if request.etag and request.etag != found.etag:
            # "If an etag is provided and does not match ... an ABORTED error will be returned."
            raise aborted(f"The etag of connection {request.name} does not match.")
        with self._lock:
            children = [n for n in self._repositories if n.startswith(request.name + "/")]
        if children:
            # The stricter reading: a connection goes once its repositories are gone.
            raise failed_precondition(
                f"Connection {request.name} still has {len(children)} repositories; "
                "delete them first."
            )
        if not request.validate_only:  # "validate the request, but do not actually post it"
            with self._lock:
                self._connections.pop(request.name, None)
        parent = "/".join(request.name.split("/")[:4])
        return self._done(parent, request.name, "delete", empty_pb2.Empty())

    # --- repositories -----------------------------------------------------------------------

    def _add_repository(
        self, parent: str, repository_id: str, repository: v2.Repository
    ) -> v2.Repository:
        if _CONNECTION.match(parent) is None:
            raise invalid(
                f"parent {parent!r} must look like "
                "projects/PROJECT/locations/LOCATION/connections/CONNECTION"
            )
        if not repository_id:
            raise invalid("repository_id is required")
        if not re.fullmatch(_ID, repository_id):
            raise invalid(
                f"repository_id {repository_id!r} may hold only alphanumeric characters "
                "and any of -._~%!$&'()*+,;=@"
            )
        if not repository.remote_uri:
            raise invalid("repository.remote_uri is required")  # "Required. Git Clone HTTPS URI."
        try:
            path = repository_path(repository.remote_uri).resolve()
            git_dir(path)
        except (SourceError, GitServerError) as error:
            raise invalid(
                f"repository.remote_uri {repository.remote_uri!r}: the sandbox cannot reach it "
                f"({error}); give a local path or file:// URL of a git repository on this machine"
            ) from None
        connection = self._connection(parent)
        if connection.disabled:
            # "Repository based API methods ... for repositories in this connection will be
            # disabled" (Connection.disabled).
            raise failed_precondition(f"Connection {parent} is disabled.")
        name = f"{parent}/repositories/{repository_id}"
        with self._lock:
            if name in self._repositories:
                raise already_exists(f"Repository {name} already exists.")
        owner, url = self._serve(parent.rsplit("/", 1)[1], repository_id, path)
        stored = clone(repository)
        stored.name, stored.remote_uri = name, url
        stored.create_time = stored.update_time = now()
        stored.etag = ""
        stored.etag = _etag(stored)
        with self._lock:
            if name in self._repositories:
                raise already_exists(f"Repository {name} already exists.")
            self._repositories[name] = _Repository(stored, path, owner, repository_id)
        return clone(stored)

    def _serve(self, connection_id: str, repository_id: str, path: Path) -> tuple[str, str]:
        """(owner, URL): the repository served as `<connection>/<repository>`, or under
        `<connection>-N` when that pair serves another local repository already."""
        number = 1
        while True:
            owner = connection_id if number == 1 else f"{connection_id}-{number}"
            try:
                return owner, self.git_server.serve(owner, repository_id, path)
            except NameTaken:
                number += 1

    def _repository(self, name: str, field: str = "name") -> _Repository:
        parse_repository_name(name, field)
        with self._lock:
            found = self._repositories.get(name)
        if found is None:
            raise not_found(f"Repository {name} not found.")
        return found

    def _usable(self, name: str, field: str) -> _Repository:
        """A repository whose connection is enabled, for the methods that reach GitHub."""
        found = self._repository(name, field)
        connection = parse_repository_name(name, field).connection
        if self._connection(connection).disabled:
            raise failed_precondition(f"Connection {connection} is disabled.")
        return found

    def _create_repository(self, request: v2.CreateRepositoryRequest) -> Any:
        stored = self._add_repository(request.parent, request.repository_id, request.repository)
        parent = "/".join(request.parent.split("/")[:4])
        return self._done(parent, stored.name, "create", stored)

    def _get_repository(self, request: v2.GetRepositoryRequest) -> v2.Repository:
        return clone(self._repository(request.name).record)

    def _list_repositories(self, request: v2.ListRepositoriesRequest) -> Any:
        self._connection(request.parent)
        if request.filter:
            raise invalid(f"invalid filter {request.filter!r}: the sandbox does not filter")
        prefix = request.parent + "/repositories/"
        with self._lock:
            found = [
                clone(r.record)
                for n, r in sorted(self._repositories.items())
                if n.startswith(prefix)
            ]
        items, following = page(found, request.page_size, request.page_token)
        return v2.ListRepositoriesResponse(repositories=items, next_page_token=following)

    def _delete_repository(self, request: v2.DeleteRepositoryRequest) -> Any:
        found = self._repository(request.name)
        if request.etag and request.etag != found.record.etag:
            raise aborted(f"The etag of repository {request.name} does not match.")
        if not request.validate_only:
            with self._lock:
                self._repositories.pop(request.name, None)
                shared = any(
                    (r.owner, r.repo) == (found.owner, found.repo)
                    for r in self._repositories.values()
                )
            if not shared:
                self.git_server.withdraw(found.owner, found.repo)
        parent = "/".join(request.name.split("/")[:4])
        return self._done(parent, request.name, "delete", empty_pb2.Empty())

    def _fetch_read_token(self, request: v2.FetchReadTokenRequest) -> Any:
        found = self._usable(request.repository, "repository")
        try:
            token, expires_at = self.git_server.issue_token(found.owner, found.repo)
        except GitServerError:
            raise not_found(f"Repository {request.repository} not found.") from None
        # "Expiration timestamp. Can be empty if unknown or non-expiring." GitHub's
        # installation tokens expire after an hour; this one says when.
        return v2.FetchReadTokenResponse(token=token, expiration_time=_timestamp(expires_at))

    def _fetch_git_refs(self, request: v2.FetchGitRefsRequest) -> Any:
        found = self._usable(request.repository, "repository")
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
