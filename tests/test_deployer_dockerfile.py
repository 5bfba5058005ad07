"""The deployer's own image (root Dockerfile): what the worker job runs, checked without Docker."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

from google.cloud.devtools import cloudbuild_v1

from deployer.dockerfiles.build_steps import docker_builds
from deployer.dockerfiles.lint import ImageReading, lint_build
from deployer.dockerfiles.parse import Stage, parse

ROOT = Path(__file__).resolve().parents[1]


def lint_root() -> ImageReading:
    """The deployer's lint of `DOCKER_BUILDKIT=1 docker build .` at the repository's root."""
    build = cloudbuild_v1.Build(
        steps=[
            {
                "name": "gcr.io/cloud-builders/docker",
                "env": ["DOCKER_BUILDKIT=1"],
                "args": ["build", "-t", "deployer", "."],
            }
        ]
    )
    (step,) = docker_builds(build, "", {})
    read = lint_build(ROOT, step, "the README's docker build")
    assert isinstance(read, ImageReading), read
    return read


def stages() -> tuple[Stage, ...]:
    return parse((ROOT / "Dockerfile").read_text()).stages


def test_every_copied_file_is_in_the_build_context() -> None:
    assert lint_root().findings == []


def test_the_context_holds_the_package_and_nothing_of_the_rest() -> None:
    context = set(lint_root().context.files())
    assert {"pyproject.toml", "uv.lock", "README.md", "main.py", "deployer/cli.py"} <= context
    assert "sandbox/pyproject.toml" in context  # uv reads the workspace; nothing of it is installed
    assert not {path for path in context if path.startswith(("tests", "service", ".git", ".venv"))}
    assert not {path for path in context if path.startswith("sandbox/deployer_sandbox")}
    assert not {path for path in context if "__pycache__" in path}


def test_the_job_runs_deployer_worker_as_a_non_root_user() -> None:
    final = stages()[-1]
    keywords = {i.keyword: i for i in final.instructions}
    # The job's override args (["worker", DEPLOY_ID]) follow the entrypoint.
    assert list(keywords["ENTRYPOINT"].args) == ["deployer"]
    assert list(keywords["USER"].args) == ["deployer"]
    # git resolves branches and tags to commits in preflight.
    assert "git" in shlex.split(keywords["RUN"].args[0])


def test_dependencies_install_exactly_from_the_lock() -> None:
    builder = stages()[0]
    syncs = [
        shlex.split(i.args[0])
        for i in builder.instructions
        if i.keyword == "RUN" and "uv sync" in i.args[0]
    ]
    assert syncs and all("--frozen" in words and "--no-dev" in words for words in syncs)
    assert all(words[words.index("--package") + 1] == "deployer" for words in syncs)


def test_the_product_installs_no_sandbox_and_no_sample_service_dependency() -> None:
    """What the function and the worker image install: the product and its dependencies."""
    # `uv run` names itself in UV; uv on PATH otherwise.
    uv = os.environ.get("UV") or shutil.which("uv") or "uv"
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--package", "deployer", "--no-hashes"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    names = {line.split("==")[0] for line in exported.splitlines() if "==" in line}
    assert {"slack-bolt", "google-cloud-run", "functions-framework"} <= names
    assert not names & {"fastapi", "pydantic-settings", "deployer-sandbox"}
    # uvicorn stays, for functions-framework's own sake (its ASGI mode), not the product's.
    lines = exported.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("uvicorn=="))
    via = []
    for line in lines[start + 1 :]:
        if not line.startswith("    #"):
            break
        via.append(line.removeprefix("    #").strip())
    assert set(via) - {"via"} <= {"functions-framework", "uvicorn-worker"}
