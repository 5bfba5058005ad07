"""Cloud Run traffic in the sandbox: LATEST, pinned revisions, tags, the no-traffic candidate flow."""

from __future__ import annotations

import httpx
import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import run_v2

from tests.run_world import LATEST, OP_TIMEOUT, State, invoker, served_revision, short, unique
from tests.run_world import create as create_service
from tests.run_world import template as sample_template

REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def template(image: str, revision: str = "", commit: str = "abc") -> run_v2.RevisionTemplate:
    return sample_template(image, revision, APP_COMMIT=commit)


def create(client: run_v2.ServicesClient, image: str) -> run_v2.Service:
    return create_service(client, unique("tr"), image)


def pinned(revision: str, percent: int, tag: str = "") -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=percent, tag=tag)


def served(sandbox: Sandbox, url: str, service: run_v2.Service) -> str:
    """The revision answering at `url` (the service's URL or a tag's), called with an ID token
    for the service (its main URL is the audience, whichever URL is called)."""
    return served_revision(url, invoker(sandbox, service.uri))


def test_no_traffic_candidate_then_promote_then_roll_back(gcp, services, revisions, image) -> None:
    first = create(services, image)
    current = short(first.latest_ready_revision)
    candidate = f"{short(first.name)}-cand-1"
    deploy = run_v2.Service(first)
    deploy.template = template(image, revision=candidate, commit="def")
    deploy.traffic = [pinned(current, 100), pinned(candidate, 0, tag="cand")]

    staged = services.update_service(service=deploy).result(timeout=OP_TIMEOUT)

    tag_uri = next(s.uri for s in staged.traffic_statuses if s.tag == "cand")
    assert served(gcp, tag_uri, staged) == candidate
    assert served(gcp, staged.uri, staged) == current
    assert staged.latest_ready_revision.endswith(candidate)
    assert [(s.revision, s.percent, s.tag) for s in staged.traffic_statuses] == [
        (current, 100, ""),
        (candidate, 0, "cand"),
    ]

    promote = run_v2.Service(staged)
    promote.traffic = [pinned(candidate, 100)]
    promoted = services.update_service(service=promote).result(timeout=OP_TIMEOUT)
    assert served(gcp, promoted.uri, promoted) == candidate
    assert (
        httpx.get(f"{tag_uri}/health", headers=invoker(gcp, first.uri), timeout=10).status_code
        == 404
    )

    rollback = run_v2.Service(promoted)
    rollback.traffic = [pinned(current, 100)]
    rolled_back = services.update_service(service=rollback).result(timeout=OP_TIMEOUT)
    assert served(gcp, rolled_back.uri, rolled_back) == current
    assert rolled_back.generation == 4 and rolled_back.observed_generation == 4
    assert len(list(revisions.list_revisions(parent=first.name))) == 2


def test_latest_follows_the_newest_ready_revision(gcp, services, image) -> None:
    first = create(services, image)
    changed = run_v2.Service(first)
    changed.template = template(image, commit="new")

    updated = services.update_service(service=changed).result(timeout=OP_TIMEOUT)

    assert updated.traffic[0].type_ == LATEST
    assert (
        served(gcp, updated.uri, updated)
        == short(updated.latest_ready_revision)
        != short(first.latest_ready_revision)
    )


def test_traffic_only_changes_create_no_revision(gcp, services, revisions, image) -> None:
    first = create(services, image)
    pin = run_v2.Service(first)
    pin.traffic = [pinned(short(first.latest_ready_revision), 100, tag="stable")]

    updated = services.update_service(service=pin).result(timeout=OP_TIMEOUT)

    assert updated.generation == 2
    assert updated.latest_created_revision == first.latest_created_revision
    assert len(list(revisions.list_revisions(parent=first.name))) == 1
    assert served(gcp, updated.traffic_statuses[0].uri, updated) == short(
        first.latest_ready_revision
    )


@pytest.mark.parametrize(("percents", "total"), [((60, 30), 90), ((70, 40), 110)])
def test_percents_must_sum_to_100(services, image, percents, total) -> None:
    first = create(services, image)
    split = run_v2.Service(first)
    split.traffic = [
        run_v2.TrafficTarget(type_=LATEST, percent=percents[0]),
        pinned(short(first.latest_ready_revision), percents[1]),
    ]
    with pytest.raises(
        exceptions.InvalidArgument, match=f"Traffic targets sum to {total}, want 100"
    ):
        services.update_service(service=split)
    assert services.get_service(name=first.name).generation == 1


def test_tags_must_be_unique(services, image) -> None:
    first = create(services, image)
    tagged = run_v2.Service(first)
    revision = short(first.latest_ready_revision)
    tagged.traffic = [pinned(revision, 100, tag="blue"), pinned(revision, 0, tag="blue")]
    with pytest.raises(exceptions.InvalidArgument, match='Multiple definitions for "blue"'):
        services.update_service(service=tagged)


def test_a_tag_too_long_for_the_service_name_is_rejected(services, image) -> None:
    first = create(services, image)
    tagged = run_v2.Service(first)
    tagged.traffic = [pinned(short(first.latest_ready_revision), 100, tag="t" * 40)]
    with pytest.raises(exceptions.InvalidArgument, match="cannot exceed 46 characters"):
        services.update_service(service=tagged)


def test_traffic_to_an_unknown_revision_fails_and_keeps_routes(gcp, services, image) -> None:
    first = create(services, image)
    ghost = run_v2.Service(first)
    ghost.traffic = [pinned(f"{short(first.name)}-ghost", 100)]

    operation = services.update_service(service=ghost)
    with pytest.raises(exceptions.FailedPrecondition, match="does not exist or is deleted"):
        operation.result(timeout=OP_TIMEOUT)

    after = services.get_service(name=first.name)
    assert after.terminal_condition.state == State.CONDITION_FAILED
    assert [(s.type_, s.percent) for s in after.traffic_statuses] == [(LATEST, 100)]
    assert served(gcp, after.uri, after) == short(first.latest_ready_revision)


def test_traffic_to_a_failed_revision_fails_the_operation(gcp, services, image) -> None:
    first = create(services, image)
    current = short(first.latest_ready_revision)
    broken_id = f"{short(first.name)}-broken"
    broken = run_v2.Service(first)
    broken.template = template(image, revision=broken_id)
    del broken.template.containers[0].env[0]
    broken.traffic = [pinned(current, 100), pinned(broken_id, 0, tag="cand")]
    with pytest.raises(exceptions.FailedPrecondition):
        services.update_service(service=broken).result(timeout=OP_TIMEOUT)

    promote = run_v2.Service(services.get_service(name=first.name))
    promote.traffic = [pinned(broken_id, 100)]
    with pytest.raises(exceptions.FailedPrecondition, match=f"Revision '{broken_id}' is not ready"):
        services.update_service(service=promote).result(timeout=OP_TIMEOUT)
    assert served(gcp, first.uri, first) == current
