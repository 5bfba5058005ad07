"""`deployer check`: the project roles of the deployer's accounts, as `deployer setup`
grants them (`deployer/setup/roles.py`'s GRANTS, made concrete by `setup.wanted`).

    an account lacks a role setup grants           FAIL, with the gcloud command
    an account holds more than it needs            warn, naming what it needs instead:
        roles/owner, roles/editor, roles/viewer    basic roles: thousands of permissions
        roles/run.admin                            when no environment is public
                                                   (roles/run.developer is enough)
        roles/iam.serviceAccountUser               on the project: acting as every account
                                                   (setup grants it on the runtime ones)
        roles/secretmanager.secretAccessor,        on the project: every secret's value
        roles/secretmanager.admin                  (setup grants accessor secret by secret)
    the policy cannot be read                      warn: not checked

The accounts: the one the deployer runs as (`deployer_account`: DEPLOYER_SERVICE_ACCOUNT,
else the credentials'), and setup's front and scheduler accounts. Only direct bindings of
`serviceAccount:EMAIL` on the project are read; a role held through a group, a folder or
the organization is not seen. A basic roles/owner or roles/editor covers the roles it lacks
(a deploy would not stop), so those are named in its warning rather than failed.
"""

from __future__ import annotations

from deployer.check_results import Check, Status
from deployer.cli_ports import Bindings, DeployerAccount, ProjectReader
from deployer.config import Config

BASIC_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
COVERING_ROLES = frozenset({"roles/owner", "roles/editor"})
RUN_ADMIN = "roles/run.admin"
# Roles broader on the project than anything setup grants there, and what to say instead.
PROJECT_WIDE = {
    "roles/iam.serviceAccountUser": "acts as every service account in the project; it "
    "needs roles/iam.serviceAccountUser on the runtime accounts only",
    "roles/secretmanager.secretAccessor": "reads every secret in the project; it needs "
    "roles/secretmanager.secretAccessor on its own secrets only",
    "roles/secretmanager.admin": "may change every secret in the project; it needs "
    "roles/secretmanager.viewer, and secretAccessor on its own secrets",
}


def check_bindings(
    reader: ProjectReader,
    config: Config,
    project: str,
    region: str,
    account: DeployerAccount,
) -> list[Check]:
    """One check per account: its project roles against those setup grants it."""
    from deployer.setup import roles
    from deployer.setup.wanted import wanted

    granted = wanted(config, project, region).project_roles
    policy = reader.project_policy(project)
    accounts: list[tuple[str, str | None, str]] = [
        ("the deployer's account", account.email, roles.member(roles.DEPLOYER, project)),
        ("the front's account", _email(roles.member(roles.FRONT, project)), ""),
        ("the scheduler's account", _email(roles.member(roles.SCHEDULER, project)), ""),
    ]
    checks: list[Check] = []
    for label, email, setup_member in accounts:
        subject = f"roles of {label}"
        if email is None:
            checks.append(Check(Status.WARN, subject, f"not checked: {account.source}"))
            continue
        member = f"serviceAccount:{email}"
        # The deployer's account gets the roles setup gives its own `deployer@`, whatever
        # it is called; the others are setup's by name.
        wanted_as = setup_member or member
        needs = sorted(role for role, members in granted.items() if wanted_as in members)
        if not policy.checked:
            checks.append(Check(Status.WARN, subject, f"not checked ({policy.note})"))
            continue
        judged = _judge(label, subject, member, project, needs, policy)
        # Say which account was read as the deployer's, and where that was learnt.
        checks.append(_sourced(judged, email, account.source) if setup_member else judged)
    return checks


def _email(member: str) -> str:
    return member.removeprefix("serviceAccount:")


def _sourced(check: Check, email: str, source: str) -> Check:
    return Check(check.status, check.subject, f"{email} (from {source}): {check.message}")


def _judge(
    label: str, subject: str, member: str, project: str, needs: list[str], policy: Bindings
) -> Check:
    held = sorted(role for role, members in policy.roles.items() if member in members)
    missing = [role for role in needs if role not in held]
    broad = [role for role in held if role in BASIC_ROLES]
    if RUN_ADMIN in held and RUN_ADMIN not in needs:
        broad.append(RUN_ADMIN)
    broad += [role for role in held if role in PROJECT_WIDE and role not in needs]
    covered = any(role in COVERING_ROLES for role in held)
    if missing and not covered:
        fixes = _one_role_a_command(
            f"gcloud projects add-iam-policy-binding {project} --member={member}", missing
        )
        also = f" (and holds {', '.join(broad)}, more than it needs)" if broad else ""
        return Check(
            Status.FAIL,
            subject,
            f"{label} lacks {', '.join(missing)} on {project}{also}: {fixes} "
            "(or run `deployer setup`)",
        )
    if broad:
        return Check(Status.WARN, subject, _too_broad(label, member, project, needs, broad))
    if not needs:
        return Check(Status.OK, subject, f"no project roles, as setup leaves it on {project}")
    return Check(Status.OK, subject, f"{', '.join(needs)} on {project}, nothing broader")


def _too_broad(label: str, member: str, project: str, needs: list[str], broad: list[str]) -> str:
    """`the deployer's account has roles/editor: it needs only ...`, and how to narrow it."""
    reasons = []
    for role in broad:
        if role in PROJECT_WIDE:
            reasons.append(f"{label} has {role} on {project}: it {PROJECT_WIDE[role]}")
        elif role == RUN_ADMIN:
            reasons.append(
                f"{label} has {RUN_ADMIN}, but no environment is public: roles/run.developer "
                "is enough"
            )
        else:
            wanted = ", ".join(needs) if needs else "no project role"
            reasons.append(f"{label} has {role}: it needs only {wanted}")
    removes = _one_role_a_command(
        f"gcloud projects remove-iam-policy-binding {project} --member={member}", broad
    )
    return f"{'; '.join(reasons)}. Grant what it needs (`deployer setup`), then: {removes}"


def _one_role_a_command(command: str, roles: list[str]) -> str:
    """`COMMAND --role=R`, or a shell loop over several: gcloud takes one role a call."""
    if len(roles) == 1:
        return f"`{command} --role={roles[0]}`"
    return f"`for role in {' '.join(roles)}; do {command} --role=$role; done`"
