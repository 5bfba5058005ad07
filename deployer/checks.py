"""`deployer check [ENV]`: the deploy's preflight and more, without deploying anything.

One line per check, `ok`, `warn` or `FAIL`; any FAIL means a deploy would stop.
The checks reuse the pipeline's own preflight functions, so `check` and a
deploy cannot disagree about the config, the build config, secrets, the service
or the ref. Rights are asked with `testIamPermissions` where the API has it;
an API that does not answer (the sandbox's Secret Manager) is reported, not failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from deployer.config import Config, Environment, ServiceConfig, load_config
from deployer.errors import ConfigError
from deployer.pipeline.ports import Platform, SecretProblem
from deployer.pipeline.preflight import current_service, load_build, resolve_env, resolve_ref
from deployer.pipeline.stages import Deadline, StageFailed

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
_REGISTRY_REGION = re.compile(r"^(?P<region>[a-z0-9-]+)-docker\.pkg\.dev/")


# --- the slice of IAM this needs ------------------------------------------------------


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
        return {member for role in roles for member in self.roles.get(role, frozenset())}


class Permissions(Protocol):
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


# --- results ------------------------------------------------------------------------------


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    status: Status
    subject: str
    message: str


@dataclass(frozen=True)
class EnvironmentReport:
    environment: str
    title: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class CheckReport:
    config: Check
    environments: tuple[EnvironmentReport, ...] = ()

    def all(self) -> list[Check]:
        return [self.config, *(c for e in self.environments for c in e.checks)]

    @property
    def failed(self) -> bool:
        return any(check.status == Status.FAIL for check in self.all())


# --- the checks -----------------------------------------------------------------------


def run_checks(
    platform: Callable[[], Platform],
    permissions: Callable[[], Permissions],
    environment: str | None = None,
    ref: str | None = None,
    config_path: Path | str | None = None,
) -> CheckReport:
    """Check one environment (or all) without changing anything."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        return CheckReport(Check(Status.FAIL, "config", str(error)))
    names = [environment] if environment else sorted(config.environments)
    head = Check(
        Status.OK,
        "config",
        f"{config.path} is valid: {_count(config.services, 'service')}, "
        f"{_count(config.environments, 'environment')}",
    )
    if environment and environment not in config.environments:
        known = ", ".join(sorted(config.environments))
        return CheckReport(
            Check(
                Status.FAIL,
                "config",
                f"no environment {environment!r} in {config.path}; known: {known}",
            )
        )
    world, rights = platform(), permissions()
    reports = tuple(_environment(config, name, world, rights, ref) for name in names)
    return CheckReport(head, reports)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _count(items: Mapping[str, object], noun: str) -> str:
    names = ", ".join(sorted(items))
    return f"{_plural(len(items), noun)} ({names})"


def _environment(
    config: Config, name: str, platform: Platform, rights: Permissions, ref: str | None
) -> EnvironmentReport:
    settings = config.environment(name)
    service = config.services[settings.service]
    checks: list[Check] = [_build(config, service)]
    pinned = _secrets(platform, service, settings, checks)
    exists = _service(platform, service, checks)
    checks.append(_ref(platform, service, settings, ref))
    checks.append(_image(service))
    checks.append(_service_rights(rights, service, settings, exists))
    checks.append(_secret_rights(rights, service, settings, pinned))
    checks.append(_runtime_access(rights, service, settings, pinned))
    if exists:
        checks.append(_public_access(rights, service, settings))
    title = f"{name}: service {service.service} in {service.project}/{service.region}"
    return EnvironmentReport(name, title, tuple(checks))


def _build(config: Config, service: ServiceConfig) -> Check:
    try:
        build = load_build(config, service)
    except StageFailed as failure:
        detail = f": {failure.detail}" if failure.detail else ""
        return Check(Status.FAIL, "build config", failure.summary + detail)
    steps = len(build.steps)
    return Check(
        Status.OK,
        "build config",
        f"{config.build_config_path(service)} loads ({_plural(steps, 'step')})",
    )


def _secrets(
    platform: Platform, service: ServiceConfig, settings: Environment, checks: list[Check]
) -> list[str]:
    """One check per secret reference (and env_from_secret); the ids that exist."""
    usable: list[str] = []
    for name, ref in settings.secrets.items():
        try:
            pinned = platform.secrets.pin(service.project, ref)
        except SecretProblem as problem:
            checks.append(Check(Status.FAIL, f"secret {name}", f"{ref}: {problem}"))
            continue
        usable.append(ref.secret)
        checks.append(
            Check(Status.OK, f"secret {name}", f"{ref} -> version {pinned.version}, enabled")
        )
    source = settings.env_from_secret
    if source is None:
        return usable
    subject = "env_from_secret"
    try:
        pinned = platform.secrets.pin(service.project, source)
        # The deploy's own reading: CRC32C-checked, parsed exactly, reserved names skipped.
        alone = settings.model_copy(update={"secrets": {}, "env": {}})
        env, _, warnings = resolve_env(platform.secrets, service, alone)
    except SecretProblem as problem:
        checks.append(Check(Status.FAIL, subject, f"{source}: {problem}"))
        return usable
    except StageFailed as failure:
        checks.append(Check(Status.FAIL, subject, f"{source}: {failure.summary}"))
        return usable
    usable.append(source.secret)
    shadowed = sorted(set(env) & (set(settings.secrets) | set(settings.env)))
    note = f"; {', '.join(shadowed)} set by the config instead" if shadowed else ""
    checks.append(
        Check(
            Status.OK,
            subject,
            f"{source} -> version {pinned.version}: {_plural(len(env), 'variable')} parse{note}",
        )
    )
    checks.extend(Check(Status.WARN, subject, warning) for warning in warnings)
    return usable


def _service(platform: Platform, service: ServiceConfig, checks: list[Check]) -> bool:
    subject = f"service {service.service}"
    try:
        state = current_service(platform.revisions, service)
    except StageFailed as failure:
        checks.append(Check(Status.FAIL, subject, failure.summary))
        return True
    except Exception as error:  # any API failure is this check's answer, not a crash
        checks.append(Check(Status.FAIL, subject, f"cannot read it: {error}"))
        return False
    if state is None:
        checks.append(
            Check(Status.OK, subject, "does not exist yet: will be created by the first deploy")
        )
        return False
    serving = ", ".join(f"{share.revision} {share.percent}%" for share in state.serving())
    checks.append(Check(Status.OK, subject, f"exists, serving {serving}"))
    return True


def _ref(
    platform: Platform, service: ServiceConfig, settings: Environment, ref: str | None
) -> Check:
    subject = f"ref {ref or 'HEAD'}"
    try:
        commit = resolve_ref(platform.refs, service, ref, Deadline(settings.timeouts.preflight))
    except StageFailed as failure:
        return Check(Status.FAIL, subject, failure.summary)
    return Check(Status.OK, subject, f"resolves to {commit[:12]}")


def _image(service: ServiceConfig) -> Check:
    match = _REGISTRY_REGION.match(service.image)
    if match is None:  # the config's own validation makes this unreachable today
        return Check(Status.FAIL, "image", f"{service.image} is not an Artifact Registry image")
    region = match["region"]
    if region != service.region:
        return Check(
            Status.WARN,
            "image",
            f"{service.image}: Artifact Registry in {region}, but the service runs in "
            f"{service.region} (slower, billed cross-region pulls)",
        )
    return Check(Status.OK, "image", f"{service.image}: Artifact Registry in {region}")


def _not_checked(subject: str, note: str) -> Check:
    return Check(Status.WARN, subject, f"not checked ({note})")


def _service_rights(
    rights: Permissions, service: ServiceConfig, settings: Environment, exists: bool
) -> Check:
    subject = "rights on service"
    if not exists:
        public = settings.run.allow_unauthenticated
        also = f", making it public {SET_POLICY_PERMISSION} (roles/run.admin)" if public else ""
        return _not_checked(
            subject,
            f"the service does not exist yet; creating it needs roles/run.developer{also}",
        )
    grant = rights.on_service(service, SERVICE_PERMISSIONS)
    if not grant.checked:
        return _not_checked(subject, grant.note)
    if grant.missing:
        return Check(
            Status.FAIL,
            subject,
            f"missing {', '.join(grant.missing)} on {service.service}; grant roles/run.developer",
        )
    return Check(Status.OK, subject, f"{', '.join(SERVICE_PERMISSIONS)} on {service.service}")


def _secret_rights(
    rights: Permissions, service: ServiceConfig, settings: Environment, usable: list[str]
) -> Check:
    subject = "rights on secrets"
    if not usable:
        return Check(Status.OK, subject, "no secrets to read")
    source = settings.env_from_secret.secret if settings.env_from_secret else None
    missing: list[str] = []
    for secret in usable:
        wanted = [PIN_PERMISSION, *([ACCESS_PERMISSION] if secret == source else [])]
        grant = rights.on_secret(service.project, secret, wanted)
        if not grant.checked:
            return _not_checked(subject, grant.note)
        missing.extend(f"{permission} on {secret}" for permission in grant.missing)
    if missing:
        return Check(
            Status.FAIL,
            subject,
            f"missing {'; '.join(missing)}; grant roles/secretmanager.viewer "
            "(and secretAccessor for env_from_secret)",
        )
    return Check(Status.OK, subject, f"{PIN_PERMISSION} on {_plural(len(usable), 'secret')}")


def _runtime_access(
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
            return _not_checked(subject, policy.note)
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
    return Check(Status.OK, subject, f"{who} may read {_plural(len(referenced), 'secret')}")


def _public_access(rights: Permissions, service: ServiceConfig, settings: Environment) -> Check:
    """Whether the service's IAM policy matches allow_unauthenticated, and if not, whether the
    next deploy may change it."""
    subject = "public access"
    policy = rights.service_policy(service)
    if not policy.checked:
        return _not_checked(subject, policy.note)
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
        return _not_checked(subject, f"{now}; the next deploy {change}: {grant.note}")
    if grant.missing:
        return Check(
            Status.FAIL,
            subject,
            f"{now}; the next deploy {change}, which needs {SET_POLICY_PERMISSION} on "
            f"{service.service}: grant roles/run.admin",
        )
    return Check(Status.WARN, subject, f"{now}: the next deploy {change}")


# --- what the user reads -----------------------------------------------------------------


def render_checks(report: CheckReport) -> list[str]:
    """One line per check, then a count."""
    lines = [_line(report.config)]
    for environment in report.environments:
        lines.append(environment.title)
        lines.extend(_line(check) for check in environment.checks)
    every = report.all()
    counts = {status: sum(1 for c in every if c.status == status) for status in Status}
    verdict = "would stop a deploy" if report.failed else "a deploy can go ahead"
    lines.append(
        f"{counts[Status.OK]} ok, {counts[Status.WARN]} warn, {counts[Status.FAIL]} FAIL: {verdict}"
    )
    return lines


def _line(check: Check) -> str:
    return f"  {check.status:<4}  {check.subject}: {check.message}"
