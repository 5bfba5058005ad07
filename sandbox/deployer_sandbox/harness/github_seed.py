"""The sandbox's GitHub for a deployer config: its repositories and a token it can read.

What production has and the sandbox must stand in for: each service's repository on
GitHub (here, a local git repository registered under the config's `owner/name`), and
a token in Secret Manager at `[github] token_secret`, which the deployer reads over
gRPC as it would on Google Cloud. The token is never printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.cloud import secretmanager_v1

from deployer.adapters.google_clients import google_client
from deployer.adapters.secret_writer import SecretManagerWriter
from deployer.config import Config
from deployer.config_github import repository_of
from deployer_sandbox.harness.sandbox import Sandbox


def serve_github(sandbox: Sandbox, config: Config, repository: Path, token: str = "") -> str:
    """Register `repository` as the GitHub repository of every service of `config` that has
    one, and keep a working token where `[github] token_secret` says (in each service's
    project for a short reference); the token (`token`, or one issued now). Without a
    `[github]` table no secret is written."""
    github = sandbox.http.github
    for service in config.services.values():
        name = repository_of(service)
        if name is not None:
            github.register(name, repository)
    token = token or github.issue_token()
    if config.github is None:
        return token
    secret = config.github.token_secret
    projects = {secret.project} if secret.project else {s.project for s in config.services.values()}
    client: Any = google_client(secretmanager_v1.SecretManagerServiceClient, sandbox.grpc_address)
    try:
        writer = SecretManagerWriter(client)
        for project in sorted(projects):
            writer.create(project, secret.secret, {})
            writer.add_version(project, secret.secret, token.encode())
    finally:
        client.transport.close()
    return token
