"""Seeds the sandbox with the demo: secrets, then a first deploy of this repository's HEAD.

The demo config is `deployer.example.toml` as it stands: `staging` (Cloud Run service
`backend-staging`) and `prod` (service `backend`), prod promoted from staging and
approved by a second Slack user (`[environments.prod.approval]`). Its people:

    demo.slack_user       the only one allowed to deploy (staging and prod) and promote
    demo.slack_approver   prod's approver: may approve or reject, not deploy

The first revision of `backend` (prod) is deployed by the deployer's own pipeline
(preflight, Cloud Build, Cloud Run, health check) over the sandbox's gRPC, so a
seeded sandbox is itself an end-to-end check of the product. It stands for what
served before the team adopted the deployer: prod's approval and deploy windows do
not apply to it. Analysis intervals are shortened to DEMO_ANALYSIS_INTERVAL seconds:
the example's minute is Cloud Monitoring's grain, which the sandbox does not have. Staging starts empty; the demo's first `/deploy staging` creates it.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.cloud import secretmanager_v1
from google.cloud.devtools import cloudbuild_v2

from deployer.adapters.google_clients import google_client
from deployer.adapters.secret_writer import SecretManagerWriter
from deployer.config import Config, load_config
from deployer.engine import Engine, default_platform
from deployer.pipeline.events import ignore
from deployer.pipeline.record import State
from deployer.store.sqlite import SqliteStore
from deployer_sandbox.harness.github_seed import serve_github
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.slack import sink as slack_sink

ENVIRONMENT = "prod"
STAGING = "staging"
EXAMPLE_CONFIG = "deployer.example.toml"
# projects/P/locations/L/connections/C/repositories/R
_CONNECTED = re.compile(
    r"^projects/([^/]+)/locations/([^/]+)/connections/([^/]+)/repositories/([^/]+)$"
)
SLACK_TEAM = slack_sink.TEAM_ID
SLACK_USER_NAME = "demo.user"
SLACK_APPROVER_NAME = "demo.approver"
SLACK_CHANNEL_NAME = "deploys"
# Beside the deploy channel, two the bot has not joined: one public (it may post
# there with chat:write.public, nothing more) and one private (it cannot see it).
SLACK_UNJOINED_PUBLIC = ("C0GENERAL0", "general")
SLACK_UNJOINED_PRIVATE = ("G0PRIVATE0", "leads")


# Production's analysis interval is at least a minute (Monitoring counts per minute); the
# sandbox's Monitoring has no such grain, so the demo judges each step after a few seconds.
DEMO_ANALYSIS_INTERVAL = 3
_ANALYSIS_INTERVAL = re.compile(
    r"^(\[environments\.[a-z0-9-]+\.analysis\][^\[]*?^interval = )[0-9.]+", re.M | re.S
)


def shorten_analysis(text: str) -> str:
    """The example config with each `[environments.X.analysis] interval` set to
    DEMO_ANALYSIS_INTERVAL seconds, everything else as written."""
    return _ANALYSIS_INTERVAL.sub(rf"\g<1>{DEMO_ANALYSIS_INTERVAL}", text)


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
    slack_approver: str  # approves prod's deploys; may deploy nothing
    staging_service: str  # staging's Cloud Run service; nothing runs there until deployed
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
    path.write_text(shorten_analysis((repo / EXAMPLE_CONFIG).read_text(encoding="utf-8")))
    config = load_config(path)
    settings = config.environment(ENVIRONMENT)
    service = config.target(ENVIRONMENT)
    host = sandbox.grpc_address
    connected = connect_repository(sandbox, service.source.connected_repository, repo)
    # GitHub Deployments: the config's repository is this checkout; its token is in
    # Secret Manager, where `[github] token_secret` says.
    serve_github(sandbox, config, repo)
    for project, secret_ids in _secrets_by_project(config).items():
        _seed_secrets(host, project, secret_ids)
    channel = settings.allow.slack_channels[0]
    user = settings.allow.slack_users[0]
    approver = _approver(config)
    sandbox.http.sink.add_channel(channel, SLACK_CHANNEL_NAME)
    sandbox.http.sink.add_channel(*SLACK_UNJOINED_PUBLIC, is_member=False)
    sandbox.http.sink.add_channel(*SLACK_UNJOINED_PRIVATE, is_private=True, is_member=False)
    sandbox.http.sink.add_user(user, SLACK_USER_NAME)
    sandbox.http.sink.add_user(approver, SLACK_APPROVER_NAME)

    store = workdir / "state.db"
    engine = Engine(_before_the_deployer(config), default_platform(host), SqliteStore(store))
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
        slack_approver=approver,
        staging_service=config.target(STAGING).service,
        github_repository=repositories[0],
        store=f"sqlite:///{store}",
        slack_unjoined_public=SLACK_UNJOINED_PUBLIC[0],
        slack_unjoined_private=SLACK_UNJOINED_PRIVATE[0],
        repository=str(connected.name),
        repository_remote=str(connected.remote_uri),
    )


def _approver(config: Config) -> str:
    """The demo's second person: prod's approver, allowed to deploy nothing."""
    if (
        STAGING not in config.environments
        or config.environment(ENVIRONMENT).promote_from != STAGING
    ):
        raise DemoError(f"{EXAMPLE_CONFIG} no longer promotes {ENVIRONMENT} from {STAGING}")
    approval = config.environment(ENVIRONMENT).approval
    users = [who for who in approval.approvers if who[0] in "UW"] if approval else []
    if not users:
        raise DemoError(f"{EXAMPLE_CONFIG} no longer names a user who approves {ENVIRONMENT}")
    allowed = {who for env in config.environments.values() for who in env.allow.slack_users}
    if users[0] in allowed:
        raise DemoError(f"{EXAMPLE_CONFIG}: {ENVIRONMENT}'s approver {users[0]} may also deploy")
    return users[0]


def _before_the_deployer(config: Config) -> Config:
    """`config` as it was before the team adopted it, for the first revision: prod
    asked no approval and kept no deploy window (the seed must work any day)."""
    prod = config.environment(ENVIRONMENT).model_copy(update={"approval": None, "windows": None})
    environments: dict[str, Any] = {**config.environments, ENVIRONMENT: prod}
    return config.model_copy(update={"environments": environments})


def _secrets_by_project(config: Config) -> dict[str, list[str]]:
    """The secret ids each environment reads, by the project it reads them in."""
    found: dict[str, list[str]] = {}
    for name, settings in config.environments.items():
        ids = found.setdefault(config.target(name).project, [])
        ids += [ref.secret for ref in settings.secrets.values() if ref.secret not in ids]
    return found


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
