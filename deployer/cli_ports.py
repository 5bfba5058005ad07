"""The narrow interfaces the command line's own tools need from Google Cloud.

`deployer env import` writes secrets through a `SecretWriter`; `deployer check`
asks IAM through `Permissions`. The Google adapters implement both; the tools
and their tests see only these types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from deployer.config import ServiceConfig

# --- the slice of Secret Manager `env import` needs -------------------------------------


@dataclass(frozen=True)
class StoredSecret:
    """A secret as Secret Manager holds it: its latest enabled version and that version's bytes."""

    version: str | None  # None: no enabled version
    data: bytes | None


class SecretWriter(Protocol):
    def stored(self, project: str, secret: str) -> StoredSecret | None:
        """The latest enabled version (CRC32C checked), or None when the secret does not exist."""
        ...

    def create(self, project: str, secret: str, labels: Mapping[str, str]) -> None:
        """Create an empty secret with automatic replication."""
        ...

    def add_version(self, project: str, secret: str, data: bytes) -> str:
        """Add `data` as a new enabled version; its number."""
        ...


# --- the slice of IAM `check` asks -------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """The caller's answer from `testIamPermissions`: which of the asked permissions it lacks."""

    checked: bool
    missing: tuple[str, ...] = ()
    note: str = ""  # why it was not checked


@dataclass(frozen=True)
class Bindings:
    """A resource's IAM policy: role -> members."""

    checked: bool
    roles: Mapping[str, frozenset[str]] = field(default_factory=dict)
    note: str = ""

    def members(self, roles: frozenset[str]) -> set[str]:
        """Who holds any of `roles`."""
        return {member for role in roles for member in self.roles.get(role, frozenset())}


class Permissions(Protocol):
    """The slice of IAM the checks ask."""

    def on_service(self, service: ServiceConfig, permissions: Sequence[str]) -> Grant:
        """Which of `permissions` the caller lacks on the Cloud Run service."""
        ...

    def on_secret(self, project: str, secret: str, permissions: Sequence[str]) -> Grant:
        """Which of `permissions` the caller lacks on the secret."""
        ...

    def on_job(self, job: str, permissions: Sequence[str]) -> Grant:
        """Which of `permissions` the caller lacks on the Cloud Run job `job` (full name)."""
        ...

    def service_policy(self, service: ServiceConfig) -> Bindings:
        """The Cloud Run service's IAM bindings."""
        ...

    def secret_policy(self, project: str, secret: str) -> Bindings:
        """The secret's IAM bindings."""
        ...


# --- the slice of the deployer's own project `check` reads --------------------------------


@dataclass(frozen=True)
class EnabledApis:
    """Service Usage's answer: which of the asked APIs are enabled."""

    checked: bool
    enabled: frozenset[str] = frozenset()
    note: str = ""  # why it was not checked


@dataclass(frozen=True)
class WorkerJob:
    """The worker job as Cloud Run holds it."""

    found: bool
    task_timeout: float = 0.0  # seconds; Cloud Run's default (600) when the job sets none
    note: str = ""  # why it could not be read (found is False, and it may still exist)


@dataclass(frozen=True)
class DeployerAccount:
    """The service account the deployer runs as, and where that was learnt."""

    email: str | None
    source: str  # DEPLOYER_SERVICE_ACCOUNT, the credentials; or why it is unknown


class ProjectReader(Protocol):
    """What `check` reads of the project `deployer setup` shapes."""

    def enabled_apis(self, project: str, apis: Sequence[str]) -> EnabledApis:
        """Which of `apis` (`run.googleapis.com`...) are enabled in `project`."""
        ...

    def project_policy(self, project: str) -> Bindings:
        """The project's IAM bindings."""
        ...

    def worker_job(self, job: str) -> WorkerJob:
        """The Cloud Run job `job` (full name)."""
        ...

    def deployer_account(self) -> DeployerAccount:
        """Who the deployer runs as."""
        ...
