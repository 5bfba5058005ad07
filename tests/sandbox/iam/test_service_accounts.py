"""IAM admin v1 service accounts in the sandbox, through the real `iam_admin_v1` client."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import iam_admin_v1

from tests.conftest import GoogleClients


@pytest.fixture
def client(google_clients: GoogleClients) -> iam_admin_v1.IAMClient:
    return google_clients(iam_admin_v1.IAMClient)


def create(client: iam_admin_v1.IAMClient, project: str, account_id: str = "deployer") -> str:
    account = client.create_service_account(
        name=f"projects/{project}",
        account_id=account_id,
        service_account={"display_name": "Deployer", "description": "runs deploys"},
    )
    return str(account.email)


def test_create_gives_the_email_and_a_unique_id(client, project) -> None:
    account = client.create_service_account(
        name=f"projects/{project}",
        account_id="deployer",
        service_account={"display_name": "Deployer"},
    )

    email = f"deployer@{project}.iam.gserviceaccount.com"
    assert account.email == email
    assert account.name == f"projects/{project}/serviceAccounts/{email}"
    assert account.project_id == project
    assert account.display_name == "Deployer"
    assert len(account.unique_id) == 21 and account.unique_id.isdigit()
    assert account.oauth2_client_id == account.unique_id


def test_a_second_create_is_already_exists(client, project) -> None:
    create(client, project)
    with pytest.raises(exceptions.AlreadyExists, match=f"within project projects/{project}"):
        create(client, project)


@pytest.mark.parametrize(
    "account_id", ["short", "a" * 31, "1starts-with-digit", "ends-", "Upper-case"]
)
def test_a_malformed_account_id_is_invalid(client, project, account_id) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="6-30 characters"):
        create(client, project, account_id)


def test_get_by_email_unique_id_and_wildcard(client, project) -> None:
    email = create(client, project)
    unique_id = client.get_service_account(
        name=f"projects/{project}/serviceAccounts/{email}"
    ).unique_id

    by_id = client.get_service_account(name=f"projects/{project}/serviceAccounts/{unique_id}")
    by_wildcard = client.get_service_account(name=f"projects/-/serviceAccounts/{email}")

    assert by_id.email == by_wildcard.email == email


def test_an_unknown_account_is_not_found_or_denied_under_the_wildcard(client, project) -> None:
    missing = f"nobody@{project}.iam.gserviceaccount.com"
    with pytest.raises(exceptions.NotFound, match="Unknown service account"):
        client.get_service_account(name=f"projects/{project}/serviceAccounts/{missing}")
    # The proto's own warning: under `-` a missing account is 403, not 404.
    with pytest.raises(exceptions.PermissionDenied):
        client.get_service_account(name=f"projects/-/serviceAccounts/{missing}")


def test_list_holds_the_projects_accounts_only(client, project) -> None:
    for account_id in ("worker-run", "front-run", "scheduler-run"):
        create(client, project, account_id)
    create(client, f"{project}-b", "elsewhere")

    pager = client.list_service_accounts(request={"name": f"projects/{project}", "page_size": 2})
    emails = [account.email for account in pager]

    assert emails == sorted(
        f"{a}@{project}.iam.gserviceaccount.com"
        for a in ("worker-run", "front-run", "scheduler-run")
    )


def test_an_accounts_policy_starts_empty_and_takes_service_account_user(client, project) -> None:
    email = create(client, project, "runtime-sa")
    deployer = create(client, project, "deployer")
    resource = f"projects/{project}/serviceAccounts/{email}"
    policy = client.get_iam_policy(request={"resource": resource})
    assert list(policy.bindings) == []

    policy.bindings.add(role="roles/iam.serviceAccountUser", members=[f"serviceAccount:{deployer}"])
    written = client.set_iam_policy(request={"resource": resource, "policy": policy})

    read = client.get_iam_policy(request={"resource": resource})
    assert [(b.role, list(b.members)) for b in read.bindings] == [
        ("roles/iam.serviceAccountUser", [f"serviceAccount:{deployer}"])
    ]
    assert read.etag == written.etag != policy.etag


def test_a_stale_etag_is_aborted(client, project) -> None:
    email = create(client, project)
    resource = f"projects/{project}/serviceAccounts/{email}"
    first = client.get_iam_policy(request={"resource": resource})
    second = client.get_iam_policy(request={"resource": resource})
    first.bindings.add(role="roles/iam.serviceAccountTokenCreator", members=["user:a@example.com"])
    client.set_iam_policy(request={"resource": resource, "policy": first})

    second.bindings.add(role="roles/iam.serviceAccountUser", members=["user:b@example.com"])
    with pytest.raises(exceptions.Aborted, match="concurrent policy changes"):
        client.set_iam_policy(request={"resource": resource, "policy": second})


def test_a_role_that_does_not_apply_to_an_account_is_invalid(client, project) -> None:
    email = create(client, project)
    resource = f"projects/{project}/serviceAccounts/{email}"
    policy = client.get_iam_policy(request={"resource": resource})
    policy.bindings.add(role="roles/run.invoker", members=["user:a@example.com"])

    with pytest.raises(
        exceptions.InvalidArgument,
        match=r"Role roles/run\.invoker is not supported for this resource",
    ):
        client.set_iam_policy(request={"resource": resource, "policy": policy})


def test_a_member_naming_a_missing_account_is_invalid(client, project) -> None:
    email = create(client, project)
    resource = f"projects/{project}/serviceAccounts/{email}"
    policy = client.get_iam_policy(request={"resource": resource})
    ghost = f"ghost-account@{project}.iam.gserviceaccount.com"
    policy.bindings.add(role="roles/iam.serviceAccountUser", members=[f"serviceAccount:{ghost}"])

    with pytest.raises(exceptions.InvalidArgument, match=f"Service account {ghost} does not exist"):
        client.set_iam_policy(request={"resource": resource, "policy": policy})


def test_test_iam_permissions_answers_the_accounts_permissions(client, project) -> None:
    email = create(client, project)
    answer = client.test_iam_permissions(
        request={
            "resource": f"projects/-/serviceAccounts/{email}",
            "permissions": ["iam.serviceAccounts.actAs", "run.services.get"],
        }
    )
    assert list(answer.permissions) == ["iam.serviceAccounts.actAs"]
