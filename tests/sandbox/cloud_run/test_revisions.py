"""Cloud Run revisions in the sandbox: naming, running for real, failing as Cloud Run reports it."""

from __future__ import annotations

import re
import uuid

import pytest
from google.api_core import exceptions
from google.cloud import logging_v2, run_v2

from tests.conftest import PROJECT, REGION, GoogleClients
from tests.run_world import (
    OP_TIMEOUT,
    PARENT,
    State,
    invoker,
    served_revision,
    short,
    template,
    unique,
)
from tests.run_world import create as create_service

Reason = run_v2.Condition.CommonReason
RevisionReason = run_v2.Condition.RevisionReason
LoggingClient = logging_v2.services.logging_service_v2.LoggingServiceV2Client


@pytest.fixture
def logging_client(google_clients: GoogleClients) -> LoggingClient:
    return google_clients(LoggingClient)


def container_output(client: LoggingClient, revision_name: str) -> str:
    """What the revision's containers logged, oldest first, read as a user would."""
    _, project, _, location, _, service, _, revision = revision_name.split("/")
    entries = client.list_log_entries(
        resource_names=[f"projects/{project}"],
        filter=(
            f'resource.type="cloud_run_revision" AND resource.labels.location="{location}" '
            f'AND resource.labels.service_name="{service}" '
            f'AND resource.labels.revision_name="{revision}"'
        ),
    )
    return "\n".join(entry.text_payload for entry in entries)


def create(client: run_v2.ServicesClient, image: str) -> run_v2.Service:
    return create_service(client, unique("rev"), image)


def ready(revision: run_v2.Revision) -> run_v2.Condition:
    return next(c for c in revision.conditions if c.type_ == "Ready")


def test_a_template_change_creates_a_revision_named_by_generation(
    gcp, services, revisions, image
) -> None:
    first = create(services, image)
    changed = run_v2.Service(first)
    changed.template.containers[0].env.append(run_v2.EnvVar(name="FEATURE", value="on"))

    updated = services.update_service(service=changed).result(timeout=OP_TIMEOUT)

    service_id = short(first.name)
    new_id = short(updated.latest_ready_revision)
    assert re.fullmatch(rf"{service_id}-00002-[a-z0-9]{{3}}", new_id)
    assert (
        updated.generation == 2 and updated.latest_created_revision == updated.latest_ready_revision
    )
    assert served_revision(updated.uri, invoker(gcp, updated.uri)) == new_id
    listed = [short(r.name) for r in revisions.list_revisions(parent=first.name)]
    assert listed == [new_id, short(first.latest_ready_revision)]


def test_revision_fields_follow_the_template(services, revisions, image) -> None:
    service = create(services, image)

    revision = revisions.get_revision(name=service.latest_ready_revision)

    assert revision.service == service.name
    assert revision.containers[0].image == image
    assert ready(revision).state == State.CONDITION_SUCCEEDED
    assert {c.type_ for c in revision.conditions} == {
        "Ready",
        "ContainerHealthy",
        "ResourcesAvailable",
    }
    assert not revision.reconciling and revision.observed_generation == revision.generation
    assert revision.max_instance_request_concurrency == 80
    assert revision.timeout.total_seconds() == 300
    assert f"revision_name/{short(revision.name)}" in revision.log_uri
    assert revision.create_time and revision.etag


def test_get_of_an_unknown_revision_is_not_found(services, revisions, image) -> None:
    service = create(services, image)
    with pytest.raises(exceptions.NotFound, match="of kind 'REVISION'"):
        revisions.get_revision(name=f"{service.name}/revisions/nothing-here")


def test_a_crashing_revision_fails_the_update_and_keeps_traffic(
    gcp, services, revisions, logging_client, image
) -> None:
    first = create(services, image)
    broken = run_v2.Service(first)
    broken.template = template(image, revision=f"{short(first.name)}-broken")
    del broken.template.containers[0].env[0]  # MONGODB_URL

    operation = services.update_service(service=broken)
    with pytest.raises(exceptions.FailedPrecondition) as failure:
        operation.result(timeout=OP_TIMEOUT)

    assert "is not ready and cannot serve traffic" in failure.value.message
    assert "failed to start and listen on the port" in failure.value.message
    after = services.get_service(name=first.name)
    assert after.terminal_condition.state == State.CONDITION_FAILED
    assert "failed to start and listen on the port" in after.terminal_condition.message
    # As the proto's comment on `reconciling` says: a failed reconciliation leaves the
    # observed generation, traffic and latest ready revision at the last serving one.
    assert (after.generation, after.observed_generation) == (2, 1) and not after.reconciling
    assert list(after.traffic_statuses) == list(first.traffic_statuses)
    assert after.latest_created_revision.endswith("-broken")
    assert after.latest_ready_revision == first.latest_ready_revision
    assert served_revision(after.uri, invoker(gcp, after.uri)) == short(first.latest_ready_revision)
    revision = revisions.get_revision(name=after.latest_created_revision)
    assert ready(revision).state == State.CONDITION_FAILED
    assert ready(revision).revision_reason == RevisionReason.HEALTH_CHECK_CONTAINER_ERROR
    # As on Cloud Run, the condition points at the logs; the container's words are there.
    message = ready(revision).message
    assert "Field required" not in message
    assert message.endswith(
        f"\n\nLogs URL: {revision.log_uri}\nFor more troubleshooting guidance, see "
        "https://cloud.google.com/run/docs/troubleshooting#container-failed-to-start"
    )
    assert "&advancedFilter=resource.type%3D%22cloud_run_revision%22%0A" in revision.log_uri
    output = container_output(logging_client, revision.name)
    assert "mongodb_url\n  Field required" in output
    assert output.endswith("Container called exit(1).")


def test_the_revision_crash_fault_fails_the_next_revision(
    gcp, services, revisions, logging_client, image
) -> None:
    gcp.faults.arm("revision_crash")
    service_id = unique("rev")

    operation = services.create_service(
        parent=PARENT, service_id=service_id, service=run_v2.Service(template=template(image))
    )
    with pytest.raises(exceptions.FailedPrecondition, match="failed to start and listen"):
        operation.result(timeout=OP_TIMEOUT)

    service = services.get_service(name=f"{PARENT}/services/{service_id}")
    assert service.terminal_condition.state == State.CONDITION_FAILED
    assert not service.latest_ready_revision
    revision = revisions.get_revision(name=service.latest_created_revision)
    assert ready(revision).state == State.CONDITION_FAILED
    assert "sandbox fault: container crashed at start-up" in container_output(
        logging_client, revision.name
    )


def test_an_unknown_image_fails_the_revision_as_container_missing(services, revisions) -> None:
    missing = f"{REGION}-docker.pkg.dev/{PROJECT}/apps/ghost:v1"
    operation = services.create_service(
        parent=PARENT,
        service_id=unique("rev"),
        service=run_v2.Service(template=template(missing)),
    )
    with pytest.raises(
        exceptions.FailedPrecondition, match=re.escape(f"Image '{missing}' not found.")
    ):
        operation.result(timeout=OP_TIMEOUT)
    revision = revisions.get_revision(name=operation.metadata.latest_created_revision)
    assert ready(revision).reason == Reason.CONTAINER_MISSING


def test_secret_env_values_are_resolved_and_missing_ones_fail(gcp, services, image) -> None:
    project = f"rev-{uuid.uuid4().hex[:6]}"
    gcp.secrets.create_secret_with_value(project, "mongo-url", b"mongodb://db.invalid/app")
    good = run_v2.RevisionTemplate(
        containers=[
            run_v2.Container(
                image=image,
                env=[
                    run_v2.EnvVar(
                        name="MONGODB_URL",
                        value_source={"secret_key_ref": {"secret": "mongo-url", "version": "1"}},
                    ),
                    run_v2.EnvVar(
                        name="SECRET_KEY",
                        value_source={
                            "secret_key_ref": {"secret": f"projects/{project}/secrets/nope"}
                        },
                    ),
                ],
            )
        ]
    )
    parent = f"projects/{project}/locations/{REGION}"
    operation = services.create_service(
        parent=parent, service_id="secrets", service=run_v2.Service(template=good)
    )
    with pytest.raises(
        exceptions.FailedPrecondition,
        match=f"Secret projects/{project}/secrets/nope/versions/latest was not found",
    ):
        operation.result(timeout=OP_TIMEOUT)

    gcp.secrets.create_secret_with_value(project, "nope", b"s3cret")
    retried = run_v2.Service(services.get_service(name=f"{parent}/services/secrets"))
    retried.template.labels["retry"] = "1"
    service = services.update_service(service=retried).result(timeout=OP_TIMEOUT)
    assert service.terminal_condition.state == State.CONDITION_SUCCEEDED


def test_reusing_a_revision_name_with_another_template_is_rejected(services, image) -> None:
    first = create(services, image)
    named = run_v2.Service(first)
    named.template = template(image, revision=f"{short(first.name)}-v2")
    second = services.update_service(service=named).result(timeout=OP_TIMEOUT)
    changed = run_v2.Service(second)
    changed.template.containers[0].env.append(run_v2.EnvVar(name="FEATURE", value="on"))

    with pytest.raises(exceptions.AlreadyExists) as conflict:
        services.update_service(service=changed)

    assert conflict.value.message == (
        f"Revision named '{short(first.name)}-v2' with different configuration already exists."
    )


def test_reusing_a_revision_name_with_the_same_template_creates_nothing(
    services, revisions, image
) -> None:
    first = create(services, image)
    service = run_v2.Service(first)
    service.labels["touched"] = "yes"

    updated = services.update_service(service=service).result(timeout=OP_TIMEOUT)

    assert updated.generation == 2
    assert updated.latest_created_revision == first.latest_created_revision
    assert len(list(revisions.list_revisions(parent=first.name))) == 1


def test_a_revision_name_must_start_with_the_service_name(services, image) -> None:
    first = create(services, image)
    named = run_v2.Service(first)
    named.template = template(image, revision="other-v2")
    with pytest.raises(
        exceptions.InvalidArgument, match=f'must have prefix "{short(first.name)}-"'
    ):
        services.update_service(service=named)


def test_only_retired_revisions_can_be_deleted(gcp, services, revisions, image) -> None:
    first = create(services, image)
    old_id = short(first.latest_ready_revision)
    changed = run_v2.Service(first)
    changed.template.containers[0].env.append(run_v2.EnvVar(name="FEATURE", value="on"))
    second = services.update_service(service=changed).result(timeout=OP_TIMEOUT)

    with pytest.raises(exceptions.FailedPrecondition, match="Only retired revisions"):
        revisions.delete_revision(name=second.latest_ready_revision)
    deleted = revisions.delete_revision(name=first.latest_ready_revision).result(timeout=OP_TIMEOUT)

    assert short(deleted.name) == old_id
    assert gcp.run.processes.get(old_id) is None
    with pytest.raises(exceptions.NotFound):
        revisions.get_revision(name=first.latest_ready_revision)
