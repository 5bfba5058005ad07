"""IAM on secrets in the sandbox, through the real `secretmanager_v1` client."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import secretmanager_v1
from google.iam.v1 import iam_policy_pb2

from tests.conftest import GoogleClients

ACCESSOR = "roles/secretmanager.secretAccessor"
MEMBER = "serviceAccount:app@p.iam.gserviceaccount.com"


@pytest.fixture
def client(google_clients: GoogleClients) -> secretmanager_v1.SecretManagerServiceClient:
    return google_clients(secretmanager_v1.SecretManagerServiceClient)


@pytest.fixture
def secret(client, project: str) -> str:
    made = client.create_secret(
        parent=f"projects/{project}",
        secret_id="db-url",
        secret={"replication": {"automatic": {}}},
    )
    return str(made.name)


def test_a_new_secrets_policy_is_empty_and_a_grant_reads_back(client, secret) -> None:
    empty = client.get_iam_policy(request={"resource": secret})
    assert list(empty.bindings) == [] and empty.etag

    empty.bindings.add(role=ACCESSOR, members=[MEMBER])
    client.set_iam_policy(request={"resource": secret, "policy": empty})

    policy = client.get_iam_policy(request={"resource": secret})
    assert [(b.role, list(b.members)) for b in policy.bindings] == [(ACCESSOR, [MEMBER])]
    assert policy.etag != empty.etag


def test_a_stale_etag_is_aborted(client, secret) -> None:
    first = client.get_iam_policy(request={"resource": secret})
    first.bindings.add(role=ACCESSOR, members=[MEMBER])
    client.set_iam_policy(request={"resource": secret, "policy": first})

    with pytest.raises(exceptions.Aborted):
        client.set_iam_policy(request={"resource": secret, "policy": first})


def test_a_role_that_does_not_apply_to_a_secret_is_invalid(client, secret) -> None:
    policy = client.get_iam_policy(request={"resource": secret})
    policy.bindings.add(role="roles/run.invoker", members=[MEMBER])

    with pytest.raises(exceptions.InvalidArgument, match="not supported for this resource"):
        client.set_iam_policy(request={"resource": secret, "policy": policy})


def test_a_missing_secret_is_not_found_and_a_new_one_starts_empty(client, secret) -> None:
    with pytest.raises(exceptions.NotFound):
        client.get_iam_policy(request={"resource": secret + "-nope"})
    policy = client.get_iam_policy(request={"resource": secret})
    policy.bindings.add(role=ACCESSOR, members=[MEMBER])
    client.set_iam_policy(request={"resource": secret, "policy": policy})
    client.delete_secret(name=secret)
    project = secret.split("/")[1]
    client.create_secret(
        parent=f"projects/{project}", secret_id="db-url", secret={"replication": {"automatic": {}}}
    )

    assert list(client.get_iam_policy(request={"resource": secret}).bindings) == []


def test_test_iam_permissions_answers_those_of_a_secret(client, secret) -> None:
    answer = client.test_iam_permissions(
        request=iam_policy_pb2.TestIamPermissionsRequest(
            resource=secret,
            permissions=["secretmanager.versions.access", "run.routes.invoke"],
        )
    )
    assert list(answer.permissions) == ["secretmanager.versions.access"]
