"""Seeds the sandbox with the demo: secrets, then a first deploy of this repository's HEAD.

The first revision of `backend` is deployed by the deployer's own pipeline
(preflight, Cloud Build, Cloud Run, health check) over the sandbox's gRPC, so
a seeded sandbox is itself an end-to-end check of the product.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from google.cloud import secretmanager_v1
from google.cloud.devtools import cloudbuild_v2

from deployer.adapters.google_clients import google_client
from deployer.adapters.secret_writer import SecretManagerWriter
from deployer.config import Config, load_config
from deployer.engine import Engine, default_platform
from deployer.pipeline.events import ignore
from deployer.pipeline.record import State
from deployer.store.sqlite import SqliteStore
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.slack import sink as slack_sink

ENVIRONMENT = "prod"
EXAMPLE_CONFIG = "deployer.example.toml"
# projects/P/locations/L/connections/C/repositories/R
_CONNECTED = re.compile(
    r"^projects/([^/]+)/locations/([^/]+)/connections/([^/]+)/repositories/([^/]+)$"
)
SLACK_TEAM = slack_sink.TEAM_ID
SLACK_USER_NAME = "demo.user"
SLACK_CHANNEL_NAME = "deploys"
# Beside the deploy channel, two the bot has not joined: one public (it may post
# there with chat:write.public, nothing more) and one private (it cannot see it).
SLACK_UNJOINED_PUBLIC = ("C0GENERAL0", "general")
SLACK_UNJOINED_PRIVATE = ("G0PRIVATE0", "leads")


class DemoError(RuntimeError):
    """The demo could not be seeded; the message says what to fix."""


@dataclass(frozen=True)
class Demo:
    config: Config
    project: str
    region: str
    service: str
    service_uri: str
    revision: str
    commit: str
    image: str
    slack_channel: str
    slack_user: str
    github_repository: str
    store: str  # DEPLOYER_STORE of the seed deploy
    slack_unjoined_public: str  # a public channel the bot is not in
    slack_unjoined_private: str  # a private channel the bot is not in
    repository: str  # the connected repository the demo builds from
    repository_remote: str  # its remote_uri: the sandbox's git server, no anonymous reads


def repository_root(start: Path) -> Path:
    """The git checkout the demo builds from (the one the sandbox runs in)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=start,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (subprocess.CalledProcessError, FileNotFoundError, subprocess.TimeoutExpired) as error:
        raise DemoError(
            f"{start} is not inside a git checkout; the demo builds service/ from this "
            "repository's history (clone it with git, or pass --no-demo)"
        ) from error
    return Path(out.stdout.strip())


def seed_demo(sandbox: Sandbox, repo: Path, workdir: Path) -> Demo:
    """Create the demo's secrets, Slack people and channels, then deploy HEAD as the first revision."""
    path = workdir / "deployer.toml"
    path.write_text((repo / EXAMPLE_CONFIG).read_text(encoding="utf-8"))
    config = load_config(path)
    settings = config.environment(ENVIRONMENT)
    service = config.target(ENVIRONMENT)
    host = sandbox.grpc_address
    connected = connect_repository(sandbox, service.source.connected_repository, repo)
    _seed_secrets(host, service.project, [ref.secret for ref in settings.secrets.values()])
    channel = settings.allow.slack_channels[0]
    user = settings.allow.slack_users[0]
    sandbox.http.sink.add_channel(channel, SLACK_CHANNEL_NAME)
    sandbox.http.sink.add_channel(*SLACK_UNJOINED_PUBLIC, is_member=False)
    sandbox.http.sink.add_channel(*SLACK_UNJOINED_PRIVATE, is_private=True, is_member=False)
    sandbox.http.sink.add_user(user, SLACK_USER_NAME)

    store = workdir / "state.db"
    engine = Engine(config, default_platform(host), SqliteStore(store))
    record = engine.deploy(engine.new_deploy(ENVIRONMENT, "HEAD", "sandbox:seed"), ignore)
    if record.state != State.SUCCEEDED or not record.commit or not record.image:
        raise DemoError(f"the demo's first deploy did not succeed: {record.error}")
    state = default_platform(host).services.current(service)
    assert state is not None
    repositories = config.releases.repositories if config.releases else ["acme/content-api"]
    return Demo(
        config=config,
        project=service.project,
        region=service.region,
        service=service.service,
        service_uri=state.uri,
        revision=record.candidate_revision or "",
        commit=record.commit,
        image=record.image,
        slack_channel=channel,
        slack_user=user,
        github_repository=repositories[0],
        store=f"sqlite:///{store}",
        slack_unjoined_public=SLACK_UNJOINED_PUBLIC[0],
        slack_unjoined_private=SLACK_UNJOINED_PRIVATE[0],
        repository=str(connected.name),
        repository_remote=str(connected.remote_uri),
    )


def connect_repository(sandbox: Sandbox, name: str | None, repo: Path) -> cloudbuild_v2.Repository:
    """Serve this checkout as the connected repository the demo's config names."""
    match = _CONNECTED.match(name or "")
    if match is None:
        raise DemoError(f"{EXAMPLE_CONFIG} no longer builds from a connected repository")
    project, location, connection, repository = match.groups()
    return sandbox.repositories.connect(project, location, connection, repository, repo)


def _seed_secrets(host: str, project: str, secret_ids: list[str]) -> None:
    writer = SecretManagerWriter(google_client(secretmanager_v1.SecretManagerServiceClient, host))
    values = {
        "mongodb-url": b"mongodb://demo:demo@127.0.0.1:27017/content",
        # Fresh per sandbox: nothing real, and never printed.
        "secret-key": secrets.token_urlsafe(32).encode(),
    }
    for secret_id in secret_ids:
        writer.create(project, secret_id, {})
        writer.add_version(
            project, secret_id, values.get(secret_id, secrets.token_urlsafe(16).encode())
        )
