"""Service Usage v1 in the sandbox, through the real `service_usage_v1` client."""

from __future__ import annotations

import pytest
from deployer_sandbox.resource_manager.projects import number_of
from google.api_core import exceptions
from google.cloud import service_usage_v1

from tests.conftest import GoogleClients

State = service_usage_v1.State


@pytest.fixture
def client(google_clients: GoogleClients) -> service_usage_v1.ServiceUsageClient:
    return google_clients(service_usage_v1.ServiceUsageClient)


def enabled(client: service_usage_v1.ServiceUsageClient, project: str) -> set[str]:
    pager = client.list_services(
        request={"parent": f"projects/{project}", "filter": "state:ENABLED"}
    )
    return {service.config.name for service in pager}


def test_a_new_project_has_only_googles_default_services(client, project) -> None:
    services = enabled(client, project)

    assert {"logging.googleapis.com", "monitoring.googleapis.com"} <= services
    assert "serviceusage.googleapis.com" in services
    assert "run.googleapis.com" not in services
    assert "cloudresourcemanager.googleapis.com" not in services
    run = client.get_service(request={"name": f"projects/{project}/services/run.googleapis.com"})
    assert run.state == State.DISABLED


def test_enable_waits_on_an_operation_and_answers_with_the_number(client, project) -> None:
    operation = client.enable_service(
        request={"name": f"projects/{project}/services/run.googleapis.com"}
    )
    result = operation.result(timeout=10)

    number = number_of(project)
    assert operation.operation.name.startswith(f"operations/acat.p2-{number}-")
    assert result.service.name == f"projects/{number}/services/run.googleapis.com"
    assert result.service.parent == f"projects/{number}"
    assert result.service.state == State.ENABLED
    assert "run.googleapis.com" in enabled(client, project)
    polled = client.get_operation(request={"name": operation.operation.name})
    assert polled.done
    # Named by its number, the project answers the same.
    by_number = client.get_service(
        request={"name": f"projects/{number}/services/run.googleapis.com"}
    )
    assert by_number.state == State.ENABLED


def test_enabling_again_is_googles_no_op_operation(client, project) -> None:
    name = f"projects/{project}/services/secretmanager.googleapis.com"
    client.enable_service(request={"name": name}).result(timeout=10)

    again = client.enable_service(request={"name": name})

    assert again.operation.name == "operations/noop.DONE_OPERATION"
    assert again.result(timeout=10).service.state == State.ENABLED


def test_disable_turns_a_service_off(client, project) -> None:
    name = f"projects/{project}/services/cloudbuild.googleapis.com"
    client.enable_service(request={"name": name}).result(timeout=10)

    result = client.disable_service(request={"name": name}).result(timeout=10)

    assert result.service.state == State.DISABLED
    assert client.get_service(request={"name": name}).state == State.DISABLED
    assert "cloudbuild.googleapis.com" not in enabled(client, project)


def test_batch_enable_turns_on_every_service_named(client, project) -> None:
    wanted = ["run.googleapis.com", "cloudbuild.googleapis.com", "iam.googleapis.com"]

    result = client.batch_enable_services(
        request={"parent": f"projects/{project}", "service_ids": wanted}
    ).result(timeout=10)

    assert sorted(s.config.name for s in result.services) == sorted(wanted)
    assert all(s.state == State.ENABLED for s in result.services)
    assert set(wanted) <= enabled(client, project)


def test_an_unknown_service_is_permission_denied(client, project) -> None:
    with pytest.raises(exceptions.PermissionDenied, match="Not found or permission denied"):
        client.enable_service(
            request={"name": f"projects/{project}/services/nosuch.googleapis.com"}
        )
    with pytest.raises(exceptions.PermissionDenied, match=r"nosuch\.googleapis\.com"):
        client.get_service(request={"name": f"projects/{project}/services/nosuch.googleapis.com"})


def test_a_batch_with_an_unknown_service_changes_nothing(client, project) -> None:
    with pytest.raises(exceptions.PermissionDenied, match=r"nosuch\.googleapis\.com"):
        client.batch_enable_services(
            request={
                "parent": f"projects/{project}",
                "service_ids": ["run.googleapis.com", "nosuch.googleapis.com"],
            }
        )
    assert "run.googleapis.com" not in enabled(client, project)


def test_a_batch_of_more_than_twenty_is_invalid(client, project) -> None:
    many = [f"s{i}.googleapis.com" for i in range(21)]
    with pytest.raises(exceptions.InvalidArgument, match="at most 20"):
        client.batch_enable_services(request={"parent": f"projects/{project}", "service_ids": many})


def test_list_filters_on_state_only(client, project) -> None:
    disabled = {
        s.config.name
        for s in client.list_services(
            request={"parent": f"projects/{project}", "filter": "state:DISABLED"}
        )
    }
    assert "run.googleapis.com" in disabled
    assert "logging.googleapis.com" not in disabled
    with pytest.raises(exceptions.InvalidArgument, match="state:ENABLED"):
        list(client.list_services(request={"parent": f"projects/{project}", "filter": "name:x"}))


def test_list_pages(client, project) -> None:
    pager = client.list_services(request={"parent": f"projects/{project}", "page_size": 5})
    pages = [len(page.services) for page in pager.pages]

    assert pages[0] == 5
    assert len(pages) > 1
    assert sum(pages) == len(list(client.list_services(request={"parent": f"projects/{project}"})))


def test_projects_are_apart(client, project) -> None:
    other = f"{project}-b"
    client.enable_service(
        request={"name": f"projects/{project}/services/run.googleapis.com"}
    ).result(10)

    assert "run.googleapis.com" not in enabled(client, other)


def test_a_malformed_project_is_permission_denied(client) -> None:
    with pytest.raises(exceptions.PermissionDenied, match="not found or permission denied"):
        client.get_service(request={"name": "projects/NO/services/run.googleapis.com"})
