"""Where the config's text comes from, and how its problems are told.

DEPLOYER_CONFIG names a file, or a Secret Manager secret: then the function and
the worker job read the same text, and the deployer's image holds nothing of a
team's.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from deployer.errors import ConfigError

CONFIG_ENV = "DEPLOYER_CONFIG"

_CONFIG_SECRET = re.compile(
    r"^projects/(?P<project>[^/]+)/secrets/(?P<secret>[A-Za-z0-9_-]{1,255})"
    r"(?:/versions/(?P<version>latest|[1-9][0-9]*))?$"
)


@dataclass(frozen=True)
class ConfigText:
    text: str
    origin: Path  # the file, or the secret version's full name
    folder: Path | None  # what relative paths are taken from (none for a secret)


def read(path: Path | str | None) -> ConfigText:
    """The config's text from `path`, or from DEPLOYER_CONFIG; ConfigError naming the fix."""
    if path is None:
        path = os.environ.get(CONFIG_ENV)
        if not path:
            raise ConfigError(f"{CONFIG_ENV} is not set; point it at your deployer.toml")
    secret = _CONFIG_SECRET.match(str(path))
    if secret is not None:
        text, origin = _read_secret(
            secret["project"], secret["secret"], secret["version"] or "latest"
        )
        return ConfigText(text, Path(origin), folder=None)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; set {CONFIG_ENV} to your deployer.toml") from None
    return ConfigText(text, path, folder=path.parent)


def _read_secret(project: str, secret: str, version: str) -> tuple[str, str]:
    """(text, the version's full name) of a config kept in Secret Manager."""
    # Google's clients load lazily: a config read from a file needs none of them.
    from google.cloud import secretmanager_v1

    from deployer.adapters.google_clients import google_client
    from deployer.adapters.secret_manager import SecretManagerSecrets
    from deployer.config import SecretRef
    from deployer.pipeline.ports import SecretProblem

    client = google_client(secretmanager_v1.SecretManagerServiceClient)
    try:
        pinned, text = SecretManagerSecrets(client).read_text(
            project, SecretRef(secret=secret, version=version)
        )
    except SecretProblem as problem:
        raise ConfigError(f"{CONFIG_ENV}: {problem}") from None
    finally:
        client.transport.close()  # type: ignore[no-untyped-call]
    return text, f"projects/{project}/secrets/{secret}/versions/{pinned.version}"


def _looks_remote(location: str) -> bool:
    """A URL (scheme://...) or scp-like `user@host:path`, as git understands them."""
    return "://" in location or re.match(r"^[\w.-]+@[\w.-]+:", location) is not None


def anchor_relative_paths(data: dict[str, Any], folder: Path) -> None:
    """Make relative local git sources relative to the config's folder."""
    services = data.get("services")
    if not isinstance(services, dict):
        return
    for service in services.values():
        if not isinstance(service, dict):
            continue
        source = service.get("source")
        git = source.get("git") if isinstance(source, dict) else None
        if isinstance(source, dict) and isinstance(git, str) and not _looks_remote(git):
            source["git"] = str((folder / git).resolve())


def describe(error: ValidationError) -> str:
    """One line per problem: the dotted field and what is wrong with it."""
    lines = []
    for problem in error.errors(include_url=False):
        field = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field; check its spelling against deployer.example.toml"
        elif problem["type"] == "missing":
            message = "required field missing"
        lines.append(f"{field}: {message}" if field else message)
    return "; ".join(lines)
