"""Cloud Run updates in the sandbox as Cloud Run takes them: update masks, revision names
reused with another configuration, and reads whose template drifts from what was written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import run_v2
from google.protobuf.field_mask_pb2 import FieldMask

from tests.run_world import OP_TIMEOUT, short, unique
from tests.run_world import create as create_service
from tests.run_world import template as sample_template

REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def pinned(revision: str, percent: int, tag: str = "") -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=percent, tag=tag)


@pytest.fixture
def drift(gcp: Sandbox) -> Iterator[Sandbox]:
    gcp.faults.arm("template_drift")
    yield gcp
    gcp.faults.clear()


def _two_revisions(services: run_v2.ServicesClient, image: str) -> tuple[run_v2.Service, str, str]:
    first = create_service(services, unique("mask"), image)
    old = short(first.latest_ready_revision)
    new = f"{short(first.name)}-two"
    staged = run_v2.Service(first)
    staged.template = sample_template(image, revision=new, APP_COMMIT="def")
    staged.traffic = [pinned(old, 100), pinned(new, 0, "candidate")]
    return services.update_service(service=staged).result(timeout=OP_TIMEOUT), old, new


def test_a_traffic_mask_changes_traffic_only(services, revisions, image) -> None:
    staged, _, new = _two_revisions(services, image)
    # Only what the mask names is read from the body: no template at all here.
    body = run_v2.Service(name=staged.name, etag=staged.etag, traffic=[pinned(new, 100)])

    moved = services.update_service(
        request=run_v2.UpdateServiceRequest(service=body, update_mask=FieldMask(paths=["traffic"]))
    ).result(timeout=OP_TIMEOUT)

    assert [(t.revision, t.percent) for t in moved.traffic_statuses] == [(new, 100)]
    assert moved.template == staged.template and moved.labels == staged.labels
    assert len(list(revisions.list_revisions(parent=staged.name))) == 2


def test_an_unknown_mask_path_is_invalid(services, image) -> None:
    staged, _, _ = _two_revisions(services, image)
    body = run_v2.Service(name=staged.name)
    with pytest.raises(exceptions.InvalidArgument, match="Invalid field mask path 'trafic'"):
        services.update_service(
            request=run_v2.UpdateServiceRequest(
                service=body, update_mask=FieldMask(paths=["trafic"])
            )
        )


def test_a_revision_name_with_another_configuration_is_refused_whatever_the_mask(
    services, image
) -> None:
    staged, _, new = _two_revisions(services, image)
    changed = run_v2.Service(staged)
    changed.template.containers[0].env.append(run_v2.EnvVar(name="EXTRA", value="1"))
    message = f"Revision named '{new}' with different configuration already exists"
    with pytest.raises(exceptions.AlreadyExists, match=message):
        services.update_service(service=changed)
    # As google-cloud-python#14259 saw: a mask that leaves the template out does not help.
    with pytest.raises(exceptions.AlreadyExists, match=message):
        services.update_service(
            request=run_v2.UpdateServiceRequest(
                service=changed, update_mask=FieldMask(paths=["labels"])
            )
        )


def test_a_changed_template_without_a_name_makes_a_revision_with_a_generated_one(
    services, revisions, image
) -> None:
    staged, _, new = _two_revisions(services, image)
    changed = run_v2.Service(staged)
    changed.template.revision = ""
    changed.template.containers[0].env.append(run_v2.EnvVar(name="EXTRA", value="1"))
    updated = services.update_service(service=changed).result(timeout=OP_TIMEOUT)
    made = short(updated.latest_created_revision)
    assert made not in (new, "") and made.startswith(f"{short(staged.name)}-00003-")
    assert len(list(revisions.list_revisions(parent=staged.name))) == 3


def test_under_drift_a_read_template_sent_back_by_name_is_refused(
    drift: Sandbox, services, revisions, image
) -> None:
    staged, _, new = _two_revisions(services, image)
    read = services.get_service(name=staged.name)
    assert read.template.containers[0].resources.limits["cpu"] == "1"  # stored as 1000m
    assert read.template != staged.template

    moved = run_v2.Service(read)
    moved.traffic = [pinned(new, 100)]
    with pytest.raises(exceptions.AlreadyExists, match="with different configuration"):
        services.update_service(service=moved)
    # The traffic mask, without the template, goes through, and creates no revision.
    body = run_v2.Service(name=read.name, etag=read.etag, traffic=[pinned(new, 100)])
    done = services.update_service(
        request=run_v2.UpdateServiceRequest(service=body, update_mask=FieldMask(paths=["traffic"]))
    ).result(timeout=OP_TIMEOUT)
    assert [(t.revision, t.percent) for t in done.traffic_statuses] == [(new, 100)]
    assert len(list(revisions.list_revisions(parent=staged.name))) == 2
    drift.faults.clear()
    assert services.get_service(name=staged.name).template.containers[0].resources.limits[
        "cpu"
    ] == ("1000m")
