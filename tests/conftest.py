"""Shared fixtures: a sandbox per test session, clients built the deployer's way."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
from deployer_sandbox.common.images import Image
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.harness.seed import Demo, seed_demo
from google.cloud import run_v2
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

from deployer.adapters.google_clients import google_client
from tests.firestore_emulator import (  # noqa: F401  (a fixture)
    firestore_emulator,
    share_between_workers,
    stop_shared,
)

PROJECT = "test-project"
REGION = "europe-west1"
# Slack's rate limits in the test sandboxes, this many times faster than Slack's own.
# Measured: test_concurrent_posts_get_distinct_increasing_ts sends 40 posts into one
# channel from 8 threads in about 40 ms (~1000 a second); its channel needed a scale of
# up to 1650 on a busy 2-core machine. 10000 leaves room for faster ones; the limits'
# own tests build sandboxes with scales of their own (tests/sandbox/slack/test_rate_limits.py).
SLACK_RATE_SCALE = 10_000.0

C = TypeVar("C")


class GoogleClients(Protocol):
    def __call__(self, kind: type[C]) -> C: ...


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """`deployer` commands configure the root logger; each test starts from the same one."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def pytest_configure(config: pytest.Config) -> None:
    share_between_workers(config)  # before the workers start: they inherit the folder


def pytest_unconfigure(config: pytest.Config) -> None:
    stop_shared(config)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One in-process sandbox for the whole session; tests use their own resource names."""
    running = Sandbox(tmp_path_factory.mktemp("sandbox"), slack_rate_scale=SLACK_RATE_SCALE).start()
    yield running
    running.stop()


@pytest.fixture
def gcp(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox, with `DEPLOYER_GCP_EMULATOR_HOST` (and Cloud Storage's
    `STORAGE_EMULATOR_HOST`) pointing at it and no faults armed."""
    os.environ["DEPLOYER_GCP_EMULATOR_HOST"] = sandbox.grpc_address
    # google-cloud-storage's own variable: setup's uploads go to the sandbox's Cloud Storage.
    os.environ["STORAGE_EMULATOR_HOST"] = sandbox.storage_url
    # Deploys in this process probe private services with ID tokens from the sandbox's
    # metadata server, through google-auth's real path, as a worker on Cloud Run does.
    sandbox.metadata.serve_this_process()
    sandbox.faults.clear()
    yield sandbox
    sandbox.faults.clear()


@pytest.fixture
def google_clients(gcp: Sandbox) -> Iterator[GoogleClients]:
    """Builds clients the deployer's way against the sandbox; their channels close after the test."""
    made: list[object] = []

    def build(kind: type[C]) -> C:
        client = google_client(kind)
        made.append(client)
        return client

    yield build
    for client in made:
        client.transport.close()  # type: ignore[attr-defined]


@pytest.fixture
def services(google_clients: GoogleClients) -> run_v2.ServicesClient:
    return google_clients(run_v2.ServicesClient)


@pytest.fixture
def revisions(google_clients: GoogleClients) -> run_v2.RevisionsClient:
    return google_clients(run_v2.RevisionsClient)


@pytest.fixture
def image(gcp: Sandbox, repo_root: Path) -> str:
    """The sample service (`service/`), pushed under a repository of its own; its digest ref."""
    repository = f"{REGION}-docker.pkg.dev/{PROJECT}/apps/sample-{uuid.uuid4().hex[:8]}"
    digest = "sha256:" + uuid.uuid4().hex * 2
    gcp.images.push(
        Image(
            repository=repository,
            digest=digest,
            context=repo_root / "service",
            cmd=("python", "-m", "app"),
            env={"APP_COMMIT": "abc"},
            commit="abc",
        ),
        ["latest"],
    )
    return f"{repository}@{digest}"


@pytest.fixture
def project() -> str:
    """A project of its own per test: the sandbox is shared by the session."""
    return f"p-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def demo_cloud(tmp_path: Path, repo_root: Path) -> Iterator[tuple[Demo, Sandbox]]:
    """The demo, seeded into a sandbox of its own (its fixed names need one); the CLI aims at it."""
    own = Sandbox(tmp_path / "sandbox", slack_rate_scale=SLACK_RATE_SCALE).start()
    try:
        seeded = seed_demo(own, repo_root, tmp_path)
        os.environ["DEPLOYER_GCP_EMULATOR_HOST"] = own.grpc_address
        os.environ["DEPLOYER_CONFIG"] = str(seeded.config.path)
        os.environ["DEPLOYER_GITHUB_API_URL"] = own.github_api_url
        own.metadata.serve_this_process()
        yield seeded, own
    finally:
        own.stop()


@pytest.fixture
def demo(demo_cloud: tuple[Demo, Sandbox]) -> Demo:
    """The seeded demo of `demo_cloud`."""
    return demo_cloud[0]


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def unreachable_logging() -> Iterator[LoggingServiceV2Client]:
    """A Cloud Logging client aimed at the discard port: every call fails."""
    client = google_client(LoggingServiceV2Client, "127.0.0.1:9")
    yield client
    client.transport.close()
