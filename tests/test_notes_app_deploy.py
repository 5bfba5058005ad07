"""An app we did not shape around the deployer: tests/fixtures/notes_app, deployed through
the sandbox as a team would, with its own Dockerfile (BuildKit mounts, pip, gunicorn on a
fixed port), its own .dockerignore and its required settings."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud.devtools import cloudbuild_v1
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

from deployer.adapters.cloud_logging import BuildLogs
from deployer.adapters.google_clients import google_client
from deployer.pipeline.record import Stage, State
from tests.conftest import REGION
from tests.engine_world import SERVICE_KEY, World, base_settings, close_world, world_of
from tests.git_repos import new_repository

FIXTURE = Path(__file__).parent / "fixtures" / "notes_app"


def notes_world(sandbox: Sandbox, root: Path) -> World:
    """The notes app in a repository of its own, configured as its team would configure it."""
    repo = root / "repo"
    shutil.copytree(FIXTURE, repo, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    # A developer's local settings, committed by mistake: the image must never hold them.
    (repo / ".env").write_text("DATABASE_URL=sqlite:///local.db\nNOTES_API_KEY=local\n")
    new_repository(repo)
    project = f"notes-{secrets.token_hex(5)}"
    values = {
        "database-url": f"postgresql://notes:pw-{secrets.token_hex(10)}@10.0.0.5/notes",
        "notes-api-key": f"key-{secrets.token_hex(12)}",
    }
    settings = base_settings(project, repo, "notes")
    service = settings[f"services.{SERVICE_KEY}"]
    service["image"] = service["image"].replace("/backend", "/notes")
    service["substitutions"]["_IMAGE_NAME"] = "notes"
    service["health"]["path"] = "/api/health/"
    service["health"]["version_field"] = "commit"
    environment = settings["environments.prod"]
    environment["env"] = {"NOTES_GREETING": "Hallo"}
    environment["secrets"] = {"DATABASE_URL": "database-url", "NOTES_API_KEY": "notes-api-key"}
    environment["run"]["port"] = 8000
    environment["timeouts"]["build"] = 300  # a cold pip install from the package registry
    return world_of(sandbox, root, repo, project, settings, values)


@pytest.fixture(name="notes")
def notes_fixture(gcp: Sandbox, tmp_path: Path) -> Iterator[World]:
    world = notes_world(gcp, tmp_path / "world")
    try:
        yield world
        world.assert_no_secrets()
    finally:
        close_world(world)


def test_the_notes_app_deploys_and_serves_on_its_own_port(notes: World) -> None:
    record, events = notes.deploy()

    assert record.state == State.SUCCEEDED, record.error
    assert notes.serving() == [(record.candidate_revision, 100)]
    revision = notes.revision(record.candidate_revision or "")
    assert revision.containers[0].ports[0].container_port == 8000
    url = notes.service().uri
    assert httpx.get(f"{url}/notes", timeout=10).json() == {"greeting": "Hallo", "notes": []}
    # The key from Secret Manager is the one the app checks; the committed .env is not
    # in the image (.dockerignore keeps only the code), so "local" is no key at all.
    key = notes.secret_values["notes-api-key"]
    assert httpx.post(f"{url}/notes", content=b"x", headers={"X-API-Key": key}).status_code == 201
    refused = httpx.post(f"{url}/notes", content=b"x", headers={"X-API-Key": "local"})
    assert refused.status_code == 401
    # The build ran the image's pip install for real, and said what it did not run.
    build = notes.builds.get_build(
        name=f"projects/{notes.project}/locations/{REGION}/builds/{record.build_id}", timeout=30
    )
    assert build.status == cloudbuild_v1.Build.Status.SUCCESS
    # Read through Cloud Logging, as the deployer reads a failed build's lines.
    logs = BuildLogs(google_client(LoggingServiceV2Client, notes.sandbox.grpc_address))
    service = notes.config.services[SERVICE_KEY]
    lines = logs.tail(service, record.build_id or "", 200, 30.0)
    # pip's RUN: run as `uv pip install` (said so), or found in the machine's build cache.
    [header] = [line for line in lines if "RUN --mount" in line and "pip install -r" in line]
    step = header.split(": ", 1)[1].split(" ", 1)[0]  # "#6"
    said = [line for line in lines if f": {step} " in line and line != header]
    assert any("run as uv pip install" in line or line.endswith(" CACHED") for line in said)
    assert any("(sandbox) not run: apt-get update" in line for line in lines)
    assert "healthy" in events.text.getvalue()


def test_a_required_setting_missing_from_the_deploy_stops_it_before_a_build(
    notes: World,
) -> None:
    # The committed .env has DATABASE_URL; the image will not. The preflight knows.
    engine = notes.reconfigure(environment={"secrets": {"DATABASE_URL": None}})

    record, events = notes.deploy(engine=engine)

    assert record.state == State.FAILED
    preflight = record.stage(Stage.PREFLIGHT)
    assert preflight is not None and "DATABASE_URL" in (preflight.detail or record.error or "")
    assert notes.build_ids() == []
    assert "DATABASE_URL" in events.text.getvalue()
