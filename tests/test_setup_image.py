"""`deployer setup` without `--image`: the deployer's image built with Cloud Build from this
checkout (root Dockerfile, source uploaded to Cloud Storage), run by the worker job; read
back through the APIs as a team would check it."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import artifactregistry_v1, run_v2, storage
from google.cloud.devtools import cloudbuild_v1

from deployer.cli import main
from deployer.setup.image import image_repository, source_bucket
from tests.conftest import REGION, GoogleClients
from tests.setup_config import config_text

SECRETS = "SLACK_SIGNING_SECRET=s\nSLACK_BOT_TOKEN=xoxb-1\nGITHUB_WEBHOOK_SECRET=w\n"


@pytest.fixture
def run_setup(gcp: Sandbox, project: str, tmp_path: Path, capsys):
    config = tmp_path / "deployer.toml"
    config.write_text(config_text(project))

    def run(*extra: str) -> tuple[int, str]:
        sys.stdin = io.StringIO(SECRETS)
        try:
            code = main(
                ["setup", "--project", project, "--region", REGION, "--config", str(config), *extra]
            )
        finally:
            sys.stdin = sys.__stdin__
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return run


def builds_of(clients: GoogleClients, project: str) -> list[cloudbuild_v1.Build]:
    client = clients(cloudbuild_v1.CloudBuildClient)
    parent = f"projects/{project}/locations/{REGION}"
    return list(client.list_builds(request={"parent": parent, "project_id": project}))


def worker_image(clients: GoogleClients, project: str) -> str:
    name = f"projects/{project}/locations/{REGION}/jobs/deployer-worker"
    return clients(run_v2.JobsClient).get_job(name=name).template.template.containers[0].image


def line(out: str, step: str) -> str:
    return next(text for text in out.splitlines() if text.startswith(f"{step}: "))


def test_setup_builds_the_image_the_worker_runs_and_a_second_run_builds_nothing(
    run_setup, google_clients: GoogleClients, project: str
) -> None:
    code, first = run_setup()

    assert code == 0, first
    assert line(first, "image").startswith("image: changed (created repository deployer; built")
    (build,) = builds_of(google_clients, project)
    assert build.status == cloudbuild_v1.Build.Status.SUCCESS
    assert build.steps[0].env == ["DOCKER_BUILDKIT=1"]
    source = build.source.storage_source
    assert source.bucket == source_bucket(project)
    assert source.object_.startswith("source/deployer-") and source.object_.endswith(".tgz")
    (pushed,) = build.results.images
    image = image_repository(project, REGION)
    assert pushed.name.startswith(f"{image}:src-")
    assert worker_image(google_clients, project) == f"{image}@{pushed.digest}"
    # The tag names the source: Artifact Registry holds it, pointing at the digest.
    registry = google_clients(artifactregistry_v1.ArtifactRegistryClient)
    repository = f"projects/{project}/locations/{REGION}/repositories/deployer"
    tag = registry.get_tag(name=f"{repository}/packages/deployer/tags/{pushed.name.split(':')[-1]}")
    assert tag.version.endswith(pushed.digest)
    # The image runs: a job from it answers `deployer check --help`.
    jobs = google_clients(run_v2.JobsClient)
    where = f"projects/{project}/locations/{REGION}"
    container = run_v2.Container(
        image=worker_image(google_clients, project), args=["check", "--help"]
    )
    task = run_v2.TaskTemplate(containers=[container], max_retries=0)
    jobs.create_job(
        parent=where,
        job_id="help",
        job=run_v2.Job(template=run_v2.ExecutionTemplate(template=task)),
    ).result(timeout=30)
    execution = jobs.run_job(name=f"{where}/jobs/help").result(timeout=60)
    assert execution.succeeded_count == 1

    code, second = run_setup()

    assert code == 0, second
    digest = pushed.digest[: len("sha256:") + 12]
    assert line(second, "image") == f"image: unchanged ({digest}… built from this checkout)"
    assert len(builds_of(google_clients, project)) == 1
    assert worker_image(google_clients, project) == f"{image}@{pushed.digest}"


def test_a_dry_run_uploads_and_builds_nothing(
    run_setup, gcp: Sandbox, google_clients: GoogleClients, project: str
) -> None:
    code, out = run_setup("--dry-run")

    assert code == 0, out
    assert line(out, "image").startswith(
        f"image: planned (build {image_repository(project, REGION)}:src-"
    )
    assert builds_of(google_clients, project) == []
    assert storage.Client(project=project).lookup_bucket(source_bucket(project)) is None
    registry = google_clients(artifactregistry_v1.ArtifactRegistryClient)
    with pytest.raises(exceptions.NotFound):
        registry.get_repository(name=f"projects/{project}/locations/{REGION}/repositories/deployer")


def test_a_given_image_is_used_and_nothing_is_built(
    run_setup, google_clients: GoogleClients, project: str
) -> None:
    given = f"{REGION}-docker.pkg.dev/{project}/deployer/deployer@sha256:{'ab' * 32}"

    code, out = run_setup("--dry-run", "--image", given)

    assert code == 0, out
    assert line(out, "image") == f"image: unchanged (given: {given})"
    assert builds_of(google_clients, project) == []


def test_a_failed_build_stops_setup_with_the_builds_log(
    run_setup, gcp: Sandbox, google_clients: GoogleClients, project: str
) -> None:
    gcp.faults.arm("build_fail", message="ERROR: failed to solve: uv sync exited 1")

    code, out = run_setup()

    assert code != 0, out
    (build,) = builds_of(google_clients, project)
    assert build.status == cloudbuild_v1.Build.Status.FAILURE
    assert "setup stopped at image" in out
    assert build.id in out and build.log_url in out
    assert "worker job:" not in out  # nothing runs an image that was not built


def test_without_the_sandboxs_storage_address_nothing_is_made(
    run_setup, google_clients: GoogleClients, project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the sandbox's gRPC host but not its Cloud Storage, no upload may reach Google."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST")

    code, out = run_setup()

    assert code != 0, out
    assert "STORAGE_EMULATOR_HOST is not" in out
    assert builds_of(google_clients, project) == []
    registry = google_clients(artifactregistry_v1.ArtifactRegistryClient)
    with pytest.raises(exceptions.NotFound):
        registry.get_repository(name=f"projects/{project}/locations/{REGION}/repositories/deployer")
