"""Environments with their own Cloud Run service: staging and prod of one `[services.X]`
entry deploy to different Cloud Run services (staging in another project and region),
each serving its own revision, with one build between them.

Everything goes through the real clients over the sandbox's gRPC: each service's traffic
is read with GetService, Cloud Build's build count with ListBuilds, and `deployer status`
runs as a user runs it.
"""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import run_v2

from deployer.engine import Engine
from deployer.pipeline.record import DeployRecord, State
from tests.conftest import REGION
from tests.engine_world import ENVIRONMENT, Recorder, World, _seed_secret, world_fixture  # noqa: F401
from tests.front_world import in_process, make_front

STAGING = "staging"
STAGING_SERVICE = "backend-staging"
STAGING_REGION = "europe-west4"


def add_staging(world: World) -> str:
    """A staging environment of the world's service, in a project and region of its own,
    with its own secrets there (`staging-key` only there); the staging project's id."""
    project = f"stg-{uuid.uuid4().hex[:10]}"
    for secret_id in ("mongodb-url", "staging-key"):
        value = f"staging-{secret_id}-{secrets.token_hex(12)}"
        _seed_secret(world.secret_manager, project, secret_id, value)
        world.secret_values[f"{project}/{secret_id}"] = value
    world.settings[f"environments.{STAGING}"] = {
        **world.settings[f"environments.{ENVIRONMENT}"],
        "cloud_run_service": STAGING_SERVICE,
        "project": project,
        "region": STAGING_REGION,
        "env": {"LOG_LEVEL": "debug"},
        "secrets": {"MONGODB_URL": "mongodb-url", "SECRET_KEY": "staging-key"},
    }
    world.reconfigure()
    return project


def staging_name(project: str) -> str:
    return f"projects/{project}/locations/{STAGING_REGION}/services/{STAGING_SERVICE}"


def serving(world: World, name: str) -> list[tuple[str, int]]:
    """(revision, percent) of the revisions of service `name` that receive requests."""
    service: run_v2.Service = world.services.get_service(name=name, timeout=30)
    return sorted(
        (status.revision.rsplit("/", 1)[-1], status.percent)
        for status in service.traffic_statuses
        if status.percent > 0
    )


def deploy(engine: Engine, environment: str) -> DeployRecord:
    record = engine.deploy(engine.new_deploy(environment, None, "cli:tester"), Recorder())
    assert record.state == State.SUCCEEDED, record.error
    return record


def test_staging_and_prod_deploy_their_own_services_and_share_one_build(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    project = add_staging(world)
    commit = world.commit("for staging, then prod")
    builds = world.build_ids()

    staged = deploy(world.engine, STAGING)
    assert staged.commit == commit and not staged.build_reused
    assert len(world.build_ids()) == len(builds) + 1  # built once, in the service's project
    assert staged.candidate_revision and staged.candidate_revision.startswith(STAGING_SERVICE)
    assert serving(world, staging_name(project)) == [(staged.candidate_revision, 100)]
    # Prod still serves its first revision: the staging deploy never touched it.
    assert world.serving() == [(world.first.candidate_revision, 100)]
    revision = world.revisions.get_revision(
        name=f"{staging_name(project)}/revisions/{staged.candidate_revision}", timeout=30
    )
    env = {item.name: item for item in revision.containers[0].env}
    assert env["LOG_LEVEL"].value == "debug"
    # Its secrets are the staging project's: `staging-key` exists nowhere else, and a
    # secret of the service's own project is named by its id alone.
    assert env["SECRET_KEY"].value_source.secret_key_ref.secret == "staging-key"

    # `deployer check staging` reads the staging service, its secrets and rights there.
    code, out, _ = world.cli(capsys, "check", STAGING)
    assert code == 0, out
    assert f"{STAGING}: service {STAGING_SERVICE} in {project}/{STAGING_REGION}" in out
    assert "ok    secret SECRET_KEY: staging-key:latest -> version 1" in out
    assert (
        f"ok    service {STAGING_SERVICE}: exists, serving {staged.candidate_revision} 100%" in out
    )
    assert f"on {STAGING_SERVICE}" in out  # the rights on the service are checked there

    # Prod deploys the same commit: the staging build's image, no new build.
    promoted = deploy(world.engine, ENVIRONMENT)
    assert (promoted.build_reused, promoted.build_id, promoted.image) == (
        True,
        staged.build_id,
        staged.image,
    )
    assert len(world.build_ids()) == len(builds) + 1
    assert world.serving() == [(promoted.candidate_revision, 100)]
    assert serving(world, staging_name(project)) == [(staged.candidate_revision, 100)]

    code, out, _ = world.cli(capsys, "status")
    assert code == 0, out
    assert f"{STAGING}: {STAGING_SERVICE} in {project}/{STAGING_REGION}" in out
    assert f"{ENVIRONMENT}: {world.service_id} in {world.project}/{REGION}" in out
    assert f"{staged.candidate_revision}" in out and f"{promoted.candidate_revision}" in out

    # A rollback of prod moves prod back and leaves staging as it was.
    rolled = world.engine.rollback(ENVIRONMENT, None, "cli:tester", Recorder())
    assert rolled.state == State.SUCCEEDED, rolled.error
    assert world.serving() == [(world.first.candidate_revision, 100)]
    assert serving(world, staging_name(project)) == [(staged.candidate_revision, 100)]
    world.services.delete_service(name=staging_name(project), timeout=30)


def test_in_chat_staging_deploys_its_own_service_and_status_shows_both(
    world: World, gcp: Sandbox, repo_root: Path
) -> None:
    with in_process(make_front(world, gcp), repo_root) as front:
        project = add_staging(world)  # allowing the front's person and channel, as prod does
        answer = front.command(STAGING)
        assert answer.status == 200, answer.text
        staged = world.store().history(STAGING, 1)[0]
        done = front.finished(staged.id)
        assert done.state == State.SUCCEEDED, done.error
        assert serving(world, staging_name(project)) == [(done.candidate_revision, 100)]
        assert world.serving() == [(world.first.candidate_revision, 100)]

        blocks = front.command("status").json()["blocks"]
        shown = "\n".join(block["text"]["text"] for block in blocks if "text" in block)
        assert f"`{STAGING_SERVICE}` in `{project}/{STAGING_REGION}`" in shown, shown
        assert f"`{world.service_id}` in `{world.project}/" in shown, shown
        assert str(done.candidate_revision) in shown
        assert str(world.first.candidate_revision) in shown
        world.services.delete_service(name=staging_name(project), timeout=30)
