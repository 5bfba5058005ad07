"""GitHub's state, as far as the sandbox goes: tokens, repositories, deployments and their
statuses, commit statuses, and every REST call made (kept apart from the wire, `api`).

    GitHubState
    ├── tokens         personal access tokens that authenticate (`issue_token`)
    ├── repositories   "owner/name" (case-insensitive, as on GitHub) -> a local git
    │                  repository and its default branch (`register`)
    ├── deployments    id -> the deployment's JSON, as GitHub answers it
    ├── statuses       deployment id -> its statuses, oldest first
    ├── commit states  (repository, sha) -> commit statuses, oldest first
    └── calls          every call: method, path, status, request body (tokens never kept)
"""

from __future__ import annotations

import secrets
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployer_sandbox.github import git_refs

# Classic personal access tokens: `ghp_` and 36 characters ("Behind GitHub's new
# authentication token formats", GitHub blog, 2021).
_TOKEN_PREFIX = "ghp_"
_TOKEN_ALPHABET = string.ascii_letters + string.digits


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class Repository:
    full_name: str  # as registered ("acme/content-api")
    path: Path  # the local git repository it stands for
    default_branch: str


class GitHubState:
    """Everything the sandbox's GitHub REST API remembers; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: set[str] = set()
        self._repositories: dict[str, Repository] = {}
        self._deployments: dict[int, dict[str, Any]] = {}
        self._statuses: dict[int, list[dict[str, Any]]] = {}
        self._commit_statuses: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._calls: list[dict[str, Any]] = []
        self._next_id = 1

    # --- for harness code -----------------------------------------------------------------

    def issue_token(self) -> str:
        """A new token that authenticates (every repository, as a repo-scoped PAT would)."""
        token = _TOKEN_PREFIX + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(36))
        with self._lock:
            self._tokens.add(token)
        return token

    def register(self, full_name: str, path: Path, default_branch: str | None = None) -> Repository:
        """Serve the local repository at `path` as `owner/name` (again: replaced). Its default
        branch: `default_branch`, else the branch its HEAD names."""
        owner, _, name = full_name.partition("/")
        if not owner or not name or "/" in name:
            raise ValueError(f"{full_name!r} is not owner/name")
        branch = default_branch or git_refs.default_branch(path)
        repository = Repository(full_name, path, branch)
        with self._lock:
            self._repositories[full_name.lower()] = repository
        return repository

    # --- what the API asks ----------------------------------------------------------------

    def authenticates(self, token: str) -> bool:
        with self._lock:
            return token in self._tokens

    def repository(self, owner: str, name: str) -> Repository | None:
        with self._lock:
            return self._repositories.get(f"{owner}/{name}".lower())

    def new_id(self) -> int:
        with self._lock:
            issued = self._next_id
            self._next_id += 1
            return issued

    def add_deployment(self, deployment: dict[str, Any]) -> None:
        with self._lock:
            self._deployments[int(deployment["id"])] = deployment
            self._statuses[int(deployment["id"])] = []

    def deployment(self, repository: Repository, deployment_id: int) -> dict[str, Any] | None:
        with self._lock:
            found = self._deployments.get(deployment_id)
            return found if found and found["_repository"] == repository.full_name else None

    def deployments(self, repository: Repository) -> list[dict[str, Any]]:
        """The repository's deployments, newest first (as GitHub lists them)."""
        with self._lock:
            found = [
                d for d in self._deployments.values() if d["_repository"] == repository.full_name
            ]
        return sorted(found, key=lambda d: int(d["id"]), reverse=True)

    def add_status(self, deployment_id: int, status: dict[str, Any]) -> None:
        with self._lock:
            self._statuses[deployment_id].append(status)
            self._deployments[deployment_id]["updated_at"] = status["updated_at"]

    def statuses(self, deployment_id: int) -> list[dict[str, Any]]:
        """Oldest first (the API lists them newest first)."""
        with self._lock:
            return list(self._statuses.get(deployment_id, []))

    def add_commit_status(self, repository: Repository, sha: str, status: dict[str, Any]) -> None:
        with self._lock:
            self._commit_statuses.setdefault((repository.full_name, sha), []).append(status)

    def commit_states(self, repository: Repository, sha: str) -> dict[str, str]:
        """Each context's latest state on the commit."""
        with self._lock:
            found = list(self._commit_statuses.get((repository.full_name, sha), []))
        return {status["context"]: status["state"] for status in found}

    # --- the record of calls ----------------------------------------------------------------

    def record_call(self, method: str, path: str, status: int, body: Any) -> None:
        with self._lock:
            self._calls.append(
                {"at": time.time(), "method": method, "path": path, "status": status, "body": body}
            )

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(call) for call in self._calls]

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()


def stamp() -> str:
    """Now, as GitHub writes times."""
    return _now()
