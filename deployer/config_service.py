"""A service's tables in `deployer.toml`: where its code comes from, how it is built, and
what a healthy candidate answers (`[services.X]`, `.source`, `.health`)."""

from __future__ import annotations

import re

from pydantic import Field, JsonValue, field_validator, model_validator

from deployer.config_environment import fits_cloud_run
from deployer.config_fields import (
    CONNECTED_REPOSITORY,
    REPOSITORY_PATH,
    Frozen,
    ProjectId,
    Region,
    Repository,
    Seconds,
    ServiceKey,
)


class Source(Frozen):
    """Where builds take the code from: exactly one of git, connected_repository, trigger."""

    git: str | None = None
    connected_repository: str | None = None
    trigger: str | None = None
    dir: str = ""

    @field_validator("connected_repository")
    @classmethod
    def _repository_name(cls, value: str | None) -> str | None:
        if value is not None and not CONNECTED_REPOSITORY.match(value):
            raise ValueError(
                f"{value!r} is not a connected repository; write "
                "projects/P/locations/L/connections/C/repositories/R (Cloud Build 2nd gen)"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        given = [k for k in ("git", "connected_repository", "trigger") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of `git` (a repository URL), `connected_repository` "
                "(projects/P/locations/L/connections/C/repositories/R) or `trigger` (a build trigger id)"
            )
        return self


def _healthy() -> dict[str, JsonValue]:
    return {"status": "healthy"}


class HealthCheck(Frozen):
    """What a healthy candidate answers, probed at its tag URL before it gets traffic."""

    path: str = Field("/health", pattern=r"^/[^\s]*$")
    expect_status: int = Field(200, ge=100, le=599)
    # Every key here must appear in the JSON answer with this value.
    expect_json: dict[str, JsonValue] = Field(default_factory=_healthy)
    # Dotted path in the JSON answer that must equal the commit just built; "" to skip.
    version_field: str = "version.commit"
    consecutive: int = Field(3, ge=1, le=100)
    # This many bad answers in a row fail the check before its timeout.
    failures: int = Field(3, ge=1, le=100)
    interval: Seconds = 0.5
    request_timeout: Seconds = 5.0


class ServiceConfig(Frozen):
    """One Cloud Run service the deployer builds and rolls out."""

    project: ProjectId
    region: Region
    service: ServiceKey
    source: Source
    # A path in the repository, from its root, read at the commit being deployed: the
    # steps that build a commit are the ones committed with it. (A trigger brings its own.)
    build_config: str = "cloudbuild.yaml"
    image: str = Field(
        pattern=r"^[a-z0-9-]+-docker\.pkg\.dev/[a-z0-9-]+/[a-z0-9._-]+/[a-z0-9._/-]+$"
    )
    substitutions: dict[str, str] = Field(default_factory=dict)
    health: HealthCheck = Field(default_factory=HealthCheck)
    # Where GitHub Deployments go (`[github]`); derived from a github.com `source.git`
    # when omitted. A connected repository or trigger names its repository here.
    github_repository: Repository | None = None

    @field_validator("build_config")
    @classmethod
    def _path_in_repository(cls, value: str) -> str:
        parts = value.split("/")
        if not REPOSITORY_PATH.match(value) or ".." in parts or "." in parts or "" in parts:
            raise ValueError(
                f"{value!r} is not a path in the repository; build_config is read from the "
                "repository at the deployed commit, from its root (e.g. cloudbuild.yaml)"
            )
        return value

    @field_validator("service")
    @classmethod
    def _names_fit_cloud_run(cls, service: str) -> str:
        return fits_cloud_run(service)

    @field_validator("substitutions")
    @classmethod
    def _user_substitutions(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"_[A-Z0-9_]+", key):
                raise ValueError(f"substitution {key!r} must match ^_[A-Z0-9_]+$ (e.g. _REGION)")
        return value
