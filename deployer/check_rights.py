"""Who may do what a deploy does: the caller's rights and the runtime's and users' access."""

from __future__ import annotations

import re

from deployer.check_results import Check, Status, plural
from deployer.cli_ports import Permissions
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
# Probing a private service goes through Cloud Run's door: run.routes.invoke, in
# roles/run.invoker and roles/run.developer (its `run.routes.*`, per Cloud Run's roles page
# and `gcloud iam roles describe roles/run.developer`), not in roles/run.viewer.
INVOKE_PERMISSION = "run.routes.invoke"
# Starting a worker with `args` overridden (what dispatch does): roles/run.developer or
# roles/run.jobsExecutorWithOverrides; roles/run.invoker's run.jobs.run is not enough.
RUN_WITH_OVERRIDES = "run.jobs.runWithOverrides"
# Deploying a revision that runs as a service account needs actAs on that account
# (roles/iam.serviceAccountUser); Cloud Run's own testIamPermissions cannot ask it.
ACT_AS = "iam.serviceAccounts.actAs"
_DEFAULT_RUNTIME_SA = re.compile(r"^serviceAccount:\d+-compute@developer\.gserviceaccount\.com$")


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
    private = not settings.run.allow_unauthenticated
    wanted = (*SERVICE_PERMISSIONS, *((INVOKE_PERMISSION,) if private else ()))
    grant = rights.on_service(service, wanted)
    if not grant.checked:
        return not_checked(subject, grant.note)
    if grant.missing:
        grants = []
        if set(grant.missing) - {INVOKE_PERMISSION}:
            grants.append(
                f"roles/run.developer: `gcloud projects add-iam-policy-binding {service.project} "
                "--member=serviceAccount:DEPLOYER_SA --role=roles/run.developer`"
            )
        if INVOKE_PERMISSION in grant.missing:
            grants.append(
                "roles/run.invoker, to probe the private service: `gcloud run services "
                f"add-iam-policy-binding {service.service} --region={service.region} "
                f"--project={service.project} --member=serviceAccount:DEPLOYER_SA "
                "--role=roles/run.invoker`"
            )
        return Check(
            Status.FAIL,
            subject,
            f"missing {', '.join(grant.missing)} on {service.service}; grant "
            + "; and ".join(grants),
        )
    return Check(Status.OK, subject, f"{', '.join(wanted)} on {service.service}")


def check_act_as(service: ServiceConfig, settings: Environment) -> Check | None:
    """The right to deploy revisions that run as the runtime account (not askable here)."""
    account = settings.run.service_account
    if account is None:
        return None
    return not_checked(
        "acting as the runtime account",
        f"deploying needs {ACT_AS} on {account}, which Cloud Run's API cannot test; grant "
        f"roles/iam.serviceAccountUser: `gcloud iam service-accounts add-iam-policy-binding "
        f"{account} --project={service.project} --member=serviceAccount:DEPLOYER_SA "
        "--role=roles/iam.serviceAccountUser`",
    )


def check_worker_job(rights: Permissions, job: str) -> Check:
    """Whether the caller may start the worker job with its arguments overridden."""
    subject = "rights on worker job"
    short = job.rsplit("/", 1)[-1]
    grant = rights.on_job(job, [RUN_WITH_OVERRIDES])
    if not grant.checked:
        return not_checked(subject, f"{short}: {grant.note}")
    if grant.missing:
        region = job.split("/locations/", 1)[-1].split("/", 1)[0]
        return Check(
            Status.FAIL,
            subject,
            f"missing {RUN_WITH_OVERRIDES} on {short}: the front could not start any worker. "
            f"Grant roles/run.jobsExecutorWithOverrides: `gcloud run jobs add-iam-policy-binding "
            f"{short} --region={region} --member=serviceAccount:FRONT_SA "
            "--role=roles/run.jobsExecutorWithOverrides`",
        )
    return Check(Status.OK, subject, f"{RUN_WITH_OVERRIDES} on {short}")


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
