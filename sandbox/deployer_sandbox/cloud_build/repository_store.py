"""Cloud Build v2's connections and repositories as the sandbox keeps them, and their names.

    projects/P/locations/L/connections/C                  a connection (github.com only)
    projects/P/locations/L/connections/C/repositories/R   a repository, served by the
                                                          sandbox's git server

The store checks what makes a connection or a repository (the RepositoryManager
servicer answers the RPCs with it) and serves each repository's local
repository with the git server, under `<connection>/<repository>` (another
owner, `<connection>-2`..., when that pair already serves another local
repository).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.cloud.devtools import cloudbuild_v2 as v2

from deployer_sandbox.cloud_build.git_server import GitServer, GitServerError, NameTaken, git_dir
from deployer_sandbox.cloud_build.sources import SourceError, repository_path
from deployer_sandbox.common.protos import clone, new_etag, now
from deployer_sandbox.common.rpc import (
    RpcError,
    aborted,
    already_exists,
    failed_precondition,
    invalid,
    not_found,
    unimplemented,
)

# "Allows alphanumeric characters and any of -._~%!$&'()*+,;=@."
# (CreateConnectionRequest.connection_id, CreateRepositoryRequest.repository_id)
_ID = r"[A-Za-z0-9\-._~%!$&'()*+,;=@]+"
_PARENT = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")
_CONNECTION = re.compile(rf"^projects/([^/]+)/locations/([^/]+)/connections/({_ID})$")
_REPOSITORY = re.compile(
    rf"^(projects/([^/]+)/locations/([^/]+)/connections/({_ID}))/repositories/({_ID})$"
)
Stage = v2.InstallationState.Stage


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


def check_parent(parent: str) -> None:
    """INVALID_ARGUMENT unless `parent` is a connection's parent, a location."""
    if _PARENT.match(parent) is None:
        raise invalid(f"parent {parent!r} must look like projects/PROJECT/locations/LOCATION")


def _check_connection_name(name: str, field: str) -> None:
    if _CONNECTION.match(name) is None:
        raise invalid(
            f"{field} {name!r} must look like "
            "projects/PROJECT/locations/LOCATION/connections/CONNECTION"
        )


def _check_id(value: str, field: str) -> None:
    if not value:
        raise invalid(f"{field} is required")
    if not re.fullmatch(_ID, value):
        raise invalid(
            f"{field} {value!r} may hold only alphanumeric characters and any of -._~%!$&'()*+,;=@"
        )


@dataclass
class StoredRepository:
    """A repository, the local repository behind it and the git server's name for it."""

    record: v2.Repository
    path: Path
    owner: str
    repo: str


class RepositoryStore:
    """Connections and repositories, and the git server serving the repositories. Thread-safe."""

    def __init__(self, git_server: GitServer) -> None:
        self.git_server = git_server
        self._lock = threading.Lock()
        self._connections: dict[str, v2.Connection] = {}
        self._repositories: dict[str, StoredRepository] = {}

    # --- connections ------------------------------------------------------------------------

    def add_connection(
        self, parent: str, connection_id: str, connection: v2.Connection
    ) -> v2.Connection:
        """Store `connection` as `connection_id` under `parent`; a copy of what is stored."""
        check_parent(parent)
        _check_id(connection_id, "connection_id")
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
        stored.etag = new_etag()
        with self._lock:
            if stored.name in self._connections:
                raise already_exists(f"Connection {stored.name} already exists.")
            self._connections[stored.name] = stored
        return clone(stored)

    def connection(self, name: str, field: str = "name") -> v2.Connection:
        """A copy of the connection `name`; INVALID_ARGUMENT or NOT_FOUND."""
        _check_connection_name(name, field)
        with self._lock:
            found = self._connections.get(name)
        if found is None:
            raise not_found(f"Connection {name} not found.")
        return clone(found)

    def connections_in(self, parent: str) -> list[v2.Connection]:
        """Copies of the connections under the location `parent`, by name."""
        check_parent(parent)
        prefix = parent + "/connections/"
        with self._lock:
            return [clone(c) for n, c in sorted(self._connections.items()) if n.startswith(prefix)]

    def delete_connection(self, name: str, etag: str, validate_only: bool) -> None:
        """Forget the connection `name` (`validate_only`: only check that it could)."""
        found = self.connection(name)
        if etag and etag != found.etag:
            # "If an etag is provided and does not match ... an ABORTED error will be returned."
            raise aborted(f"The etag of connection {name} does not match.")
        with self._lock:
            children = [n for n in self._repositories if n.startswith(name + "/")]
        if children:
            # The stricter reading: a connection goes once its repositories are gone.
            raise failed_precondition(
                f"Connection {name} still has {len(children)} repositories; delete them first."
            )
        if not validate_only:  # "validate the request, but do not actually post it"
            with self._lock:
                self._connections.pop(name, None)

    # --- repositories -----------------------------------------------------------------------

    def add_repository(
        self, parent: str, repository_id: str, repository: v2.Repository
    ) -> v2.Repository:
        """Store and serve `repository` as `repository_id` under the connection `parent`."""
        _check_connection_name(parent, "parent")
        _check_id(repository_id, "repository_id")
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
        self._enabled(parent, "parent")
        name = f"{parent}/repositories/{repository_id}"
        with self._lock:
            if name in self._repositories:
                raise already_exists(f"Repository {name} already exists.")
        owner, url = self._serve(parent.rsplit("/", 1)[1], repository_id, path)
        stored = clone(repository)
        stored.name, stored.remote_uri = name, url
        stored.create_time = stored.update_time = now()
        stored.etag = new_etag()
        with self._lock:
            if name in self._repositories:
                raise already_exists(f"Repository {name} already exists.")
            self._repositories[name] = StoredRepository(stored, path, owner, repository_id)
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

    def repository(self, name: str, field: str = "name") -> StoredRepository:
        """The repository `name`; INVALID_ARGUMENT or NOT_FOUND."""
        parse_repository_name(name, field)
        with self._lock:
            found = self._repositories.get(name)
        if found is None:
            raise not_found(f"Repository {name} not found.")
        return found

    def usable(self, name: str, field: str) -> StoredRepository:
        """A repository whose connection is enabled, for the methods that reach GitHub."""
        found = self.repository(name, field)
        self._enabled(parse_repository_name(name, field).connection)
        return found

    def _enabled(self, connection: str, field: str = "name") -> None:
        """FAILED_PRECONDITION when `connection` is disabled: "Repository based API methods
        ... for repositories in this connection will be disabled" (Connection.disabled)."""
        if self.connection(connection, field).disabled:
            raise failed_precondition(f"Connection {connection} is disabled.")

    def repositories_in(self, connection: str) -> list[v2.Repository]:
        """Copies of the repositories of the connection `connection`, by name."""
        prefix = connection + "/repositories/"
        with self._lock:
            return [
                clone(r.record)
                for n, r in sorted(self._repositories.items())
                if n.startswith(prefix)
            ]

    def delete_repository(self, name: str, etag: str, validate_only: bool) -> None:
        """Forget the repository `name`, and stop serving it unless another serves it too."""
        found = self.repository(name)
        if etag and etag != found.record.etag:
            raise aborted(f"The etag of repository {name} does not match.")
        if validate_only:
            return
        with self._lock:
            self._repositories.pop(name, None)
            shared = any(
                (r.owner, r.repo) == (found.owner, found.repo) for r in self._repositories.values()
            )
        if not shared:
            self.git_server.withdraw(found.owner, found.repo)

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
                self.add_connection(
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
        return self.add_repository(
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
