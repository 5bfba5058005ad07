"""Steps `project grants`, `account grants`, `secret grants` and `service grants`:
the bindings `roles.GRANTS` asks for, each on its own resource, through that
resource's own IAM (`policies.ensure`: missing bindings are added; on the project, a role
setup granted its own accounts that the config no longer asks for is taken back; nobody
else's binding is ever removed).

    project      Resource Manager's project policy
    account      each runtime account's own policy (serviceAccountUser for the deployer)
    secret       Secret Manager's policy of each secret; a secret that does not exist yet
                 is said and skipped (setup never makes an empty secret for a team)
    service      Cloud Run's policy of a service, which exists only after its first deploy:
                 until then the grant is said to come "after the first deploy"
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.api_core import exceptions
from google.cloud import iam_admin_v1, resourcemanager_v3, run_v2, secretmanager_v1
from google.iam.v1 import iam_policy_pb2, options_pb2, policy_pb2

from deployer.setup import policies, roles
from deployer.setup.context import Setup
from deployer.setup.names import CONFIG_SECRET, INPUT_SECRETS, secret_name
from deployer.setup.steps import CALL_TIMEOUT, Changes, StepResult


def _ensure_on(
    client: Any,
    resource: str,
    wanted: Mapping[str, set[str]],
    dry_run: bool,
    managed: Mapping[str, set[str]] | None = None,
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """`policies.ensure` over a client whose get/set_iam_policy take google.iam.v1 requests."""
    options = options_pb2.GetPolicyOptions(requested_policy_version=3)

    def get() -> policy_pb2.Policy:
        request = iam_policy_pb2.GetIamPolicyRequest(resource=resource, options=options)
        found: policy_pb2.Policy = client.get_iam_policy(request=request, timeout=CALL_TIMEOUT)
        return found

    def put(policy: policy_pb2.Policy) -> object:
        request = iam_policy_pb2.SetIamPolicyRequest(resource=resource, policy=policy)
        return client.set_iam_policy(request=request, timeout=CALL_TIMEOUT)

    return policies.ensure(get, put, wanted, dry_run, managed)


def _said(changes: Changes, where: str, additions: Mapping[str, list[str]], dry_run: bool) -> None:
    if additions:
        verb = "grant" if dry_run else "granted"
        changes.done.append(f"{verb} {policies.describe(additions)}{where}")


def grant_on_project(setup: Setup) -> StepResult:
    client = setup.client(resourcemanager_v3.ProjectsClient)
    wanted = setup.wanted.project_roles
    # What setup granted to its own accounts and the config no longer asks for (say,
    # run.admin once no environment is public) is taken back; nobody else's is touched.
    managed = roles.managed_project_roles(setup.project)
    additions, removals = _ensure_on(
        client, f"projects/{setup.project}", wanted, setup.dry_run, managed
    )
    changes = Changes()
    _said(changes, "", additions, setup.dry_run)
    if removals:
        verb = "revoke" if setup.dry_run else "revoked"
        changes.done.append(f"{verb} {policies.describe(removals, 'from')} (no longer needed)")
    held = sum(len(members) for members in wanted.values())
    return changes.result("project grants", setup.dry_run, f"{held} bindings held")


def grant_on_accounts(setup: Setup) -> StepResult:
    client = setup.client(iam_admin_v1.IAMClient)
    changes = Changes()
    for email, wanted in sorted(setup.wanted.account_roles.items()):
        resource = f"projects/-/serviceAccounts/{email}"
        try:
            additions, _ = _ensure_on(client, resource, wanted, setup.dry_run)
        except (exceptions.NotFound, exceptions.PermissionDenied):
            if not setup.dry_run:
                raise
            additions = {role: sorted(m) for role, m in wanted.items()}  # made by `accounts`
        _said(changes, f" on {email.split('@')[0]}", additions, setup.dry_run)
    count = len(setup.wanted.account_roles)
    return changes.result(
        "account grants",
        setup.dry_run,
        f"{count} runtime account{'s' if count != 1 else ''} as wanted",
    )


def _stored_by_setup(setup: Setup, secret: str) -> bool:
    """Whether the `secrets` step stores this secret in this run (a dry run only plans it)."""
    own = secret == secret_name(setup.project, CONFIG_SECRET) or any(
        secret == secret_name(setup.project, s) and s in setup.secret_values for s in INPUT_SECRETS
    )
    return own and setup.dry_run


def grant_on_secrets(setup: Setup) -> StepResult:
    client = setup.client(secretmanager_v1.SecretManagerServiceClient)
    changes = Changes()
    for secret, readers in sorted(setup.wanted.secret_readers.items()):
        wanted = {"roles/secretmanager.secretAccessor": readers}
        try:
            additions, _ = _ensure_on(client, secret, wanted, setup.dry_run)
        except exceptions.NotFound:
            if _stored_by_setup(setup, secret):
                additions = {role: sorted(m) for role, m in wanted.items()}
            else:
                changes.notes.append(f"{secret.rsplit('/', 1)[1]} does not exist yet: skipped")
                continue
        _said(changes, f" on {secret.rsplit('/', 1)[1]}", additions, setup.dry_run)
    count = len(setup.wanted.secret_readers)
    return changes.result("secret grants", setup.dry_run, f"{count} secrets as wanted")


def grant_on_services(setup: Setup) -> StepResult:
    client = setup.client(run_v2.ServicesClient)
    changes = Changes()
    for service, wanted in sorted(setup.wanted.service_roles.items()):
        short_name = service.rsplit("/", 1)[1]
        try:
            additions, _ = _ensure_on(client, service, wanted, setup.dry_run)
        except exceptions.NotFound:
            # Google refuses a role on a service that does not exist: it comes with the
            # next run after the service's first deploy.
            roles_wanted = ", ".join(sorted(r.removeprefix("roles/") for r in wanted))
            changes.notes.append(f"{roles_wanted} on {short_name}: after the first deploy")
            continue
        _said(changes, f" on {short_name}", additions, setup.dry_run)
    return changes.result("service grants", setup.dry_run, "as wanted")


def grant_on_worker_job(setup: Setup, job: str) -> StepResult:
    """`worker job grants`: who may start the worker job with overrides (Cloud Run job IAM)."""
    client = setup.client(run_v2.JobsClient)
    wanted = setup.wanted.worker_job_roles
    changes = Changes()
    try:
        additions, _ = _ensure_on(client, job, wanted, setup.dry_run)
    except exceptions.NotFound:
        if not setup.dry_run:
            raise
        additions = {role: sorted(m) for role, m in wanted.items()}  # made by `worker job`
    _said(changes, "", additions, setup.dry_run)
    return changes.result("worker job grants", setup.dry_run)
