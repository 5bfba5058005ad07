"""Fixtures for tests of the sandbox's Slack in the session's sandbox: its HTTP front with
no faults armed, and a channel of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from deployer_sandbox.harness.http_server import SandboxHttp
from deployer_sandbox.harness.sandbox import Sandbox


@pytest.fixture(name="slack")
def slack_fixture(sandbox: Sandbox) -> Iterator[SandboxHttp]:
    """The session's Slack front with no faults armed."""
    sandbox.faults.clear()
    yield sandbox.http
    sandbox.faults.clear()


@pytest.fixture(name="channel")
def channel_fixture(slack: SandboxHttp) -> str:
    """A fresh channel of this test's own."""
    channel_id = "C" + uuid.uuid4().hex[:10].upper()
    slack.sink.add_channel(channel_id, f"deploys-{channel_id.lower()}")
    return channel_id
