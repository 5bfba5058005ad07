"""What Google's predefined roles let a caller do to one Cloud Run service or job.

The `caller_roles` fault makes the sandbox's caller hold only the roles it
names; `TestIamPermissions` on a service or a job then answers the asked permissions those
roles grant there (`held`). Without the fault the caller may do anything.

Sources, read in August 2026:
  https://cloud.google.com/run/docs/reference/iam/roles (Cloud Run IAM roles) and
  https://cloud.google.com/iam/docs/understanding-roles#cloud-run-roles, which now lives at
  https://cloud.google.com/iam/docs/roles-permissions/run (the same role table);
  https://cloud.google.com/run/docs/reference/iam/permissions for which permission belongs
  to which resource; and, for the exact permission lists, the output of
  `gcloud iam roles describe ROLE` kept by darkbitio/gcp-iam-role-permissions
  (roles/<ROLE>, snapshot of 2026-08-22).

Only the permissions that apply to one service (`SERVICE_PERMISSIONS`) or one job
(`JOB_PERMISSIONS`) are listed; a role's other permissions (recommender.*, run.revisions.*,
run.operations.*, run.locations.*, run.*.sshRead, tags...) are left out because
`TestIamPermissions` on a service or job drops them anyway.

Worth knowing, as the sources show it:
- roles/run.developer DOES include run.routes.invoke (its row lists `run.routes.*`; the
  role dump lists run.routes.get, .invoke, .list, and has since 2021). What it lacks is
  run.services.setIamPolicy and run.jobs.setIamPolicy ("Can get but not set IAM policies").
- roles/editor likewise has everything here but the two setIamPolicy permissions; only
  roles/owner and roles/run.admin (`run.*`) may change a service's or job's policy.
- roles/run.invoker holds run.routes.invoke and run.jobs.run (and run.instances.invoke),
  not run.jobs.runWithOverrides nor run.executions.cancel.
- Cancelling an execution needs run.executions.cancel since 16 September 2024 (it was
  run.jobs.run before); both jobs executor roles hold it.
- roles/run.editor ("Cloud Run Editor") is in the role dumps since April 2026 but not on
  the Cloud Run roles page as read; modelled from the dump alone.
- roles/run.sourceDeveloper and roles/run.sourceViewer were Beta on older copies of the
  page, GA in the dump; they equal roles/run.developer and roles/run.viewer here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Permissions that apply to one Cloud Run service (Cloud Run IAM permissions page,
# "Services" and "Routes").
SERVICE_PERMISSIONS = frozenset(
    {
        "run.services.get",
        "run.services.list",
        "run.services.create",
        "run.services.update",
        "run.services.delete",
        "run.services.getIamPolicy",
        "run.services.setIamPolicy",
        "run.routes.invoke",
    }
)
# Permissions that apply to one Cloud Run job and the executions and tasks under it
# (Cloud Run IAM permissions page, "Jobs").
JOB_PERMISSIONS = frozenset(
    {
        "run.jobs.get",
        "run.jobs.list",
        "run.jobs.create",
        "run.jobs.update",
        "run.jobs.delete",
        "run.jobs.run",
        "run.jobs.runWithOverrides",
        "run.jobs.getIamPolicy",
        "run.jobs.setIamPolicy",
        "run.executions.get",
        "run.executions.list",
        "run.executions.delete",
        "run.executions.cancel",
        "run.tasks.get",
        "run.tasks.list",
    }
)
_ALL = SERVICE_PERMISSIONS | JOB_PERMISSIONS
_SET_POLICY = frozenset({"run.services.setIamPolicy", "run.jobs.setIamPolicy"})
# Everything but changing who may do what.
_DEVELOPER = _ALL - _SET_POLICY
# Reading, policies included ("Can view the state of all Cloud Run resources, including
# IAM policies"); no invoking, no running.
_VIEWER = frozenset(
    {
        "run.services.get",
        "run.services.list",
        "run.services.getIamPolicy",
        "run.jobs.get",
        "run.jobs.list",
        "run.jobs.getIamPolicy",
        "run.executions.get",
        "run.executions.list",
        "run.tasks.get",
        "run.tasks.list",
    }
)

# role -> the permissions in SERVICE_PERMISSIONS | JOB_PERMISSIONS it grants.
ROLES: dict[str, frozenset[str]] = {
    "roles/run.admin": _ALL,  # run.*
    "roles/run.developer": _DEVELOPER,
    "roles/run.sourceDeveloper": _DEVELOPER,
    "roles/run.editor": _DEVELOPER,  # the role dump only (see above)
    "roles/run.viewer": _VIEWER,
    "roles/run.sourceViewer": _VIEWER,
    "roles/run.invoker": frozenset({"run.routes.invoke", "run.jobs.run"}),
    "roles/run.servicesInvoker": frozenset({"run.routes.invoke"}),
    "roles/run.jobsExecutor": frozenset({"run.jobs.run", "run.executions.cancel"}),
    "roles/run.jobsExecutorWithOverrides": frozenset(
        {"run.jobs.run", "run.jobs.runWithOverrides", "run.executions.cancel"}
    ),
    "roles/owner": _ALL,
    "roles/editor": _DEVELOPER,
    "roles/viewer": _VIEWER,
}


def granted(roles: Iterable[str]) -> frozenset[str]:
    """Every permission (of those modelled) that holding all of `roles` grants."""
    permissions: frozenset[str] = frozenset()
    for role in roles:
        permissions |= ROLES[role]
    return permissions


def held(
    asked: Sequence[str], applicable: frozenset[str], roles: frozenset[str] | None
) -> list[str]:
    """The asked permissions the caller holds on a resource, in the order asked, once each.

    `applicable`: the permissions that exist on the resource (others are dropped, as
    Google drops them); `roles`: the caller's roles, or None for a caller who may do
    anything.
    """
    holds = applicable if roles is None else applicable & granted(roles)
    return list(dict.fromkeys(p for p in asked if p in holds))
