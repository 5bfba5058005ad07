"""`deployer check` lints the Dockerfile of the commit to deploy: one planted case per lint.

Each case is a tiny repository (a FastAPI-like app under app/, built by one docker
step) that is right but for the one thing planted; `deployer check` runs against the
sandbox as a user runs it.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.harness.seed import Demo
from google.cloud import secretmanager_v1

from deployer import cli
from deployer.adapters.google_clients import google_client
from deployer.adapters.secret_writer import SecretManagerWriter
from tests.conftest import REGION
from tests.git_repos import new_repository

CONFIG = """\
[services.api]
project = "{project}"
region = "{region}"
service = "api"
image = "{region}-docker.pkg.dev/{project}/apps/api"

[services.api.source]
git = {git}

[environments.prod]
service = "api"
env = {{ LOG_LEVEL = "info" }}
env_from_secret = "api-dotenv"

[environments.prod.secrets]
MONGODB_URL = "mongodb-url"
SECRET_KEY = "secret-key"
"""

BUILD = """\
steps:
  - id: build
    name: gcr.io/cloud-builders/docker
    dir: app
    env: ['DOCKER_BUILDKIT=1']
    args: [build, -t, europe-west1-docker.pkg.dev/p/apps/api, .]
"""

DOCKERFILE = """\
FROM python:3.11-slim
WORKDIR /srv
COPY requirements.txt ./
RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt
COPY main.py settings.py ./
CMD ["sh", "-c", "uvicorn main:app --host 0.0.0.0 --port $PORT"]
"""

SETTINGS = """\
from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    mongodb_url: str
    secret_key: str
    feature_flags: str = ""
"""

GOOD = {
    "cloudbuild.yaml": BUILD,
    "app/Dockerfile": DOCKERFILE,
    "app/.dockerignore": ".env\n*.md\n",
    "app/requirements.txt": "fastapi\nuvicorn\npydantic-settings\n",
    "app/main.py": "from fastapi import FastAPI\n\napp = FastAPI()\n",
    "app/settings.py": SETTINGS,
    "app/README.md": "the app\n",
}


Planted = Callable[..., tuple[int, str]]


@pytest.fixture
def planted(gcp: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Planted:
    """`planted(changes, config=(old, new))`: a repository of GOOD with `changes` (None
    deletes a file), the config aimed at it (`old` replaced by `new`), every secret it
    names present; returns `deployer check prod`'s (exit code, output)."""
    project = f"lint-{uuid.uuid4().hex[:10]}"
    writer = SecretManagerWriter(google_client(secretmanager_v1.SecretManagerServiceClient))
    for secret_id, value in (
        ("mongodb-url", b"mongodb://db.invalid:27017/app"),
        ("secret-key", b"not-a-real-key-but-long-enough"),
        ("api-dotenv", b'FEATURE_FLAGS="a,b"\n'),
    ):
        writer.create(project, secret_id, {})
        writer.add_version(project, secret_id, value)

    def run(changes: dict[str, str | None], config: tuple[str, str] = ("", "")) -> tuple[int, str]:
        repo = tmp_path / f"repo-{uuid.uuid4().hex[:6]}"
        files = {**GOOD, **changes}
        new_repository(repo, {name: text for name, text in files.items() if text is not None})
        path = tmp_path / "deployer.toml"
        text = CONFIG.format(project=project, region=REGION, git=json.dumps(str(repo)))
        path.write_text(text.replace(*config) if config[0] else text, encoding="utf-8")
        os.environ["DEPLOYER_CONFIG"] = str(path)
        code = cli.main(["check", "prod"])
        return code, capsys.readouterr().out

    return run


def line(out: str, status: str, subject: str) -> str:
    match = re.search(rf"^  {re.escape(status)} +{re.escape(subject)}: .*$", out, re.MULTILINE)
    assert match, f"no `{status} {subject}` line in:\n{out}"
    return match.group(0)


def test_the_good_app_passes_every_lint(planted: Planted) -> None:
    code, out = planted({})
    assert code == 0, out
    said = line(out, "ok", "dockerfile app/Dockerfile")
    assert 'step "build" (steps[0]) builds it with BuildKit' in said
    assert "3 context sources present" in said
    assert "MONGODB_URL, SECRET_KEY" in line(out, "ok", "required variables")
    assert "listens on $PORT" in line(out, "ok", "port")


def test_buildkit_syntax_without_buildkit_fails_with_the_fix(planted: Planted) -> None:
    code, out = planted({"cloudbuild.yaml": BUILD.replace("    env: ['DOCKER_BUILDKIT=1']\n", "")})
    assert code == 1
    said = line(out, "FAIL", "dockerfile app/Dockerfile")
    assert "line 4 (RUN --mount)" in said
    assert "the --mount option requires BuildKit" in said
    assert (
        "fix: in cloudbuild.yaml, add `env: ['DOCKER_BUILDKIT=1']` to step \"build\" (steps[0])"
        in said
    )

    code, out = planted(
        {"cloudbuild.yaml": BUILD.replace("DOCKER_BUILDKIT=1", "DOCKER_BUILDKIT=0")}
    )
    assert code == 1
    said = line(out, "FAIL", "dockerfile app/Dockerfile")
    assert 'change DOCKER_BUILDKIT=0 to DOCKER_BUILDKIT=1 in the env of step "build"' in said

    # buildx always builds with BuildKit.
    buildx = BUILD.replace("    env: ['DOCKER_BUILDKIT=1']\n", "").replace(
        "[build,", "[buildx, build,"
    )
    code, out = planted({"cloudbuild.yaml": buildx})
    assert code == 0, out


def test_a_copy_source_excluded_or_missing_fails_naming_the_line(planted: Planted) -> None:
    dockerfile = DOCKERFILE.replace(
        "COPY main.py settings.py ./\n",
        "COPY main.py settings.py README.md ./\nCOPY *.lock ./\n"
        "RUN --mount=type=bind,source=constraints.txt,target=/c.txt true\n"
        "COPY --from=python:3.11 /usr/local/bin/python3 /opt/\n",
    )
    code, out = planted({"app/Dockerfile": dockerfile})
    assert code == 1
    failures = re.findall(r"^  FAIL +dockerfile app/Dockerfile: (.*)$", out, re.MULTILINE)
    excluded = next(f for f in failures if f.startswith("line 5 COPY README.md"))
    assert "excluded from the build context app/ by .dockerignore line 2 (*.md)" in excluded
    assert "add !README.md after it" in excluded
    assert any(f.startswith("line 6 COPY *.lock: the pattern matches no file") for f in failures)
    assert any(
        f.startswith("line 7 RUN constraints.txt: constraints.txt is not in the build context")
        for f in failures
    )
    assert not [f for f in failures if "python3" in f]  # --from= reads no context file
    assert len(failures) == 3


def test_an_installed_project_whose_readme_or_license_is_absent_fails(planted: Planted) -> None:
    pyproject = (
        '[project]\nname = "app"\nversion = "1"\nreadme = "README.md"\n'
        'license-files = ["LICEN[CS]E*"]\n'
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    )
    # pip install . with README.md never copied, and no license file at all.
    dockerfile = DOCKERFILE.replace(
        "COPY main.py settings.py ./\n",
        "COPY main.py settings.py pyproject.toml ./\nRUN pip install .\n",
    )
    code, out = planted(
        {
            "app/Dockerfile": dockerfile,
            "app/pyproject.toml": pyproject,
            "app/.dockerignore": ".env\n",
        }
    )
    assert code == 1
    failures = re.findall(r"^  FAIL +dockerfile app/Dockerfile: (.*)$", out, re.MULTILINE)
    readme = next(f for f in failures if 'readme = "README.md"' in f)
    assert readme.startswith("line 6 `pip install` installs the project of pyproject.toml")
    assert "README.md is not copied before that line" in readme
    assert any(
        'license-files = "LICEN[CS]E*"' in f and "not in the build context" in f for f in failures
    )

    # The seed's case: uv installs the project, and .dockerignore drops README.md.
    uv = (
        "FROM python:3.11-slim\nCOPY --from=ghcr.io/astral-sh/uv:0.5 /uv /bin/\nWORKDIR /app\n"
        "COPY . .\nRUN --mount=type=cache,target=/root/.cache/uv uv sync --no-dev\n"
        'CMD ["sh", "-c", "uvicorn main:app --port $PORT"]\n'
    )
    code, out = planted(
        {
            "app/Dockerfile": uv,
            "app/pyproject.toml": pyproject.replace('license-files = ["LICEN[CS]E*"]\n', ""),
            "app/requirements.txt": None,
        }
    )
    assert code == 1
    said = line(out, "FAIL", "dockerfile app/Dockerfile")
    assert "line 5 `uv sync` installs the project of pyproject.toml" in said
    assert "README.md is excluded by .dockerignore line 2 (*.md)" in said
    # Without the project (dependencies only), nothing is built: nothing to fail.
    code, out = planted(
        {
            "app/Dockerfile": uv.replace("--no-dev", "--no-dev --no-install-project"),
            "app/pyproject.toml": pyproject.replace('license-files = ["LICEN[CS]E*"]\n', ""),
            "app/requirements.txt": None,
        }
    )
    assert code == 0, out


def test_required_settings_not_provided_fail_naming_them(planted: Planted) -> None:
    settings = """\
from typing import Optional

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APP_")
    mongodb_url: str = Field(validation_alias=AliasChoices("MONGODB_URL", "MONGO_URI"))
    secret_key: str = Field(alias="secret_key")


class Settings(Base):
    redis_url: Optional[str]
    sentry_dsn: str | None = None
    first_superuser: str = Field(...)
    log_level: str = "info"
"""
    code, out = planted({"app/settings.py": settings})
    assert code == 1
    said = line(out, "FAIL", "required variables")
    assert said.split(": ", 1)[1].startswith(
        "APP_REDIS_URL (app/settings.py: Settings.redis_url), APP_FIRST_SUPERUSER "
    )
    assert "are required by the app and not set by" in said
    # Provided by the environment's env: pydantic-settings matches names in any case.
    given = 'LOG_LEVEL = "info", APP_REDIS_URL = "redis://r", APP_FIRST_SUPERUSER = "a@b.c"'
    code, out = planted({"app/settings.py": settings}, ('LOG_LEVEL = "info"', given))
    assert code == 0, out
    assert "all 4 that its settings classes require are set" in line(
        out, "ok", "required variables"
    )

    # No settings class: the .env.example in the build context lists what is needed.
    code, out = planted(
        {
            "app/settings.py": "import os\nURL = os.environ['MONGODB_URL']\n",
            "app/.env.example": "MONGODB_URL=\nSTRIPE_KEY=\n# a comment\nexport SECRET_KEY=x\n",
        }
    )
    assert code == 1
    said = line(out, "FAIL", "required variables")
    assert "STRIPE_KEY (" in said and "is required by the app" in said
    assert "MONGODB_URL" not in said.split(" is required")[0]


def test_a_command_on_a_fixed_other_port_or_never_reading_port_is_warned_of(
    planted: Planted,
) -> None:
    fixed = DOCKERFILE.replace(
        'CMD ["sh", "-c", "uvicorn main:app --host 0.0.0.0 --port $PORT"]',
        'CMD ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8000"]',
    )
    code, out = planted({"app/Dockerfile": fixed})
    assert code == 0, out  # a warning, not a failure
    said = line(out, "warn", "port")
    assert "listens on 8000, but the container port is 8080" in said

    never = DOCKERFILE.replace(
        'CMD ["sh", "-c", "uvicorn main:app --host 0.0.0.0 --port $PORT"]',
        'CMD ["python", "main.py"]',
    )
    code, out = planted({"app/Dockerfile": never})
    assert code == 0, out
    assert "never reads $PORT" in line(out, "warn", "port")

    literal = DOCKERFILE.replace(
        'CMD ["sh", "-c", "uvicorn main:app --host 0.0.0.0 --port $PORT"]',
        'CMD ["uvicorn", "main:app", "--port", "$PORT"]',
    )
    code, out = planted({"app/Dockerfile": literal})
    assert 'passed as the text "$PORT"' in line(out, "warn", "port")


def test_a_redirected_health_path_is_named(
    demo_cloud: tuple[Demo, Sandbox], capsys: pytest.CaptureFixture[str]
) -> None:
    demo, _ = demo_cloud
    # FastAPI answers /health/ with a redirect to /health (redirect_slashes).
    demo.config.path.write_text(
        demo.config.path.read_text().replace('path = "/health"', 'path = "/health/"')
    )
    assert cli.main(["check", "prod"]) == 0
    said = line(capsys.readouterr().out, "ok", "health /health/")
    assert f"answers 200 on {demo.service_uri} after a redirect to " in said
    assert re.search(r"after a redirect to \S+/health \(followed", said)
