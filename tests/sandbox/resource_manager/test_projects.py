"""Resource Manager v3 projects and their IAM policy in the sandbox, through the real
`resourcemanager_v3` client (with Service Usage and IAM, which it checks members against)."""

from __future__ import annotations

import pytest
from deployer_sandbox.resource_manager.api import PROJECT_OWNER
from deployer_sandbox.resource_manager.projects import number_of
from google.api_core import exceptions
from google.cloud import iam_admin_v1, resourcemanager_v3, service_usage_v1

from tests.conftest import GoogleClients


@pytest.fixture
def client(google_clients: GoogleClients) -> resourcemanager_v3.ProjectsClient:
    return google_clients(resourcemanager_v3.ProjectsClient)


@pytest.fixture
def accounts(google_clients: GoogleClients) -> iam_admin_v1.IAMClient:
    return google_clients(iam_admin_v1.IAMClient)


@pytest.fixture
def service_usage(google_clients: GoogleClients) -> service_usage_v1.ServiceUsageClient:
    return google_clients(service_usage_v1.ServiceUsageClient)


def bindings(policy) -> dict[str, list[str]]:
    return {b.role: list(b.members) for b in policy.bindings}


def grant(client, project: str, role: str, member: str):
    policy = client.get_iam_policy(resource=f"projects/{project}")
    policy.bindings.add(role=role, members=[member])
    return client.set_iam_policy(request={"resource": f"projects/{project}", "policy": policy})


def test_get_project_by_id_and_by_number(client, project) -> None:
    by_id = client.get_project(name=f"projects/{project}")
    by_number = client.get_project(name=by_id.name)

    assert by_id.name == f"projects/{number_of(project)}"
    assert by_id.project_id == by_number.project_id == project
    assert by_id.state == resourcemanager_v3.Project.State.ACTIVE


def test_a_malformed_or_unknown_project_is_permission_denied(client) -> None:
    with pytest.raises(exceptions.PermissionDenied, match="or it may not exist"):
        client.get_project(name="projects/Not_A_Project")
    with pytest.raises(exceptions.PermissionDenied, match="or it may not exist"):
        client.get_project(name="projects/999999999999")


def test_a_new_projects_policy_names_its_owner(client, project) -> None:
    policy = client.get_iam_policy(resource=f"projects/{project}")

    assert bindings(policy) == {"roles/owner": [PROJECT_OWNER]}
    assert policy.etag


def test_a_grant_to_an_existing_account_is_kept(client, accounts, project) -> None:
    email = accounts.create_service_account(
        name=f"projects/{project}", account_id="deployer", service_account={}
    ).email

    written = grant(client, project, "roles/run.developer", f"serviceAccount:{email}")

    read = client.get_iam_policy(resource=f"projects/{project}")
    assert bindings(read) == {
        "roles/owner": [PROJECT_OWNER],
        "roles/run.developer": [f"serviceAccount:{email}"],
    }
    assert read.etag == written.etag


def test_a_grant_to_a_missing_account_is_invalid_and_changes_nothing(client, project) -> None:
    ghost = f"deployer@{project}.iam.gserviceaccount.com"
    before = client.get_iam_policy(resource=f"projects/{project}")

    with pytest.raises(exceptions.InvalidArgument, match=f"Service account {ghost} does not exist"):
        grant(client, project, "roles/run.developer", f"serviceAccount:{ghost}")

    assert client.get_iam_policy(resource=f"projects/{project}").etag == before.etag


def test_cloud_builds_account_exists_once_cloud_build_is_enabled(
    client, service_usage, project
) -> None:
    builder = f"serviceAccount:{number_of(project)}@cloudbuild.gserviceaccount.com"
    with pytest.raises(exceptions.InvalidArgument, match="does not exist"):
        grant(client, project, "roles/secretmanager.secretAccessor", builder)

    service_usage.enable_service(
        request={"name": f"projects/{project}/services/cloudbuild.googleapis.com"}
    ).result(timeout=10)
    grant(client, project, "roles/secretmanager.secretAccessor", builder)

    read = client.get_iam_policy(resource=f"projects/{project}")
    assert bindings(read)["roles/secretmanager.secretAccessor"] == [builder]


def test_a_stale_etag_is_aborted(client, project) -> None:
    stale = client.get_iam_policy(resource=f"projects/{project}")
    grant(client, project, "roles/viewer", "user:a@example.com")

    stale.bindings.add(role="roles/editor", members=["user:b@example.com"])
    with pytest.raises(exceptions.Aborted):
        client.set_iam_policy(request={"resource": f"projects/{project}", "policy": stale})
    assert "roles/editor" not in bindings(client.get_iam_policy(resource=f"projects/{project}"))


def test_a_custom_role_is_invalid(client, project) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="not supported for this resource"):
        grant(client, project, f"projects/{project}/roles/deployer", "user:a@example.com")


def test_test_iam_permissions_answers_what_was_asked(client, project) -> None:
    answer = client.test_iam_permissions(
        resource=f"projects/{project}",
        permissions=["run.services.create", "iam.serviceAccounts.actAs"],
    )
    assert list(answer.permissions) == ["run.services.create", "iam.serviceAccounts.actAs"]
    with pytest.raises(exceptions.InvalidArgument, match="wildcards"):
        client.test_iam_permissions(resource=f"projects/{project}", permissions=["run.*"])


def test_policies_of_projects_are_apart(client, project) -> None:
    grant(client, project, "roles/viewer", "user:a@example.com")

    other = client.get_iam_policy(resource=f"projects/{project}-b")
    assert bindings(other) == {"roles/owner": [PROJECT_OWNER]}
