"""`deployer demo` as a newcomer runs it, and the front that `deployer sandbox` serves."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deployer_sandbox.harness.demo import plain, render_blocks

from tests.front_requests import github_event, send_http, slash_command
from tests.processes import descendants, wait_all_gone

DEMO_TIMEOUT = 120.0
READY_TIMEOUT = 60.0


def test_demo_deploys_prod_shows_the_thread_and_the_status(repo_root: Path, tmp_path: Path) -> None:
    log = tmp_path / "demo.out"
    children: set[int] = set()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "deployer.cli", "demo", "--timeout", str(DEMO_TIMEOUT - 20)],
            cwd=repo_root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + DEMO_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            children |= descendants(process.pid)  # revisions, builds, the worker job
            time.sleep(0.2)
        if process.poll() is None:
            process.kill()
            process.wait(10)
            pytest.fail(f"deployer demo ran over {DEMO_TIMEOUT} s:\n{log.read_text()}")
    text = log.read_text()
    assert process.returncode == 0, text
    assert "/deploy prod" in text
    # The thread: the parent as posted, redrawn as stages pass, a reply, the final state.
    assert "┌ #deploys · deployer\n" in text and "(message updated)" in text
    # Updates coalesce (one a second per thread, within Slack's limits): some stage is
    # seen running, which one depends on the machine's speed.
    assert any(f"▶ {stage}" in text for stage in ("build", "deploy", "ready", "health"))
    assert "↳ reply in thread" in text
    assert "prod now runs" in text and "✓ verify" in text and "[ Roll back ]" in text
    # Then the status answer, seen only by the asker.
    status = text[text.index("/deploy status") :]
    assert "(only you can see this)" in status and "100%" in status and "healthy" in status
    assert "demo: deploy d-" in text and "succeeded" in text
    # Every process it started ended with it.
    assert children, "the demo should have run the service and the worker as children"
    assert wait_all_gone(children, 10) == set()


def test_plain_text_rendering_of_blocks() -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Deploy"}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*prod* by <@U1> &lt;b&gt; <https://x.test/l|build log>"},
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "a"}, {"type": "mrkdwn", "text": "b"}]},
        {"type": "divider"},
        {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Cancel"}}]},
    ]  # fmt: skip
    assert render_blocks(blocks) == [
        "DEPLOY",
        "prod by @U1 <b> build log",
        "a · b",
        "─" * 40,
        "[ Cancel ]",
    ]
    assert plain("<!channel> in <#C1> `x` *y*") == "@channel in #C1 `x` y"


@pytest.fixture
def sandbox_state(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Iterator[Any]:
    """A `deployer sandbox` subprocess; its state file's JSON."""
    root = tmp_path_factory.mktemp("sandbox-front")
    state_file = root / "state.json"
    with (root / "sandbox.log").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "deployer.cli", "sandbox", "--state-file", str(state_file)],
            cwd=repo_root,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not state_file.exists():
            assert process.poll() is None, (root / "sandbox.log").read_text()
            assert time.monotonic() < deadline, "no state file within 60 s"
            time.sleep(0.05)
        yield json.loads(state_file.read_text())
    finally:
        process.terminate()
        process.wait(15)


def test_the_sandbox_serves_the_front_on_its_webhook(sandbox_state: Any) -> None:
    state = sandbox_state
    webhook, demo = state["webhook"], state["demo"]
    assert webhook.startswith("http://127.0.0.1:")
    assert state["worker_job"].endswith("/jobs/deployer-worker")
    assert httpx.get(f"{webhook}/healthz", timeout=5).status_code == 200

    # Signed with the state file's secrets: answered. Signed with anything else: refused.
    status = slash_command(
        state["slack_signing_secret"],
        "status",
        user=demo["slack_user"],
        channel=demo["slack_channel"],
    )
    answer = send_http(webhook, status)
    assert answer.status == 200, answer.text
    assert "backend" in answer.text
    forged = slash_command(
        "not-the-secret", "prod", user=demo["slack_user"], channel=demo["slack_channel"]
    )
    assert send_http(webhook, forged).status == 401
    ping = github_event(state["github_webhook_secret"], "ping", {"zen": "Design for failure."})
    assert send_http(webhook, ping).status == 200
    assert send_http(webhook, github_event("wrong", "ping", {})).status == 401
    # Nothing was deployed by any of it.
    messages = httpx.get(state["slack_api"].removesuffix("/api/") + "/_sandbox/messages", timeout=5)
    assert [m for m in messages.json() if not m["ephemeral"]] == []
