"""One test's own deployer world: a git repo, a project, secrets, a config, a serving service.

    World
    ├── repo/          a fresh git repository holding a copy of service/ and cloudbuild.yaml
    ├── deployer.toml  short timeouts; `reconfigure(...)` rewrites it with changes
    ├── state.db       the SQLite store
    ├── secrets        seeded through the Secret Manager client; values kept to prove they never leak
    └── first          the first deploy's record: the service serves it at 100 %

Everything goes through the real adapters and Google clients over the sandbox's
gRPC; the only in-process shortcut is `sandbox.faults`, the fault registry.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import run_v2, secretmanager_v1
from google.cloud.devtools import cloudbuild_v1

from deployer.adapters.google_clients import google_client
from deployer.adapters.secret_writer import SecretManagerWriter
from deployer.config import Config, load_config
from deployer.engine import Engine, default_platform
from deployer.front.thread_box import ThreadBox
from deployer.pipeline.events import Event, Listener, StageFinished, StageStarted
from deployer.pipeline.ports import Platform
from deployer.pipeline.record import DeployRecord, Stage, State
from deployer.store.protocol import Store
from deployer.store.sqlite import SqliteStore
from deployer.terminal import TerminalProgress
from tests.conftest import REGION
from tests.git_repos import git

ENVIRONMENT = "prod"
SERVICE_KEY = "backend"
_IGNORED = shutil.ignore_patterns(
    "__pycache__", ".venv", ".pytest_cache", ".ruff_cache", ".mypy_cache"
)


# --- TOML ------------------------------------------------------------------------------


def toml_value(value: Any) -> str:
    """`value` as a TOML value; nested dicts become inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """`{"services.backend": {...}}` as TOML tables; nested dicts become inline tables."""
    blocks = []
    for table, values in tables.items():
        lines = [f"[{table}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _merged(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# --- events ----------------------------------------------------------------------------


@dataclass
class Recorder:
    """A listener keeping every event, and the terminal's rendering of them."""

    events: list[Event] = field(default_factory=list)
    text: io.StringIO = field(default_factory=io.StringIO)

    def __post_init__(self) -> None:
        self._terminal = TerminalProgress(self.text)

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._terminal(event)

    def stages_started(self) -> list[Stage]:
        return [e.stage for e in self.events if isinstance(e, StageStarted)]

    def stages_finished(self) -> list[StageFinished]:
        return [e for e in self.events if isinstance(e, StageFinished)]


# --- the world -------------------------------------------------------------------------


@dataclass
class World:
    sandbox: Sandbox
    root: Path
    repo: Path
    project: str
    settings: dict[str, Any]  # the config as TOML tables, before rendering
    config_path: Path
    store_path: Path
    secret_values: dict[str, str]  # secret id -> value (never to be seen in any output)
    services: run_v2.ServicesClient
    revisions: run_v2.RevisionsClient
    builds: cloudbuild_v1.CloudBuildClient
    secret_manager: secretmanager_v1.SecretManagerServiceClient
    platform: Platform
    engine: Engine = field(init=False)
    first: DeployRecord = field(init=False)
    seen: list[str] = field(default_factory=list)  # every text output, checked for secrets

    # --- names ---

    @property
    def service_id(self) -> str:
        return str(self.settings[f"services.{SERVICE_KEY}"]["service"])

    @property
    def service_name(self) -> str:
        return f"projects/{self.project}/locations/{REGION}/services/{self.service_id}"

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.store_path}"

    @property
    def config(self) -> Config:
        return self.engine.config

    # --- configuration ---

    def reconfigure(
        self,
        service: Mapping[str, Any] | None = None,
        environment: Mapping[str, Any] | None = None,
        deployer: Mapping[str, Any] | None = None,
    ) -> Engine:
        """Rewrite deployer.toml with changes (None removes a key); the engine that reads it."""
        service_table, env_table = f"services.{SERVICE_KEY}", f"environments.{ENVIRONMENT}"
        self.settings = {
            **self.settings,
            service_table: _merged(self.settings[service_table], service or {}),
            env_table: _merged(self.settings[env_table], environment or {}),
            "deployer": _merged(self.settings.get("deployer", {}), deployer or {}),
        }
        self.config_path.write_text(to_toml(self.settings), encoding="utf-8")
        self.engine = Engine(load_config(self.config_path), self.platform, self.store())
        return self.engine

    def store(self) -> SqliteStore:
        return SqliteStore(self.store_path)

    # --- git ---

    def commit(self, message: str = "change") -> str:
        """A new commit in the repo (a file changes, so the tree does too); its SHA."""
        notes = self.repo / "NOTES.txt"
        with notes.open("a", encoding="utf-8") as out:
            out.write(f"{message} {uuid.uuid4().hex}\n")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", message)
        return git(self.repo, "rev-parse", "HEAD")

    def head(self) -> str:
        return git(self.repo, "rev-parse", "HEAD")

    # --- deploys ---

    def deploy(
        self,
        ref: str | None = None,
        requester: str = "cli:tester",
        engine: Engine | None = None,
        listener: Listener | None = None,
        dry_run: bool = False,
    ) -> tuple[DeployRecord, Recorder]:
        """Run a deploy to its end; the record and the events it emitted."""
        engine = engine or self.engine
        recorder = Recorder()

        def both(event: Event) -> None:
            recorder(event)
            if listener is not None:
                listener(event)

        try:
            record = engine.deploy(
                engine.new_deploy(ENVIRONMENT, ref, requester), both, dry_run=dry_run
            )
        finally:
            self.seen.append(recorder.text.getvalue())
        return record, recorder

    def note(self, text: str) -> str:
        """Remember `text` as output the secret check covers; returns it."""
        self.seen.append(text)
        return text

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        """Run `deployer ARGS` as a user would, with this world's config, store and sandbox:
        (exit code, stdout, stderr), both kept for the secret check."""
        from deployer.cli import main

        os.environ["DEPLOYER_CONFIG"] = str(self.config_path)
        os.environ["DEPLOYER_STORE"] = self.store_url
        os.environ["DEPLOYER_GCP_EMULATOR_HOST"] = self.sandbox.grpc_address
        code = main(list(args))
        captured = capsys.readouterr()
        self.note(captured.out + captured.err)
        return code, captured.out, captured.err

    # --- reading the platform through the clients ---

    def service(self) -> run_v2.Service:
        return self.services.get_service(name=self.service_name, timeout=30)

    def traffic(self) -> list[tuple[str, int, str]]:
        """(revision, percent, tag) of every traffic status, sorted."""
        return sorted(
            (s.revision.rsplit("/", 1)[-1], s.percent, s.tag)
            for s in self.service().traffic_statuses
        )

    def serving(self) -> list[tuple[str, int]]:
        """(revision, percent) of the revisions that receive requests, sorted."""
        return sorted((rev, pct) for rev, pct, _ in self.traffic() if pct > 0)

    def revision_names(self) -> set[str]:
        pages = self.revisions.list_revisions(parent=self.service_name, timeout=30)
        return {revision.name.rsplit("/", 1)[-1] for revision in pages}

    def revision(self, short: str) -> run_v2.Revision:
        return self.revisions.get_revision(
            name=f"{self.service_name}/revisions/{short}", timeout=30
        )

    def build_ids(self) -> list[str]:
        """Every build of the project, newest first."""
        pages = self.builds.list_builds(
            request=cloudbuild_v1.ListBuildsRequest(
                parent=f"projects/{self.project}/locations/{REGION}", project_id=self.project
            ),
            timeout=30,
        )
        return [build.id for build in pages]

    def get(self, url: str, timeout: float = 10.0) -> httpx.Response:
        return httpx.get(url, timeout=timeout)

    def health(self) -> dict[str, Any]:
        """GET /health through the service URI."""
        response = self.get(self.service().uri + "/health")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    # --- secrets never leak ---

    def records_text(self) -> str:
        return "\n".join(r.to_json() for r in self.store().history(ENVIRONMENT, 1000))

    def assert_no_secrets(self, *texts: str) -> None:
        """No seeded secret value in `texts`, in anything noted so far, or in the store."""
        everything = "\n".join([*texts, *self.seen, self.records_text()])
        for secret_id, value in self.secret_values.items():
            assert value not in everything, f"the value of secret {secret_id} leaked"


def wait_finished(store: Store, deploy_id: str, timeout: float = 120.0) -> DeployRecord:
    """The record once its deploy ended (run by a worker elsewhere) and its Slack thread
    shows everything the deployer meant to say, or the test fails saying where it was."""
    deadline = time.monotonic() + timeout
    record = None
    while time.monotonic() < deadline:
        record = store.get(deploy_id)
        if record is not None and record.state.finished and thread_sent(store, deploy_id):
            return record
        time.sleep(0.1)
    where = "no record"
    if record is not None:
        stages = "; ".join(f"{r.stage} {r.outcome}: {r.summary}" for r in record.stages[-3:])
        where = (
            f"state {record.state}, running {record.running_stage}, last stages: {stages}; "
            f"notes: {[note.text for note in record.notes]}; "
            f"thread told: {thread_sent(store, deploy_id)}"
        )
    pytest.fail(
        f"deploy {deploy_id} did not finish (and tell its thread) within {timeout} s: {where}"
    )


def thread_sent(store: Store, deploy_id: str) -> bool:
    """Whether the deploy's outbox has nothing left to send (or it has no thread)."""
    found = store.outbox_read(deploy_id)
    return found is None or not ThreadBox.from_json(found.body).pending()


def _seed_secret(
    client: secretmanager_v1.SecretManagerServiceClient, project: str, secret_id: str, value: str
) -> None:
    writer = SecretManagerWriter(client)
    writer.create(project, secret_id, {})
    writer.add_version(project, secret_id, value.encode())


def base_settings(project: str, repo: Path, service_id: str) -> dict[str, Any]:
    """The world's deployer.toml as tables: fast health checks, short timeouts."""
    return {
        f"services.{SERVICE_KEY}": {
            "project": project,
            "region": REGION,
            "service": service_id,
            "image": f"{REGION}-docker.pkg.dev/{project}/deployer/backend",
            "build_config": "cloudbuild.yaml",
            "substitutions": {
                "_REGION": REGION,
                "_REPOSITORY": "deployer",
                "_IMAGE_NAME": "backend",
            },
            "source": {"git": str(repo), "dir": ""},
            "health": {
                "path": "/health",
                "consecutive": 2,
                "failures": 2,
                "interval": 0.1,
                "request_timeout": 2.0,
            },
        },
        f"environments.{ENVIRONMENT}": {
            "service": SERVICE_KEY,
            "env": {"LOG_LEVEL": "info"},
            "secrets": {"MONGODB_URL": "mongodb-url", "SECRET_KEY": "secret-key"},
            "run": {"allow_unauthenticated": True, "port": 8080},
            "rollout": {"steps": [100], "step_wait": 0},
            "timeouts": {
                "preflight": 30,
                "build": 60,
                "deploy": 30,
                "ready": 40,
                "health": 15,
                "promote": 30,
                "verify": 15,
            },
            "allow": {"slack_users": ["U0TESTER1"], "slack_channels": ["C0TESTS01"]},
        },
    }


def make_world(sandbox: Sandbox, root: Path, source: Path, deploy_first: bool = True) -> World:
    """A world of its own: repo, project, secrets, config, store and (by default) a first deploy."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    shutil.copytree(source / "service", repo / "service", ignore=_IGNORED)
    shutil.copy(source / "cloudbuild.yaml", repo / "cloudbuild.yaml")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the sample service")

    project = f"e2e-{uuid.uuid4().hex[:10]}"
    values = {
        "mongodb-url": f"mongodb://app:pw-{secrets.token_hex(12)}@127.0.0.1:27017/content",
        "secret-key": secrets.token_urlsafe(24),
    }
    world = world_of(sandbox, root, repo, project, base_settings(project, repo, "backend"), values)
    if deploy_first:
        record, _ = world.deploy(requester="cli:first")
        assert record.state == State.SUCCEEDED, record.error
        world.first = record
    return world


def world_of(
    sandbox: Sandbox,
    root: Path,
    repo: Path,
    project: str,
    settings: dict[str, Any],
    secret_values: dict[str, str],
) -> World:
    """A world over `repo` with these settings: its secrets seeded, its config written."""
    host = sandbox.grpc_address
    secret_manager = google_client(secretmanager_v1.SecretManagerServiceClient, host)
    for secret_id, value in secret_values.items():
        _seed_secret(secret_manager, project, secret_id, value)
    world = World(
        sandbox=sandbox,
        root=root,
        repo=repo,
        project=project,
        settings=settings,
        config_path=root / "deployer.toml",
        store_path=root / "state.db",
        secret_values=secret_values,
        services=google_client(run_v2.ServicesClient, host),
        revisions=google_client(run_v2.RevisionsClient, host),
        builds=google_client(cloudbuild_v1.CloudBuildClient, host),
        secret_manager=secret_manager,
        platform=default_platform(host),
    )
    world.reconfigure()
    return world


def close_world(world: World) -> None:
    """Delete the service (so its processes stop) and close the clients."""
    # Not waited for: the sandbox stops the revisions' processes on its own time.
    with contextlib.suppress(exceptions.NotFound):
        world.services.delete_service(name=world.service_name, timeout=30)
    for client in (world.services, world.revisions, world.builds, world.secret_manager):
        client.transport.close()


@pytest.fixture(scope="module", name="shared_world")
def shared_world_fixture(
    sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    """One world, not deployed, for a module whose tests must change nothing in it."""
    root = Path(str(request.config.rootpath))
    made = make_world(sandbox, tmp_path_factory.mktemp("shared") / "world", root, False)
    try:
        yield made
    finally:
        close_world(made)


@pytest.fixture(name="world")
def world_fixture(gcp: Sandbox, tmp_path: Path, repo_root: Path) -> Iterator[World]:
    """A world whose service serves its first revision; secrets checked unseen at the end."""
    made = make_world(gcp, tmp_path / "world", repo_root)
    try:
        yield made
        made.assert_no_secrets()
    finally:
        close_world(made)


@pytest.fixture(name="empty_world")
def empty_world_fixture(gcp: Sandbox, tmp_path: Path, repo_root: Path) -> Iterator[World]:
    """A world whose service does not exist yet."""
    made = make_world(gcp, tmp_path / "world", repo_root, deploy_first=False)
    try:
        yield made
        made.assert_no_secrets()
    finally:
        close_world(made)
