"""Who may do what a deploy does: the caller's rights and the runtime's and users' access."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from deployer.check_results import Check, Status, plural
from deployer.config import Environment, ServiceConfig

# What the deployer itself does to a service: read it, roll out revisions and traffic, and
# read its IAM policy (each deploy compares it with allow_unauthenticated).
SERVICE_PERMISSIONS = ("run.services.get", "run.services.update", "run.services.getIamPolicy")
# Only needed when a deploy changes who may invoke the service; roles/run.developer lacks it.
SET_POLICY_PERMISSION = "run.services.setIamPolicy"
# Pinning reads metadata only; env_from_secret reads a value.
PIN_PERMISSION = "secretmanager.versions.get"
ACCESS_PERMISSION = "secretmanager.versions.access"
# Roles that let the runtime service account read a secret's value.
ACCESSOR_ROLES = frozenset(
    {"roles/secretmanager.secretAccessor", "roles/secretmanager.admin", "roles/owner"}
)
INVOKER_ROLE = "roles/run.invoker"
_DEFAULT_RUNTIME_SA = re.compile(r"^serviceAccount:\d+-compute@developer\.gserviceaccount\.com$")


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

    def service_policy(self, service: ServiceConfig) -> Bindings:
        """The Cloud Run service's IAM bindings."""
        ...

    def secret_policy(self, project: str, secret: str) -> Bindings:
        """The secret's IAM bindings."""
        ...


def not_checked(subject: str, note: str) -> Check:
    """A WARN: the API would not say, and why."""
    return Check(Status.WARN, subject, f"not checked ({note})")


def check_service_rights(
    rights: Permissions, service: ServiceConfig, settings: Environment, exists: bool
) -> Check:
    """Whether the caller may read and roll out the service."""
    subject = "rights on service"
    if not exists:
        public = settings.run.allow_unauthenticated
        also = f", making it public {SET_POLICY_PERMISSION} (roles/run.admin)" if public else ""
        return not_checked(
            subject,
            f"the service does not exist yet; creating it needs roles/run.developer{also}",
        )
    grant = rights.on_service(service, SERVICE_PERMISSIONS)
    if not grant.checked:
        return not_checked(subject, grant.note)
    if grant.missing:
        return Check(
            Status.FAIL,
            subject,
            f"missing {', '.join(grant.missing)} on {service.service}; grant roles/run.developer",
        )
    return Check(Status.OK, subject, f"{', '.join(SERVICE_PERMISSIONS)} on {service.service}")


def check_secret_rights(
    rights: Permissions, service: ServiceConfig, settings: Environment, usable: list[str]
) -> Check:
    """Whether the caller may pin each secret (and read env_from_secret's value)."""
    subject = "rights on secrets"
    if not usable:
        return Check(Status.OK, subject, "no secrets to read")
    source = settings.env_from_secret.secret if settings.env_from_secret else None
    missing: list[str] = []
    for secret in usable:
        wanted = [PIN_PERMISSION, *([ACCESS_PERMISSION] if secret == source else [])]
        grant = rights.on_secret(service.project, secret, wanted)
        if not grant.checked:
            return not_checked(subject, grant.note)
        missing.extend(f"{permission} on {secret}" for permission in grant.missing)
    if missing:
        return Check(
            Status.FAIL,
            subject,
            f"missing {'; '.join(missing)}; grant roles/secretmanager.viewer "
            "(and secretAccessor for env_from_secret)",
        )
    return Check(Status.OK, subject, f"{PIN_PERMISSION} on {plural(len(usable), 'secret')}")


def check_runtime_access(
    rights: Permissions, service: ServiceConfig, settings: Environment, usable: list[str]
) -> Check:
    """Whether the runtime service account may read each referenced secret's value."""
    account = settings.run.service_account
    who = account or "the default compute service account"
    subject = "runtime access to secrets"
    referenced = [ref.secret for ref in settings.secrets.values() if ref.secret in usable]
    if not referenced:
        return Check(Status.OK, subject, "no secret references")
    lacking: list[str] = []
    for secret in referenced:
        policy = rights.secret_policy(service.project, secret)
        if not policy.checked:
            return not_checked(subject, policy.note)
        members = policy.members(ACCESSOR_ROLES)
        granted = (
            f"serviceAccount:{account}" in members
            if account
            else any(_DEFAULT_RUNTIME_SA.match(m) for m in members)
        )
        if not granted:
            lacking.append(secret)
    if lacking:
        return Check(
            Status.WARN,
            subject,
            f"{who} has no secretAccessor binding on {', '.join(lacking)} "
            "(fine if granted on the project; otherwise revisions fail to start)",
        )
    return Check(Status.OK, subject, f"{who} may read {plural(len(referenced), 'secret')}")


def check_public_access(
    rights: Permissions, service: ServiceConfig, settings: Environment
) -> Check:
    """Whether the service's IAM policy matches allow_unauthenticated, and if not, whether the
    next deploy may change it."""
    subject = "public access"
    policy = rights.service_policy(service)
    if not policy.checked:
        return not_checked(subject, policy.note)
    public = "allUsers" in policy.members(frozenset({INVOKER_ROLE}))
    wanted = settings.run.allow_unauthenticated
    if public == wanted:
        return Check(
            Status.OK,
            subject,
            "public (allUsers may invoke)" if public else "authenticated calls only",
        )
    now = (
        "the service is public (allUsers has roles/run.invoker) but allow_unauthenticated = false"
        if public
        else "allow_unauthenticated = true, but allUsers lacks roles/run.invoker"
    )
    change = "makes it private" if public else "makes it public"
    grant = rights.on_service(service, [SET_POLICY_PERMISSION])
    if not grant.checked:
        return not_checked(subject, f"{now}; the next deploy {change}: {grant.note}")
    if grant.missing:
        return Check(
            Status.FAIL,
            subject,
            f"{now}; the next deploy {change}, which needs {SET_POLICY_PERMISSION} on "
            f"{service.service}: grant roles/run.admin",
        )
    return Check(Status.WARN, subject, f"{now}: the next deploy {change}")
