"""`[github]` in deployer.toml: GitHub's REST API, for the Deployments each deploy creates.

    [github]
    token_secret = "github-token"           # SECRET[:VERSION] in the service's project, or
                                            # projects/P/secrets/S[/versions/V]
    api_url = "https://api.github.com"      # GitHub Enterprise: https://HOST/api/v3

Which repository a service's Deployments go to:

    [services.X] github_repository = "owner/name"    wins (connected repositories, triggers)
    [services.X.source] git = "https://github.com/owner/name.git"   derived (also
                        git@github.com:owner/name.git, ssh://git@github.com/owner/name)
    anything else                                    none: that service creates no Deployments

Without a `[github]` table nothing is sent to GitHub. `DEPLOYER_GITHUB_API_URL`, when
set, wins over `api_url` (the sandbox points the deployer at its own GitHub with it).
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BeforeValidator, Field, field_validator

from deployer.config_fields import SECRET_REF, Frozen

if TYPE_CHECKING:
    from deployer.config import ServiceConfig

API_URL_ENV = "DEPLOYER_GITHUB_API_URL"
DEFAULT_API_URL = "https://api.github.com"

_FULL_SECRET = re.compile(
    r"^projects/(?P<project>[^/]+)/secrets/(?P<secret>[A-Za-z0-9_-]{1,255})"
    r"(?:/versions/(?P<version>latest|[1-9][0-9]*))?$"
)
# What `git clone` accepts for a github.com repository: https, ssh URL, scp-like ssh.
_GITHUB_REMOTE = re.compile(
    r"^(?:https?://(?:[^@/]+@)?github\.com/|ssh://git@github\.com/|git@github\.com:)"
    r"(?P<owner>[A-Za-z0-9-]+)/(?P<name>[A-Za-z0-9._-]+?)(?:\.git)?/?$",
    re.IGNORECASE,
)


class TokenSecret(Frozen):
    """Where the token lives: a secret at a version; `project` None means the project of the
    service being deployed (`[services.X] project`, where its builds run)."""

    project: str | None = None
    secret: str
    version: str = "latest"

    @classmethod
    def parse(cls, text: str) -> TokenSecret:
        full = _FULL_SECRET.match(text)
        if full is not None:
            return cls(
                project=full["project"], secret=full["secret"], version=full["version"] or "latest"
            )
        short = SECRET_REF.match(text)
        if short is None:
            raise ValueError(
                f"{text!r} is not a secret reference; write SECRET_ID[:VERSION] (in the "
                "service's project) or projects/P/secrets/S[/versions/V]"
            )
        return cls(project=None, secret=short["secret"], version=short["version"] or "latest")

    def name(self, service_project: str) -> str:
        """The secret version's full name, its short form resolved in `service_project`."""
        project = self.project or service_project
        return f"projects/{project}/secrets/{self.secret}/versions/{self.version}"

    def __str__(self) -> str:
        if self.project is None:
            return f"{self.secret}:{self.version}"
        return f"projects/{self.project}/secrets/{self.secret}/versions/{self.version}"


def _parse_token_secret(value: Any) -> Any:
    return TokenSecret.parse(value) if isinstance(value, str) else value


TokenSecretText = Annotated[TokenSecret, BeforeValidator(_parse_token_secret)]


class GitHub(Frozen):
    """GitHub's REST API: a Deployment per deploy, with its statuses (README: GitHub Deployments)."""

    # A token that may create deployments and their statuses: a fine-grained token or
    # GitHub App installation token with "Deployments: write", or a classic token with
    # `repo_deployment` (GitHub docs: "REST API endpoints for deployments").
    token_secret: TokenSecretText
    api_url: str = Field(DEFAULT_API_URL, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")

    @field_validator("api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    def effective_api_url(self) -> str:
        """`DEPLOYER_GITHUB_API_URL` when set, else `api_url`."""
        return (os.environ.get(API_URL_ENV) or self.api_url).rstrip("/")


def repository_of(service: ServiceConfig) -> str | None:
    """The `owner/name` a service's Deployments go to, or None (see the module's table)."""
    if service.github_repository:
        return service.github_repository
    found = _GITHUB_REMOTE.match(service.source.git or "")
    return f"{found['owner']}/{found['name']}" if found else None
