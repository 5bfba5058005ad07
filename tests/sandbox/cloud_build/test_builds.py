"""Cloud Build v1 in the sandbox, through the real `cloudbuild_v1` client."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud.devtools import cloudbuild_v1 as cb

from tests.conftest import GoogleClients
from tests.git_repos import commit, git

Status = cb.Build.Status
FailureType = cb.Build.FailureInfo.FailureType
DOCKER = "gcr.io/cloud-builders/docker"
DOCKERFILE = """\
# syntax=docker/dockerfile:1
FROM python:3.11-slim AS builder
ENV BUILDER_ONLY=1
FROM python:3.11-slim
WORKDIR /app
COPY app ./app
ENV PATH=/app/.venv/bin:$PATH \\
    PYTHONUNBUFFERED=1
ARG COMMIT_SHA=unknown
ENV APP_COMMIT=$COMMIT_SHA
CMD ["python", "-m", "app"]
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with a small service under `service/`."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    commit(
        path,
        {
            "README.md": "demo\n",
            "service/Dockerfile": DOCKERFILE,
            "service/app/__main__.py": "print('hello')\n",
        },
        "first",
    )
    return path


@pytest.fixture
def client(google_clients: GoogleClients) -> cb.CloudBuildClient:
    return google_clients(cb.CloudBuildClient)


def image_name(project: str) -> str:
    return f"europe-west1-docker.pkg.dev/{project}/deployer/backend"


def service_build(repo: Path, project: str, revision: str = "main", **fields: object) -> cb.Build:
    """Build `service/` of `repo`: docker build with the commit as build arg, then `images`."""
    image = image_name(project)
    build = cb.Build(
        source=cb.Source(git_source=cb.GitSource(url=str(repo), revision=revision, dir_="service")),
        steps=[
            cb.BuildStep(
                id="build",
                name=DOCKER,
                args=[
                    "build",
                    "--build-arg",
                    "COMMIT_SHA=$_COMMIT_SHA",
                    "-t",
                    f"{image}:$_COMMIT_SHA",
                    ".",
                ],
            )
        ],
        images=[f"{image}:$_COMMIT_SHA"],
        substitutions={"_COMMIT_SHA": "c0ffee"},
    )
    for key, value in fields.items():
        setattr(build, key, value)
    return build


def run(client: cb.CloudBuildClient, project: str, build: cb.Build) -> cb.Build:
    """Create the build and wait for its operation; return the final Build."""
    result: cb.Build = client.create_build(project_id=project, build=build).result(timeout=30)
    return result


def failed(client: cb.CloudBuildClient, project: str, build: cb.Build) -> cb.Build:
    """Create a build expected to fail; return the final Build read back with GetBuild."""
    operation = client.create_build(project_id=project, build=build)
    with pytest.raises(exceptions.GoogleAPICallError):
        operation.result(timeout=30)
    got: cb.Build = client.get_build(project_id=project, id=operation.metadata.build.id)
    return got


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


# --- success --------------------------------------------------------------------------


def test_build_pushes_the_image_and_reports_its_digest_and_commit(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    sha = git(repo, "rev-parse", "HEAD")

    build = run(client, project, service_build(repo, project))

    assert build.status == Status.SUCCESS
    assert build.start_time and build.finish_time and build.finish_time >= build.start_time
    assert [step.status for step in build.steps] == [Status.SUCCESS]
    assert build.steps[0].args[-2] == f"{image_name(project)}:c0ffee"  # substituted
    [pushed] = build.results.images
    assert pushed.name == f"{image_name(project)}:c0ffee"
    assert pushed.digest.startswith("sha256:") and len(pushed.digest) == 71
    assert build.source_provenance.resolved_git_source.revision == sha
    image = gcp.images.resolve(f"{image_name(project)}@{pushed.digest}")
    assert image is not None
    assert image.root and image.workdir == "/app"
    assert image.cmd == ("python", "-m", "app")
    assert image.env["PATH"] == (
        "/app/.venv/bin:/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"
    )  # `$PATH` expanded against the base image's PATH
    assert image.env["PYTHONUNBUFFERED"] == "1" and image.env["APP_COMMIT"] == "c0ffee"
    assert "BUILDER_ONLY" not in image.env  # the other stage's
    assert image.commit == sha
    assert (image.context / "app" / "app" / "__main__.py").read_text() == "print('hello')\n"


def test_operation_metadata_names_the_build_at_once(
    client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    operation = client.create_build(project_id=project, build=service_build(repo, project))

    queued = operation.metadata.build
    assert queued.id
    assert queued.name == f"projects/{project}/locations/global/builds/{queued.id}"
    assert queued.status == Status.QUEUED
    assert queued.log_url.startswith("https://console.cloud.google.com/cloud-build/builds/")
    assert queued.create_time
    assert operation.result(timeout=30).id == queued.id


def test_digest_follows_the_context_content(
    client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    def digest() -> str:
        return str(run(client, project, service_build(repo, project)).results.images[0].digest)

    first = digest()
    assert digest() == first
    commit(repo, {"README.md": "outside the build context\n"})
    assert digest() == first
    commit(repo, {"service/app/__main__.py": "print('hello again')\n"})
    assert digest() != first


def test_dynamic_substitutions_and_tolerated_cache_pull(
    client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    image = "${_REGION}-docker.pkg.dev/${PROJECT_ID}/${_REPOSITORY}/backend"
    build = cb.Build(
        source=cb.Source(git_source=cb.GitSource(url=f"file://{repo}")),
        steps=[
            cb.BuildStep(
                name=DOCKER, dir_="service", entrypoint="bash",
                args=["-c", "docker pull $_IMAGE:latest || exit 0"],
            ),
            cb.BuildStep(
                name=DOCKER, dir_="service",
                args=["build", "--cache-from", "$_IMAGE:latest", "-t", "$_IMAGE:latest", "."],
            ),
            cb.BuildStep(name=DOCKER, args=["push", "$_IMAGE:latest"]),
            cb.BuildStep(name="gcr.io/google.com/cloudsdktool/cloud-sdk", args=["gcloud", "info"]),
        ],
        substitutions={"_REGION": "europe-west1", "_REPOSITORY": "deployer", "_IMAGE": image},
        options=cb.BuildOptions(dynamic_substitutions=True),
    )  # fmt: skip

    done = run(client, project, build)

    assert done.status == Status.SUCCESS
    assert done.steps[2].args == ["push", f"{image_name(project)}:latest"]
    assert not done.results.images  # nothing in `images`: pushed by a step only


# --- reading builds -----------------------------------------------------------------------


def test_get_and_list_builds(client: cb.CloudBuildClient, project: str, repo: Path) -> None:
    first = run(client, project, service_build(repo, project))
    second = run(client, project, service_build(repo, project, tags=["nightly"]))

    assert client.get_build(project_id=project, id=first.id).status == Status.SUCCESS
    assert client.get_build(name=second.name).id == second.id
    listed = [b.id for b in client.list_builds(project_id=project)]
    assert listed == [second.id, first.id]  # newest first
    pages = client.list_builds(request={"project_id": project, "page_size": 1}).pages
    assert [len(page.builds) for page in pages] == [1, 1]
    tagged = client.list_builds(project_id=project, filter='tags="nightly"')
    assert [b.id for b in tagged] == [second.id]


def test_regional_builds_are_named_under_their_location(
    client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    parent = f"projects/{project}/locations/europe-west1"
    operation = client.create_build(
        parent=parent, project_id=project, build=service_build(repo, project)
    )
    build = operation.result(timeout=30)

    assert build.name == f"{parent}/builds/{build.id}"
    assert f"builds;region=europe-west1/{build.id}?project={project}" in build.log_url
    assert client.get_build(name=build.name).status == Status.SUCCESS
    assert [
        b.id for b in client.list_builds(request={"parent": parent, "project_id": project})
    ] == [build.id]
    with pytest.raises(exceptions.NotFound):
        client.get_build(project_id=project, id=build.id)  # that looks in `global`


def test_unknown_build_is_not_found(client: cb.CloudBuildClient, project: str) -> None:
    with pytest.raises(exceptions.NotFound, match="Requested entity was not found"):
        client.get_build(project_id=project, id=str(uuid.uuid4()))


# --- failures -------------------------------------------------------------------------


def test_injected_failure_fails_the_named_step(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    gcp.faults.arm("build_fail", step="build", message="ERROR: failed to solve: disk full")
    build = service_build(repo, project)
    build.steps.insert(0, cb.BuildStep(id="prepare", name="bash", args=["-c", "true"]))
    operation = client.create_build(project_id=project, build=build)

    with pytest.raises(exceptions.Unknown, match="Build failed; check build logs for details"):
        operation.result(timeout=30)
    done = client.get_build(project_id=project, id=operation.metadata.build.id)
    assert done.status == Status.FAILURE
    assert done.status_detail == (
        f'build step 1 "{DOCKER}" failed: step exited with non-zero status: 1'
    )
    assert done.failure_info.type_ == FailureType.USER_BUILD_STEP
    assert done.failure_info.detail.endswith(done.status_detail)
    assert [s.status for s in done.steps] == [Status.SUCCESS, Status.FAILURE]
    assert not done.results.images
    assert 'Step #1 - "build": ERROR: failed to solve: disk full' in gcp.builds.logs(done.id)


def test_missing_dockerfile_fails_the_step(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    build = service_build(repo, project)
    build.steps[0].args = ["build", "-f", "Dockerfile.prod", "-t", f"{image_name(project)}:x", "."]

    done = failed(client, project, build)

    assert done.status == Status.FAILURE
    assert done.failure_info.type_ == FailureType.USER_BUILD_STEP
    assert done.steps[0].status == Status.FAILURE
    assert any(
        "open /workspace/service/Dockerfile.prod: no such file" in line
        for line in gcp.builds.logs(done.id)
    )


def test_image_that_no_step_built_fails_the_push(
    client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    build = service_build(repo, project)
    build.images.append(f"{image_name(project)}:never-built")

    done = failed(client, project, build)

    assert done.status == Status.FAILURE
    assert done.failure_info.type_ == FailureType.PUSH_IMAGE_NOT_FOUND
    assert done.status_detail.startswith(
        "failed to find one or more images after execution of build steps"
    )
    assert "never-built" in done.status_detail


def test_unknown_revision_fails_fetching_the_source(
    client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    done = failed(client, project, service_build(repo, project, revision="no-such-branch"))

    assert done.status == Status.FAILURE
    assert done.failure_info.type_ == FailureType.FETCH_SOURCE_FAILED
    assert "couldn't resolve revision 'no-such-branch'" in done.status_detail
    assert done.steps[0].status == Status.QUEUED


def test_hang_ends_in_timeout(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    gcp.faults.arm("build_hang")
    started = time.monotonic()

    done = failed(client, project, service_build(repo, project, timeout={"seconds": 2}))

    assert done.status == Status.TIMEOUT
    assert done.steps[0].status == Status.TIMEOUT
    assert 2.0 <= time.monotonic() - started < 15.0


def test_cancel_build_stops_a_hanging_build(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    gcp.faults.arm("build_hang", step=0)
    operation = client.create_build(project_id=project, build=service_build(repo, project))
    build_id = operation.metadata.build.id
    wait_until(
        lambda: client.get_build(project_id=project, id=build_id).steps[0].status == Status.WORKING
    )

    cancelled = client.cancel_build(project_id=project, id=build_id)

    assert cancelled.status == Status.CANCELLED
    assert cancelled.steps[0].status == Status.CANCELLED
    with pytest.raises(exceptions.Cancelled):
        operation.result(timeout=30)
    with pytest.raises(exceptions.FailedPrecondition):
        client.cancel_build(project_id=project, id=build_id)


def test_cancelling_the_operation_cancels_the_build(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    gcp.faults.arm("build_hang")
    operation = client.create_build(project_id=project, build=service_build(repo, project))
    build_id = operation.metadata.build.id
    wait_until(lambda: client.get_build(project_id=project, id=build_id).status == Status.WORKING)

    operation.cancel()

    wait_until(operation.done)
    assert client.get_build(project_id=project, id=build_id).status == Status.CANCELLED


# --- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": []}, "no build steps are specified"),
        ({"substitutions": {"commit": "x", "_COMMIT_SHA": "y"}}, 'substitution key "commit" does not respect format'),
        ({"substitutions": {"_COMMIT_SHA": "y", "_UNUSED": "z"}}, 'key "_UNUSED" in the substitution data is not matched in the template'),
        ({"images": ["$IMAGE"]}, 'key in the template "IMAGE" is not a valid built-in substitution'),
        ({"substitutions": {}}, 'key in the template "_COMMIT_SHA" is not matched in the substitution data'),
    ],
    ids=["no-steps", "bad-key", "unused-key", "not-a-built-in", "missing-key"],
)  # fmt: skip
def test_invalid_builds_are_rejected(
    client: cb.CloudBuildClient, project: str, repo: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=message):
        client.create_build(project_id=project, build=service_build(repo, project, **change))


def test_allow_loose_accepts_unused_substitutions(
    client: cb.CloudBuildClient, project: str, repo: Path
) -> None:
    loose = cb.BuildOptions(substitution_option=cb.BuildOptions.SubstitutionOption.ALLOW_LOOSE)
    build = service_build(
        repo, project, options=loose, substitutions={"_COMMIT_SHA": "a", "_X": "b"}
    )

    assert run(client, project, build).status == Status.SUCCESS


def test_repo_source_is_not_served(client: cb.CloudBuildClient, project: str) -> None:
    """Cloud Source Repositories' `repo_source` is not served (storage_source is:
    tests/sandbox/storage)."""
    build = cb.Build(
        source=cb.Source(repo_source=cb.RepoSource(repo_name="r", branch_name="main")),
        steps=[cb.BuildStep(name=DOCKER, args=["build", "."])],
    )
    with pytest.raises(exceptions.MethodNotImplemented, match="repo_source is not served"):
        client.create_build(project_id=project, build=build)


# --- the repository's own service -----------------------------------------------------------


def test_builds_the_repository_service_at_head(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, repo_root: Path
) -> None:
    present = subprocess.run(
        ["git", "-C", str(repo_root), "cat-file", "-e", "HEAD:service/Dockerfile"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    if present.returncode != 0:
        pytest.skip("service/Dockerfile is not committed at HEAD yet")
    sha = git(repo_root, "rev-parse", "HEAD")

    build = service_build(repo_root, project, revision="HEAD", substitutions={"_COMMIT_SHA": sha})
    build.steps[0].env = ["DOCKER_BUILDKIT=1"]  # service/Dockerfile's RUN --mount needs it
    build.timeout = {"seconds": 600}

    done = client.create_build(project_id=project, build=build).result(timeout=600)

    assert done.status == Status.SUCCESS
    image = gcp.images.resolve(f"{image_name(project)}:{sha}")
    assert image is not None and image.commit == sha
    assert image.cmd == ("python", "-m", "app")
    assert image.env["APP_COMMIT"] == sha
    assert sorted(p.name for p in (image.context / "app").iterdir()) == [".venv", "app"]
