"""Cloud Run Admin v2 services in the sandbox, through the real `run_v2.ServicesClient`."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import pytest
from google.api_core import exceptions
from google.cloud import run_v2

from tests.conftest import REGION
from tests.processes import port_open
from tests.run_world import LATEST, OP_TIMEOUT, PARENT, State, create, health, invoker, template
from tests.run_world import unique as unique_id


def unique() -> str:
    return unique_id("svc")


def test_created_service_is_ready_and_its_uri_answers(gcp, services, image) -> None:
    service_id = unique()

    service = create(services, service_id, image)

    revision_id = service.latest_ready_revision.rsplit("/", 1)[-1]
    assert service.name == f"{PARENT}/services/{service_id}"
    assert re.fullmatch(rf"{service_id}-00001-[a-z0-9]{{3}}", revision_id)
    assert service.latest_created_revision == service.latest_ready_revision
    assert service.generation == 1 and service.observed_generation == 1
    assert not service.reconciling
    assert service.terminal_condition.type_ == "Ready"
    assert service.terminal_condition.state == State.CONDITION_SUCCEEDED
    assert {c.type_: c.state for c in service.conditions} == {
        "RoutesReady": State.CONDITION_SUCCEEDED,
        "ConfigurationsReady": State.CONDITION_SUCCEEDED,
    }
    assert [(t.type_, t.percent) for t in service.traffic_statuses] == [(LATEST, 100)]
    assert service.uid and service.etag and service.creator and service.last_modifier
    assert service.create_time and service.update_time
    assert service.urls == [service.uri]
    body = health(service.uri, invoker(gcp, service.uri))
    assert body["version"] == {"commit": "abc", "revision": revision_id}
    assert body["service"] == service_id


def test_get_of_an_unknown_service_is_not_found(services) -> None:
    with pytest.raises(exceptions.NotFound, match="Resource 'nope' of kind 'SERVICE'"):
        services.get_service(name=f"{PARENT}/services/nope")


@pytest.mark.parametrize("service_id", ["Upper", "9lives", "ends-", "a" * 50, "under_score"])
def test_invalid_service_ids_are_rejected(services, service_id) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="Maximum length is 49 characters"):
        services.create_service(
            parent=PARENT,
            service_id=service_id,
            service=run_v2.Service(template=template("any/image")),
        )


def test_a_49_character_service_id_is_accepted(services) -> None:
    service_id = "a" + uuid.uuid4().hex[:8] + "b" * 40
    operation = services.create_service(
        request=run_v2.CreateServiceRequest(
            parent=PARENT,
            service_id=service_id,
            service=run_v2.Service(template=template("any/image")),
            validate_only=True,
        )
    )
    assert operation.result(timeout=OP_TIMEOUT).name.endswith(f"/services/{service_id}")


def test_a_container_without_image_is_rejected_naming_the_field(services) -> None:
    service = run_v2.Service(template=run_v2.RevisionTemplate(containers=[run_v2.Container()]))
    with pytest.raises(exceptions.InvalidArgument, match=r"template\.containers\[0\]\.image"):
        services.create_service(parent=PARENT, service_id=unique(), service=service)


def test_creating_an_existing_service_is_already_exists(services, image) -> None:
    service_id = unique()
    create(services, service_id, image)
    with pytest.raises(exceptions.AlreadyExists, match=f"'{service_id}' already exists"):
        services.create_service(
            parent=PARENT, service_id=service_id, service=run_v2.Service(template=template(image))
        )


def test_validate_only_create_stores_nothing(services, image) -> None:
    service_id = unique()
    operation = services.create_service(
        request=run_v2.CreateServiceRequest(
            parent=PARENT,
            service_id=service_id,
            service=run_v2.Service(template=template(image)),
            validate_only=True,
        )
    )
    assert operation.result(timeout=OP_TIMEOUT).template.containers[0].image == image
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=f"{PARENT}/services/{service_id}")


def test_validate_only_update_changes_nothing(services, image) -> None:
    before = create(services, unique(), image)
    changed = run_v2.Service(before)
    changed.template.containers[0].env.append(run_v2.EnvVar(name="EXTRA", value="1"))

    request = run_v2.UpdateServiceRequest(service=changed, validate_only=True)
    services.update_service(request=request).result(timeout=OP_TIMEOUT)

    after = services.get_service(name=before.name)
    assert after.generation == before.generation
    assert after.etag == before.etag
    assert after.latest_created_revision == before.latest_created_revision


def test_update_of_a_missing_service_is_not_found(services, image) -> None:
    service = run_v2.Service(name=f"{PARENT}/services/{unique()}", template=template(image))
    with pytest.raises(exceptions.NotFound, match="of kind 'SERVICE'"):
        services.update_service(service=service)


def test_update_with_allow_missing_creates_the_service(services, image) -> None:
    name = f"{PARENT}/services/{unique()}"
    service = run_v2.Service(name=name, template=template(image))

    request = run_v2.UpdateServiceRequest(service=service, allow_missing=True)
    created = services.update_service(request=request).result(timeout=OP_TIMEOUT)

    assert created.name == name and created.generation == 1
    assert created.terminal_condition.state == State.CONDITION_SUCCEEDED


def test_update_with_a_stale_etag_is_aborted(services, image) -> None:
    first = create(services, unique(), image)
    moved = run_v2.Service(first)
    moved.labels["team"] = "web"
    services.update_service(service=moved).result(timeout=OP_TIMEOUT)

    stale = run_v2.Service(first)
    stale.labels["team"] = "ops"
    with pytest.raises(exceptions.Aborted, match="etag"):
        services.update_service(service=stale)
    assert services.get_service(name=first.name).labels["team"] == "web"


def test_generation_counts_spec_changes_only(services, image) -> None:
    first = create(services, unique(), image)
    same = services.update_service(service=first).result(timeout=OP_TIMEOUT)
    labelled = run_v2.Service(same)
    labelled.labels["team"] = "web"

    updated = services.update_service(service=labelled).result(timeout=OP_TIMEOUT)

    assert same.generation == 1
    assert updated.generation == 2 and updated.observed_generation == 2
    assert updated.etag != first.etag
    assert updated.latest_created_revision == first.latest_created_revision


def test_update_operation_metadata_is_the_reconciling_service(services, image) -> None:
    first = create(services, unique(), image)
    changed = run_v2.Service(first)
    changed.template.containers[0].env.append(run_v2.EnvVar(name="EXTRA", value="1"))

    operation = services.update_service(service=changed)

    assert operation.metadata.generation == 2
    assert operation.metadata.reconciling
    assert operation.metadata.terminal_condition.state == State.CONDITION_RECONCILING
    assert operation.result(timeout=OP_TIMEOUT).observed_generation == 2


def test_list_services_returns_those_of_the_location(services, image) -> None:
    project = f"list-{uuid.uuid4().hex[:6]}"
    parent = f"projects/{project}/locations/{REGION}"
    for service_id in ("alpha", "beta"):
        services.create_service(
            parent=parent,
            service_id=service_id,
            service=run_v2.Service(template=template(image)),
        ).result(timeout=OP_TIMEOUT)

    listed = [s.name.rsplit("/", 1)[-1] for s in services.list_services(parent=parent)]

    assert listed == ["alpha", "beta"]


def test_delete_service_stops_its_processes_and_routes(gcp, services, image) -> None:
    service = create(services, unique(), image)
    running = gcp.run.processes.get(service.latest_ready_revision.rsplit("/", 1)[-1])
    assert running is not None and health(running.url)["status"] == "healthy"

    deleted = services.delete_service(name=service.name).result(timeout=OP_TIMEOUT)

    assert deleted.name == service.name
    with pytest.raises(exceptions.NotFound):
        services.get_service(name=service.name)
    assert not port_open(running.port)
    assert not port_open(urlsplit(service.uri).port or 0)
