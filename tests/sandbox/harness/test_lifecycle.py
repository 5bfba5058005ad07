"""`deployer sandbox` as a user runs it: state file, demo service, clean shutdown."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth import jwt
from google.cloud import run_v2
from google.cloud.devtools import cloudbuild_v2
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from deployer.adapters.google_clients import google_client
from tests.processes import descendants, wait_all_gone

READY_TIMEOUT = 60.0


def _start(tmp_path: Path, repo_root: Path) -> tuple[subprocess.Popen[bytes], Path]:
    state_file = tmp_path / "state.json"
    log = tmp_path / "sandbox.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "deployer.cli", "sandbox", "--state-file", str(state_file)],
            cwd=repo_root,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + READY_TIMEOUT
    while not state_file.exists():
        if process.poll() is not None:
            pytest.fail(
                f"deployer sandbox exited {process.returncode} before ready:\n{log.read_text()}"
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("deployer sandbox wrote no state file within 60 s")
        time.sleep(0.05)
    return process, state_file


@pytest.fixture
def running(tmp_path: Path, repo_root: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    process, state_file = _start(tmp_path, repo_root)
    yield process, state_file
    if process.poll() is None:
        process.kill()
        process.wait(10)


def _head(repo_root: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo_root, capture_output=True, text=True, check=True
    ).stdout.strip()


def _ls_remote(url: str, token: str) -> subprocess.CompletedProcess[str]:
    """`git ls-remote url` with no saved credentials, the token (if any) as GitHub takes it."""
    settings = ["-c", "credential.helper="]
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        settings += ["-c", f"http.extraHeader=Authorization: Basic {basic}"]
    return subprocess.run(
        ["git", *settings, "ls-remote", url],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )


def test_state_file_describes_a_working_sandbox(
    running: tuple[subprocess.Popen[bytes], Path], repo_root: Path
) -> None:
    _, state_file = running
    state = json.loads(state_file.read_text())
    for key in (
        "gcp",
        "slack_api",
        "slack_signing_secret",
        "github_webhook_secret",
        "config",
        "metadata",
        "git",
    ):
        assert state[key], key
    demo = state["demo"]
    assert demo["slack_team"].startswith("T")
    assert demo["slack_channel"].startswith("C")
    assert demo["slack_user"].startswith("U")
    # A second person, who approves prod's deploys (and may deploy nothing).
    assert demo["slack_approver"].startswith("U") and demo["slack_approver"] != demo["slack_user"]
    assert demo["staging_service"] == "backend-staging" and demo["service"] == "backend"
    assert "/" in demo["github_repository"]
    assert Path(state["config"]).read_text().count("[environments.prod]") == 1

    # The demo builds from a connected repository: private to git alone, readable with
    # the connection's read token, as a private GitHub repository is.
    assert demo["repository"] in Path(state["config"]).read_text()
    assert demo["repository_remote"].startswith(state["git"])
    anonymous = _ls_remote(demo["repository_remote"], token="")
    assert anonymous.returncode != 0 and "terminal prompts disabled" in anonymous.stderr
    manager = google_client(cloudbuild_v2.RepositoryManagerClient, state["gcp"])
    token = manager.fetch_read_token(repository=demo["repository"], timeout=30).token
    listed = _ls_remote(demo["repository_remote"], token=token)
    assert listed.returncode == 0 and demo["commit"] in listed.stdout

    # Beside the deploy channel, one public and one private channel the bot is not in.
    unjoined = state["slack_channels"]
    assert unjoined["unjoined_public"].startswith("C")
    assert unjoined["unjoined_private"].startswith("G")
    web = WebClient(token="xoxb-lifecycle", base_url=state["slack_api"], retry_handlers=[])
    public = web.conversations_info(channel=unjoined["unjoined_public"])["channel"]
    assert (public["is_member"], public["is_private"]) == (False, False)
    assert web.chat_postMessage(channel=unjoined["unjoined_public"], text="hi")["ok"]
    with pytest.raises(SlackApiError, match="channel_not_found"):
        web.conversations_info(channel=unjoined["unjoined_private"])

    # The demo service really serves HEAD's service/, reachable through the real client.
    services = google_client(run_v2.ServicesClient, state["gcp"])
    service = services.get_service(
        name=f"projects/{state['project']}/locations/{state['region']}/services/backend"
    )
    assert service.terminal_condition.state == run_v2.Condition.State.CONDITION_SUCCEEDED
    with urllib.request.urlopen(f"{service.uri}/health", timeout=5) as answer:
        health = json.load(answer)
    assert health["status"] == "healthy"
    assert health["version"]["commit"] == _head(repo_root)
    assert health["version"]["revision"] == service.latest_ready_revision.rsplit("/", 1)[-1]

    # The metadata server: GCE_METADATA_HOST and GCE_METADATA_IP for google-auth.
    identity = urllib.request.Request(
        f"http://{state['metadata']}/computeMetadata/v1/instance/service-accounts/default/"
        f"identity?audience={service.uri}",
        headers={"Metadata-Flavor": "Google"},
    )
    with urllib.request.urlopen(identity, timeout=5) as answer:
        assert answer.headers["Metadata-Flavor"] == "Google"
        token = answer.read().decode()
    claims = jwt.decode(token, verify=False)
    assert claims["aud"] == service.uri and claims["iss"] == "https://accounts.google.com"


def test_sigterm_ends_every_child_and_removes_the_state_file(
    running: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, state_file = running
    children = descendants(process.pid)
    assert children, "the demo revision should be running as a child process"
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0
    assert wait_all_gone(children, 10) == set()
    assert not state_file.exists()


def test_sigkill_leaves_no_process_behind(running: tuple[subprocess.Popen[bytes], Path]) -> None:
    process, _ = running
    children = descendants(process.pid)
    assert children
    os.kill(process.pid, signal.SIGKILL)
    process.wait(10)
    assert wait_all_gone(children, 10) == set()


def test_smoke_check_exits_zero(repo_root: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deployer.cli", "sandbox", "--smoke"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "smoke check passed" in done.stderr
