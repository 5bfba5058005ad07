"""`deployer demo` as a newcomer runs it, and the front that `deployer sandbox` serves."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deployer_sandbox.harness.demo_view import plain, render_blocks

from deployer.config import load_config
from tests.front_requests import github_event, send_http, slash_command
from tests.processes import descendants, wait_all_gone

DEMO_TIMEOUT = 120.0
READY_TIMEOUT = 60.0


def test_demo_takes_staging_to_prod_through_a_promotion_and_an_approval(
    repo_root: Path, tmp_path: Path
) -> None:
    approval = load_config(repo_root / "deployer.example.toml").environment("prod").approval
    assert approval is not None
    approver = approval.approvers[0]
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
    # Act 1: `/deploy staging`, its thread drawn as posted, redrawn as stages pass, until
    # it offers the promotion. Updates coalesce (one a second per thread, within Slack's
    # limits): some stage is seen running, which one depends on the machine's speed.
    staging = _between(text, "in #deploys:  /deploy staging", "clicks [ Promote to prod ]")
    assert "┌ #deploys · deployer · staging thread\n" in staging
    assert "┌ #deploys · deployer · staging thread (message updated)" in staging
    assert any(f"▶ {stage}" in staging for stage in ("build", "deploy", "ready", "health"))
    assert "↳ reply in the staging thread" in staging
    assert "staging now runs" in staging and "[ Promote to prod ]  [ Roll back ]" in staging

    # Act 2: the click on "Promote to prod" starts prod's thread; nothing is built, and
    # the deploy parks once its candidate passed health, asking the approver.
    promotion = _between(
        text, "clicks [ Promote to prod ] on the staging thread", "clicks [ Approve ]"
    )
    assert "(block_actions POST /slack/events answered 200)" in promotion
    assert "is promoting this to prod" in promotion  # said in the staging thread
    assert "┌ #deploys · deployer · prod thread\n" in promotion
    assert "promoted from staging" in promotion
    assert "↳ reply in the prod thread" in promotion and "Approval needed" in promotion
    assert "[ Approve ]  [ Reject ]" in promotion
    before = re.search(
        r"before the approval: prod's traffic is (\S+) 100%, (\S+) 0% \(tag candidate\)", promotion
    )
    assert before, promotion
    first, candidate = before.groups()

    # Act 3: the approver's click (after Slack's confirm dialog), then traffic moves.
    approved = _between(
        text, f"<@{approver}> clicks [ Approve ] on the prod thread", "/deploy status"
    )
    assert "Slack asks “Approve this deploy?”; they press Approve" in approved
    assert f"Approved by @{approver} (1 of 1): traffic moves now." in approved
    assert "prod now runs" in approved and "✓ promote" in approved and "✓ verify" in approved
    assert f"approved by @{approver} at" in approved
    assert f"after the approval: prod's traffic is {candidate} 100%." in approved
    assert first != candidate
    # Under its users' traffic, the 50 % step was judged against the serving revision, and
    # the thread's last reply carries the chart.
    assert "Traffic: 50% on " in approved
    judged = re.search(r"Analysis at 50%: candidate (\d+) requests, 0% 5xx.*: pass", approved)
    assert judged, approved
    assert re.search(r"\[file analysis-d-[a-z0-9-]+\.png: Analysis of d-", approved)
    assert re.search(r"Users sent \d+ requests meanwhile: \d+ answered 200\.", approved)
    # Cloud Build's count, read by the demo through the real client, did not move.
    builds = re.search(
        r"Cloud Build ran (\d+) builds? before the promotion and (\d+) after it: nothing built for prod",
        approved,
    )
    assert builds and builds[1] == builds[2], approved

    # Then the status answer, seen only by the asker: both environments, healthy.
    status = text[text.index("/deploy status") :]
    assert "(only you can see this)" in status and "healthy" in status
    assert f"100% `{candidate}`" in status and "promoted from staging" in status
    assert "staging · `backend-staging`" in status
    assert re.search(
        r"demo: d-\S+ put \w+ on staging; d-\S+ promoted it to prod, approved by @", text
    )
    assert f"{candidate} serves 100 %." in text
    # Every process it started ended with it.
    assert children, "the demo should have run the service and the worker as children"
    assert wait_all_gone(children, 10) == set()


def _between(text: str, start: str, end: str) -> str:
    """The part of the demo's output from `start` up to `end`."""
    assert start in text, f"{start!r} not in:\n{text}"
    head = text.index(start)
    assert end in text[head:], f"{end!r} not after {start!r} in:\n{text}"
    return text[head : text.index(end, head)]


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
    # The demo config: staging on a Cloud Run service of its own, prod promoted from it and
    # approved by a second person, who may approve but deploy nothing.
    config = load_config(state["config"])
    assert config.target("staging").service == demo["staging_service"] == "backend-staging"
    assert config.target("prod").service == demo["service"] == "backend"
    assert config.environment("prod").promote_from == "staging"
    approver = demo["slack_approver"]
    assert approver.startswith("U") and approver != demo["slack_user"]
    approval = config.environment("prod").approval
    assert approval is not None and approval.approvers == [approver]
    for environment in ("staging", "prod"):
        asked = slash_command(
            state["slack_signing_secret"], environment, user=approver, channel=demo["slack_channel"]
        )
        refused = send_http(webhook, asked)
        assert refused.status == 200
        assert f"You are not on the list of people who may deploy `{environment}`" in refused.text
    ping = github_event(state["github_webhook_secret"], "ping", {"zen": "Design for failure."})
    assert send_http(webhook, ping).status == 200
    assert send_http(webhook, github_event("wrong", "ping", {})).status == 401
    # Nothing was deployed by any of it.
    messages = httpx.get(state["slack_api"].removesuffix("/api/") + "/_sandbox/messages", timeout=5)
    assert [m for m in messages.json() if not m["ephemeral"]] == []
