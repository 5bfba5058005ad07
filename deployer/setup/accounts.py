"""Step `accounts`: the deployer's three accounts and the runtime accounts the config
names, created in IAM when missing (never updated: a name someone gave stays).

A runtime account in another project is that project's to make: it is only noted.
"""

from __future__ import annotations

from google.api_core import exceptions
from google.cloud import iam_admin_v1

from deployer.setup import roles
from deployer.setup.context import Setup
from deployer.setup.steps import CALL_TIMEOUT, Changes, StepResult
from deployer.setup.wanted import runtime_accounts

STEP = "accounts"
_DOMAIN = ".iam.gserviceaccount.com"


def _exists(client: iam_admin_v1.IAMClient, project: str, email: str) -> bool:
    try:
        client.get_service_account(
            name=f"projects/{project}/serviceAccounts/{email}", timeout=CALL_TIMEOUT
        )
    except exceptions.NotFound:
        return False
    return True


def wanted_accounts(setup: Setup) -> dict[str, str]:
    """account id -> display name, of every account setup makes in the project."""
    accounts = {a.account_id: a.display_name for a in roles.ACCOUNTS}
    for email, environments in runtime_accounts(setup.config).items():
        account_id, _, domain = email.partition("@")
        if domain == f"{setup.project}{_DOMAIN}":
            accounts.setdefault(account_id, f"runs {', '.join(environments)}")
    return accounts


def create_accounts(setup: Setup) -> StepResult:
    client = setup.client(iam_admin_v1.IAMClient)
    changes = Changes()
    for account_id, display_name in wanted_accounts(setup).items():
        if _exists(client, setup.project, roles.email(account_id, setup.project)):
            continue
        if not setup.dry_run:
            try:
                client.create_service_account(
                    name=f"projects/{setup.project}",
                    account_id=account_id,
                    service_account=iam_admin_v1.ServiceAccount(display_name=display_name[:100]),
                    timeout=CALL_TIMEOUT,
                )
            except exceptions.AlreadyExists:
                continue  # made between our read and our create: it is there
        changes.done.append(f"create {account_id}" if setup.dry_run else f"created {account_id}")
    for email in runtime_accounts(setup.config):
        if not email.endswith(f"@{setup.project}{_DOMAIN}"):
            changes.notes.append(f"{email} belongs to another project: create it there")
    for environment in setup.wanted.unnamed_runtime:
        changes.notes.append(
            f"{environment} names no run.service_account (it runs as the Compute Engine "
            "default account, which setup leaves alone)"
        )
    return changes.result(STEP, setup.dry_run, f"{len(wanted_accounts(setup))} present")
