"""Shared fixtures: a sandbox per test session, clients built the deployer's way."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployer.sandbox.server import Sandbox

PROJECT = "test-project"
REGION = "europe-west1"


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One in-process sandbox for the whole session; tests use their own resource names."""
    running = Sandbox(tmp_path_factory.mktemp("sandbox")).start()
    yield running
    running.stop()


@pytest.fixture
def gcp(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox, with `DEPLOYER_GCP_EMULATOR_HOST` pointing at it and no faults armed."""
    os.environ["DEPLOYER_GCP_EMULATOR_HOST"] = sandbox.grpc_address
    sandbox.faults.clear()
    yield sandbox
    sandbox.faults.clear()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
