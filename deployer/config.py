"""`deployer.toml`: one validated, frozen configuration, read once at start-up.

The file is found at `DEPLOYER_CONFIG` (or given explicitly). Nothing else is
merged in: the file is the whole truth, so what it says is what runs. Errors
name the file, the field and the fix. See `deployer.example.toml` for every
field, commented.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from deployer import config_text
from deployer.config_analysis import Analysis as Analysis
from deployer.config_analysis import Hook as Hook
from deployer.config_analysis import Hooks as Hooks
from deployer.config_environment import (
    Access as Access,
)
from deployer.config_environment import (
    Approval as Approval,
)
from deployer.config_environment import (
    DeployWindows as DeployWindows,
)
from deployer.config_environment import (
    Rollout as Rollout,
)
from deployer.config_environment import (
    RunSettings as RunSettings,
)
from deployer.config_environment import (
    Timeouts as Timeouts,
)
from deployer.config_environment import (
    fits_cloud_run as fits_cloud_run,
)
from deployer.config_fields import (
    RESERVED_ENV as RESERVED_ENV,
)
from deployer.config_fields import (
    RESERVED_ENV_PREFIXES as RESERVED_ENV_PREFIXES,
)
from deployer.config_fields import (
    SECRET_REF,
    EnvironmentName,
    EnvName,
    Frozen,
    ProjectId,
    Region,
    Repository,
    Seconds,
    ServiceKey,
    SlackChannel,
)
from deployer.config_github import GitHub
from deployer.config_service import HealthCheck as HealthCheck
from deployer.config_service import ServiceConfig as ServiceConfig
from deployer.config_service import Source as Source
from deployer.errors import ConfigError

CONFIG_ENV = config_text.CONFIG_ENV


class SecretRef(Frozen):
    """A Secret Manager secret in the project the environment deploys to (`Config.target`),
    at a version or `latest`."""

    secret: str
    version: str = "latest"

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        match = SECRET_REF.match(text)
        if match is None:
            raise ValueError(
                f"{text!r} is not a secret reference; write SECRET_ID or SECRET_ID:VERSION "
                "(VERSION a number or `latest`)"
            )
        return cls(secret=match["secret"], version=match["version"] or "latest")

    def __str__(self) -> str:
        return f"{self.secret}:{self.version}"


def _parse_secret_ref(value: Any) -> Any:
    return SecretRef.parse(value) if isinstance(value, str) else value


# In the file a reference is a string, "secret-id" or "secret-id:7".
SecretRefText = Annotated[SecretRef, BeforeValidator(_parse_secret_ref)]


class Environment(Frozen):
    """A deploy target (dev, staging, prod ...): a service plus how it runs there."""

    service: str
    # Where its revisions run, when not where the service's own fields say (staging often
    # lives in another project): `Config.target` applies them. Builds stay the service's.
    cloud_run_service: ServiceKey | None = None
    project: ProjectId | None = None
    region: Region | None = None
    env: dict[EnvName, str] = Field(default_factory=dict)
    secrets: dict[EnvName, SecretRefText] = Field(default_factory=dict)
    env_from_secret: SecretRefText | None = None
    run: RunSettings = Field(default_factory=RunSettings)
    rollout: Rollout = Field(default_factory=Rollout)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    allow: Access = Field(default_factory=Access)
    channel: SlackChannel | None = None
    windows: DeployWindows | None = None  # when deploys may start; None: any time
    # The environment whose verified image this one takes (`/deploy promote FROM ENV`).
    promote_from: EnvironmentName | None = None
    approval: Approval | None = None  # who must approve before traffic moves; None: nobody
    # Request metrics that gate each traffic step, and the watch after; None: probes only.
    analysis: Analysis | None = None
    hooks: Hooks = Field(default_factory=Hooks)  # commands run from the candidate's image

    @field_validator("cloud_run_service")
    @classmethod
    def _names_fit_cloud_run(cls, service: str | None) -> str | None:
        return None if service is None else fits_cloud_run(service)

    @model_validator(mode="after")
    def _names_allowed(self) -> Environment:
        for name in [*self.env, *self.secrets]:
            if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(f"{name} is set by Cloud Run itself; remove it from env/secrets")
        both = sorted(set(self.env) & set(self.secrets))
        if both:
            raise ValueError(f"{', '.join(both)} set both in env and secrets; keep one")
        return self


class Releases(Frozen):
    """Which GitHub releases deploy, and where."""

    repositories: list[Repository]
    environment: str
    prerelease_environment: str | None = None
    channel: SlackChannel | None = None


class DeployerSettings(Frozen):
    """How the deployer itself runs: leases, the lock queue, retries of lost workers."""

    # Seconds a worker's hold on its deploy lock lasts without a heartbeat; a worker
    # silent for longer is presumed dead and its deploy resumed (or abandoned).
    lease: Seconds = 60
    # Seconds a deploy may wait in an environment's queue (`--queue`) before it gives up.
    queue_timeout: Seconds = 3600
    # Runs a deploy may have; a deploy whose worker was lost this often is abandoned.
    max_attempts: int = Field(3, ge=1, le=20)
    # Seconds the deployer keeps trying to tell Slack something before dropping it.
    outbox_deadline: Seconds = 24 * 3600
    # Seconds between two sweeps run by `deployer serve` (and the sandbox).
    sweep_interval: Seconds = 60


# Words of the `/deploy` grammar; no environment may be called one of them.
COMMAND_WORDS = (
    "help",
    "status",
    "history",
    "rollback",
    "lock",
    "unlock",
    "promote",
    "approve",
    "reject",
)


class Config(Frozen):
    """The whole configuration."""

    services: dict[ServiceKey, ServiceConfig]
    environments: dict[EnvironmentName, Environment]
    releases: Releases | None = None
    deployer: DeployerSettings = Field(default_factory=DeployerSettings)
    github: GitHub | None = None  # GitHub Deployments; None: none are created
    path: Path = Field(default=Path("deployer.toml"), exclude=True)

    @model_validator(mode="after")
    def _references_resolve(self) -> Config:
        for name in self.environments:
            if name in COMMAND_WORDS:
                raise ValueError(f"environment {name!r} clashes with `/deploy {name}`; rename it")
        for name, environment in self.environments.items():
            if environment.service not in self.services:
                raise ValueError(
                    f"environments.{name}.service is {environment.service!r}, but services has "
                    f"only {', '.join(sorted(self.services)) or 'nothing'}"
                )
        self._one_environment_per_cloud_run_service()
        self._promotions_resolve()
        if self.releases is not None:
            for target in (self.releases.environment, self.releases.prerelease_environment):
                if target is not None and target not in self.environments:
                    raise ValueError(
                        f"releases maps to environment {target!r}, which is not defined"
                    )
        return self

    def environment(self, name: str) -> Environment:
        """The environment called `name`; ConfigError naming the known ones otherwise."""
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments))
            raise ConfigError(f"unknown environment {name!r}; known: {known}") from None

    def _one_environment_per_cloud_run_service(self) -> None:
        """Two environments deploying one Cloud Run service would undo each other's
        traffic and share its candidate tag: refused, naming both."""
        seen: dict[str, str] = {}
        for name in self.environments:
            where = run_service_name(self.target(name))
            if where in seen:
                raise ValueError(
                    f"environments.{seen[where]} and environments.{name} would both deploy "
                    f"Cloud Run service {where}; give one its own `cloud_run_service` "
                    "(or `project` / `region`)"
                )
            seen[where] = name

    def _promotions_resolve(self) -> None:
        """`promote_from` names another environment of the same service: its image was
        built from that service's source and build config, so only there is it the same
        build."""
        for name, environment in self.environments.items():
            source = environment.promote_from
            if source is None:
                continue
            if source == name:
                raise ValueError(f"environments.{name}.promote_from names itself")
            if source not in self.environments:
                raise ValueError(
                    f"environments.{name}.promote_from is {source!r}, which is not defined; "
                    f"known: {', '.join(sorted(self.environments))}"
                )
            if self.environments[source].service != environment.service:
                raise ValueError(
                    f"environments.{name}.promote_from is {source!r}, which deploys service "
                    f"{self.environments[source].service!r}, not {environment.service!r}: "
                    "only an image of the same service can be promoted"
                )

    def promotes_to(self, environment: str) -> list[str]:
        """The environments that take `environment`'s verified image (`promote_from`)."""
        return sorted(
            name
            for name, settings in self.environments.items()
            if settings.promote_from == environment
        )

    def service_of(self, environment: str) -> ServiceConfig:
        """The `[services.X]` entry `environment` deploys, as written: where its builds run."""
        return self.services[self.environment(environment).service]

    def target(self, environment: str) -> ServiceConfig:
        """Where `environment` deploys: its service with the environment's own Cloud Run
        service, project and region applied. Every call to Cloud Run, Secret Manager,
        Cloud Logging (revision logs) and IAM about the environment uses this one; the
        image, source, build config and health check stay the service's."""
        settings = self.environment(environment)
        overrides = {
            "service": settings.cloud_run_service,
            "project": settings.project,
            "region": settings.region,
        }
        own = {key: value for key, value in overrides.items() if value is not None}
        return self.services[settings.service].model_copy(update=own)


def run_service_name(service: ServiceConfig) -> str:
    """The Cloud Run service's full name, projects/P/locations/R/services/S."""
    return f"projects/{service.project}/locations/{service.region}/services/{service.service}"


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate the configuration at `path`, or at `DEPLOYER_CONFIG`.

    A `projects/P/secrets/S[/versions/V]` name is read from Secret Manager (default
    `latest`); its relative paths, having no folder, stay as written.
    """
    found = config_text.read(path)
    return parse_config(found.text, found.origin, found.folder)


def parse_config(text: str, origin: Path, folder: Path | None) -> Config:
    """Validate config text; `origin` names it in errors, `folder` anchors relative paths."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{origin}: not valid TOML: {error}") from None
    if folder is not None:
        config_text.anchor_relative_paths(data, folder)
    try:
        return Config.model_validate({**data, "path": origin})
    except ValidationError as error:
        raise ConfigError(f"{origin}: " + config_text.describe(error)) from None
