"""Deploys that succeed, end to end: Cloud Build, Cloud Run and Secret Manager in the sandbox."""

from __future__ import annotations

import re

import pytest
from google.api_core import exceptions
from google.cloud import run_v2, secretmanager_v1

from deployer.pipeline.events import DeployFinished, StageFinished, StageProgressed, StageStarted
from deployer.pipeline.record import DEPLOY_STAGES, Outcome, Stage, State
from tests.engine_world import ENVIRONMENT, Recorder, World, empty_world_fixture, git, world_fixture  # noqa: F401

DIGEST = re.compile(
    r"^europe-west1-docker\.pkg\.dev/[a-z0-9-]+/deployer/backend@sha256:[0-9a-f]{64}$"
)


def assert_stage_order(recorder: Recorder, stages: tuple[Stage, ...]) -> None:
    """Each stage starts, may progress, then finishes, before the next one starts; then the end."""
    events = recorder.events
    assert isinstance(events[-1], DeployFinished)
    current: Stage | None = None
    order: list[Stage] = []
    for event in events[:-1]:
        if isinstance(event, StageStarted):
            assert current is None, f"{event.stage} started inside {current}"
            current = event.stage
            order.append(event.stage)
        elif isinstance(event, StageProgressed):
            assert event.stage == current
        else:
            assert isinstance(event, StageFinished)
            assert event.result.stage == current
            assert isinstance(event.result.duration, float) and event.result.duration >= 0
            current = None
    assert current is None
    assert tuple(order) == stages


def env_of(revision: run_v2.Revision) -> dict[str, run_v2.EnvVar]:
    return {var.name: var for var in revision.containers[0].env}


def test_a_new_commit_ends_with_all_traffic_on_its_revision(world: World) -> None:
    old = world.first.candidate_revision
    commit = world.commit("second")

    record, events = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    new = record.candidate_revision
    assert new and new != old
    assert world.serving() == [(new, 100)]
    assert world.revision_names() == {old, new}
    # The revision as Cloud Run holds it: image by digest, secrets pinned to numbers.
    revision = world.revision(new)
    assert revision.containers[0].image == record.image
    env = env_of(revision)
    assert env["LOG_LEVEL"].value == "info"
    for name, secret in (("MONGODB_URL", "mongodb-url"), ("SECRET_KEY", "secret-key")):
        ref = env[name].value_source.secret_key_ref
        assert (ref.secret, ref.version) == (secret, "1")
        assert env[name].value == ""
    assert revision.labels["deployer-commit"] == commit
    assert revision.labels["deployer-deploy"] == record.id
    # What the service URL answers now.
    health = world.health()
    assert health["status"] == "healthy"
    assert health["version"] == {"commit": commit, "revision": new}
    # The story, stage by stage.
    assert_stage_order(events, DEPLOY_STAGES)
    assert all(f.result.outcome == Outcome.SUCCEEDED for f in events.stages_finished())
    finished = events.events[-1]
    assert isinstance(finished, DeployFinished) and finished.record.state == State.SUCCEEDED
    # What the store remembers.
    saved = world.store().get(record.id)
    assert saved is not None and saved.state == State.SUCCEEDED
    assert saved.commit == commit
    assert saved.build_id and saved.build_id == world.build_ids()[0]
    assert DIGEST.match(saved.image or ""), saved.image
    assert saved.candidate_revision == new and saved.previous_revision == old
    assert [s.stage for s in saved.stages] == list(DEPLOY_STAGES)
    assert saved.build_log_url and saved.build_id in saved.build_log_url
    text = events.text.getvalue()
    assert f"deploy {record.id} of {ENVIRONMENT} succeeded" in text
    assert "@sha256:" in text


def test_a_tag_deploys_the_commit_it_points_at_not_head(world: World) -> None:
    tagged = world.commit("release")
    git(world.repo, "tag", "-a", "v1.4.2", "-m", "v1.4.2")
    world.commit("after the release")

    record, _ = world.deploy("v1.4.2")

    assert record.state == State.SUCCEEDED, record.error
    assert record.commit == tagged
    assert world.health()["version"]["commit"] == tagged
    assert world.serving() == [(record.candidate_revision, 100)]


def test_latest_secret_is_pinned_to_the_newest_version_at_deploy_time(world: World) -> None:
    rotated = "rotated-" + world.secret_values["secret-key"][::-1]
    world.secret_values["secret-key-2"] = rotated
    world.secret_manager.add_secret_version(
        parent=f"projects/{world.project}/secrets/secret-key",
        payload=secretmanager_v1.SecretPayload(data=rotated.encode()),
        timeout=30,
    )
    world.commit("after rotation")

    record, _ = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    new_ref = env_of(world.revision(record.candidate_revision or ""))["SECRET_KEY"]
    old_ref = env_of(world.revision(world.first.candidate_revision or ""))["SECRET_KEY"]
    assert new_ref.value_source.secret_key_ref.version == "2"
    assert old_ref.value_source.secret_key_ref.version == "1"  # the old revision is untouched
    preflight = record.stage(Stage.PREFLIGHT)
    assert preflight is not None and "2 secrets pinned" in preflight.summary


def test_the_first_deploy_creates_the_service(empty_world: World) -> None:
    world = empty_world
    with pytest.raises(exceptions.NotFound):
        world.service()

    record, events = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    assert record.previous_revision is None
    assert world.serving() == [(record.candidate_revision, 100)]
    # The candidate tag only marks a revision under test; it does not outlive the deploy.
    assert [target.tag for target in world.service().traffic] == [""]
    assert world.revision_names() == {record.candidate_revision}
    assert world.health()["version"]["commit"] == world.head()
    deploy = record.stage(Stage.DEPLOY)
    assert deploy is not None and "created" in deploy.summary
    assert_stage_order(events, DEPLOY_STAGES)
    assert len(world.build_ids()) == 1
