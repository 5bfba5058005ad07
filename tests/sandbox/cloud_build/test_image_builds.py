"""Images built as Docker builds them, through the real `cloudbuild_v1` client.

The image is a tree holding exactly what COPY, ADD and RUN put in it; Python installs
run for real (uv, with the package registry); Docker's own failures fail the build
with Docker's words.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from deployer_sandbox.common.images import Image
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud.devtools import cloudbuild_v1 as cb

from tests.conftest import GoogleClients
from tests.git_repos import commit, git

Status = cb.Build.Status
DOCKER = "gcr.io/cloud-builders/docker"
TIMEOUT_S = 600
PYTHON_PATH = "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture
def client(google_clients: GoogleClients) -> cb.CloudBuildClient:
    return google_clients(cb.CloudBuildClient)


@pytest.fixture
def service_repo(tmp_path: Path, repo_root: Path) -> Path:
    """A repository holding a copy of the repository's own `service/` (working tree)."""
    path = tmp_path / "repo"
    shutil.copytree(
        repo_root / "service",
        path / "service",
        ignore=shutil.ignore_patterns("__pycache__", ".venv", ".pytest_cache"),
    )
    git(path, "init", "-q", "-b", "main")
    commit(path, {}, "service")
    return path


def image_name(project: str) -> str:
    return f"europe-west1-docker.pkg.dev/{project}/deployer/backend"


def docker_build(repo: Path, project: str, env: list[str] | None = None) -> cb.Build:
    """`docker build -t IMAGE:v1 .` in `service/`, pushed through `images`."""
    image = f"{image_name(project)}:v1"
    step = cb.BuildStep(
        id="build", name=DOCKER, dir_="service", env=env or [], args=["build", "-t", image, "."]
    )
    return cb.Build(
        source=cb.Source(git_source=cb.GitSource(url=str(repo), revision="main")),
        steps=[step],
        images=[image],
        timeout={"seconds": TIMEOUT_S},
    )


def finish(client: cb.CloudBuildClient, project: str, build: cb.Build) -> cb.Build:
    """Create the build, wait for it to end (either way), read it back."""
    operation = client.create_build(project_id=project, build=build)
    with contextlib.suppress(exceptions.GoogleAPICallError):
        operation.result(timeout=TIMEOUT_S)
    done: cb.Build = client.get_build(project_id=project, id=operation.metadata.build.id)
    return done


def pushed(gcp: Sandbox, project: str) -> Image:
    image = gcp.images.resolve(f"{image_name(project)}:v1")
    assert image is not None
    return image


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


BUILDKIT = ["DOCKER_BUILDKIT=1"]


# --- the repository's own service -------------------------------------------------------


def test_service_image_holds_the_venv_and_the_code_only(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, service_repo: Path
) -> None:
    done = finish(client, project, docker_build(service_repo, project, BUILDKIT))

    assert done.status == Status.SUCCESS, gcp.builds.logs(done.id)[-20:]
    image = pushed(gcp, project)
    app = image.context / "app"
    assert sorted(p.name for p in app.iterdir()) == [".venv", "app"]
    assert not {"README.md", "tests", ".env", "pyproject.toml"} & {p.name for p in app.iterdir()}
    # uv sync ran inside the image: its venv has the image's paths and Python.
    assert "home = /usr/local/bin" in (app / ".venv" / "pyvenv.cfg").read_text()
    uvicorn = (app / ".venv" / "bin" / "uvicorn").read_text()
    assert uvicorn.startswith("#!/app/.venv/bin/python")
    site = app / ".venv" / "lib" / "python3.11" / "site-packages"
    assert (site / "fastapi").is_dir() and (site / "pydantic_settings").is_dir()
    assert image.workdir == "/app" and image.user == "app" and image.exposed == ("8080",)
    assert image.cmd == ("python", "-m", "app")
    assert image.env["PATH"] == f"/app/.venv/bin:{PYTHON_PATH}"
    # The base's standard library comes with its bytecode, so that a revision does not
    # compile typing.py and the like again at every start.
    stdlib_cache = image.context / "usr" / "local" / "lib" / "python3.11" / "__pycache__"
    assert (stdlib_cache / "typing.cpython-311.pyc").is_file()
    logs = gcp.builds.logs(done.id)
    assert any("[builder 5/7] RUN --mount=type=cache" in line for line in logs)
    assert any("(sandbox) not run: useradd --system" in line for line in logs)


def test_second_build_with_the_same_lock_is_cached(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, service_repo: Path
) -> None:
    first = finish(client, project, docker_build(service_repo, project, BUILDKIT))
    second = finish(client, project, docker_build(service_repo, project, BUILDKIT))

    assert first.status == second.status == Status.SUCCESS
    logs = gcp.builds.logs(second.id)
    assert sum(line.endswith(" CACHED") for line in logs) == 2  # both uv sync RUNs
    assert second.results.images[0].digest == first.results.images[0].digest


def test_run_mount_without_buildkit_fails_with_dockers_message(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, service_repo: Path
) -> None:
    done = finish(client, project, docker_build(service_repo, project))

    assert done.status == Status.FAILURE
    assert done.steps[0].status == Status.FAILURE
    assert not done.results.images
    assert gcp.images.resolve(f"{image_name(project)}:v1") is None
    logs = gcp.builds.logs(done.id)
    assert (
        'Step #0 - "build": Step 6/19 : RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-install-project'
        in logs
    )
    assert (
        'Step #0 - "build": the --mount option requires BuildKit. Refer to '
        "https://docs.docker.com/go/buildkit/ to learn how to build images with BuildKit enabled"
    ) in logs
    assert not any("Successfully built" in line for line in logs)


def test_committed_env_file_excluded_by_dockerignore_is_not_in_the_image(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, service_repo: Path
) -> None:
    dockerfile = 'FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nCMD ["python", "-m", "app"]\n'
    commit(
        service_repo,
        {"service/.env": "MONGODB_URL=mongodb://from-dotenv\n", "service/Dockerfile": dockerfile},
    )

    done = finish(client, project, docker_build(service_repo, project))

    assert done.status == Status.SUCCESS
    files = files_under(pushed(gcp, project).context / "app")
    assert "app/main.py" in files and "pyproject.toml" in files and "README.md" in files
    assert ".env" not in files and "tests" not in files


# --- Docker's own failures ------------------------------------------------------------------


def test_dockerignore_dropping_the_readme_fails_hatchling(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, service_repo: Path
) -> None:
    ignore = (service_repo / "service" / ".dockerignore").read_text().replace("!README.md", "")
    dockerfile = (
        "FROM python:3.11-slim\nCOPY --from=ghcr.io/astral-sh/uv:0.5 /uv /bin/\n"
        "ENV UV_PYTHON_DOWNLOADS=0\nWORKDIR /app\nCOPY . .\n"
        "RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev\n"
    )
    commit(service_repo, {"service/.dockerignore": ignore, "service/Dockerfile": dockerfile})

    done = finish(client, project, docker_build(service_repo, project, BUILDKIT))

    assert done.status == Status.FAILURE
    assert not done.results.images
    logs = "\n".join(gcp.builds.logs(done.id))
    assert "Readme file does not exist: README.md" in logs  # hatchling's words
    assert (
        'ERROR: failed to solve: process "/bin/sh -c uv sync --frozen --no-dev" '
        "did not complete successfully: exit code:"
    ) in logs


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (BUILDKIT, 'ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref '),
        ([], "COPY failed: file not found in build context or excluded by .dockerignore: stat README.md: file does not exist"),
    ],
    ids=["buildkit", "legacy"],
)  # fmt: skip
def test_copy_source_excluded_by_dockerignore_fails(
    gcp: Sandbox,
    client: cb.CloudBuildClient,
    project: str,
    service_repo: Path,
    env: list[str],
    message: str,
) -> None:
    ignore = (service_repo / "service" / ".dockerignore").read_text() + "README.md\n"
    dockerfile = "FROM python:3.11-slim\nWORKDIR /app\nCOPY pyproject.toml README.md ./\n"
    commit(service_repo, {"service/.dockerignore": ignore, "service/Dockerfile": dockerfile})

    done = finish(client, project, docker_build(service_repo, project, env))

    assert done.status == Status.FAILURE
    [failure] = [line for line in gcp.builds.logs(done.id) if message in line]
    if env:
        assert failure.endswith('"/README.md": not found')


def test_missing_copy_source_fails(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, service_repo: Path
) -> None:
    commit(
        service_repo, {"service/Dockerfile": "FROM python:3.11-slim\nCOPY requirements.txt /app/\n"}
    )

    done = finish(client, project, docker_build(service_repo, project, BUILDKIT))

    assert done.status == Status.FAILURE
    assert any(line.endswith('"/requirements.txt": not found') for line in gcp.builds.logs(done.id))


# --- instructions ----------------------------------------------------------------------------

MULTI_STAGE = """\
FROM python:3.12-slim AS base
ENV TOOL_HOME=/opt/tool
WORKDIR /src
COPY app ./app
RUN apt-get update && apt-get install -y curl && echo built in base

FROM base AS unused
RUN pip install this-package-does-not-exist-anywhere

FROM python:3.12-slim
ARG GREETING=hello
ENV PATH=/opt/tool/bin:$PATH GREETING="$GREETING world"
COPY --from=base /src/app /srv/app
WORKDIR /srv
CMD python -m app --port $PORT
"""


def test_multi_stage_build_copies_between_stages_and_keeps_dockers_config(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, service_repo: Path
) -> None:
    commit(service_repo, {"service/Dockerfile": MULTI_STAGE})

    done = finish(client, project, docker_build(service_repo, project, BUILDKIT))

    assert done.status == Status.SUCCESS, gcp.builds.logs(done.id)[-20:]
    image = pushed(gcp, project)
    assert image.cmd == ("/bin/sh", "-c", "python -m app --port $PORT")  # shell form
    assert image.env["PATH"] == f"/opt/tool/bin:{PYTHON_PATH}"
    assert image.env["GREETING"] == "hello world"
    assert "TOOL_HOME" not in image.env  # the other stage's
    assert image.workdir == "/srv"
    assert (image.context / "srv" / "app" / "main.py").is_file()
    assert not (image.context / "src").exists()
    assert (image.context / "usr" / "local" / "bin" / "python3.12").is_file()
    logs = gcp.builds.logs(done.id)
    for command in ("apt-get update", "apt-get install -y curl"):
        assert any(line.endswith(f"(sandbox) not run: {command}") for line in logs)
    assert any(line.endswith("built in base") for line in logs)  # echo ran
    # BuildKit skips the stage the target does not need.
    assert not any("this-package-does-not-exist" in line for line in logs)


def test_entrypoint_resets_the_base_images_cmd_and_an_unknown_python_is_warned_about(
    gcp: Sandbox, client: cb.CloudBuildClient, project: str, service_repo: Path
) -> None:
    dockerfile = 'FROM python:3.5-slim\nENTRYPOINT ["python", "-m", "app"]\n'
    commit(service_repo, {"service/Dockerfile": dockerfile})

    done = finish(client, project, docker_build(service_repo, project))

    assert done.status == Status.SUCCESS
    image = pushed(gcp, project)
    assert image.entrypoint == ("python", "-m", "app") and image.cmd == ()
    assert any(
        "WARNING: python:3.5-slim provides Python 3.5; this machine has no Python 3.5" in line
        for line in gcp.builds.logs(done.id)
    )
