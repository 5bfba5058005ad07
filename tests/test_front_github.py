"""GitHub deliveries, signed as GitHub signs them, through `main.py` as Cloud Functions loads it.

Unknown repositories are refused with 403 (the hook's owner sees a failed
delivery and why, in GitHub's UI) and start nothing; drafts, other actions and
other events answer 200 and start nothing.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import functions_framework
import pytest

from deployer.front.verify import github_signature
from deployer.pipeline.ports import COMMIT_LABEL
from deployer.pipeline.record import DeployRecord, State
from deployer.store.sqlite import SqliteStore
from tests.engine_world import (  # noqa: F401  (fixtures)
    ENVIRONMENT,
    World,
    empty_world_fixture,
    git,
    wait_finished,
    world_fixture,
)
from tests.front_requests import github_event, release_payload, send_flask
from tests.slack_thread_text import assert_matches, render_thread

REPOSITORY = "acme/content-api"
SECRET = "github-test-secret-" + uuid.uuid4().hex[:8]


def _channel(world: World) -> str:
    channel = "C" + uuid.uuid4().hex[:10].upper()
    world.sandbox.http.sink.add_channel(channel, "releases")
    return channel


def _configure(world: World, channel: str, **releases: Any) -> None:
    """Releases of REPOSITORY deploy prod, announced in `channel`; the front's environment."""
    world.settings["releases"] = {
        "repositories": [REPOSITORY],
        "environment": ENVIRONMENT,
        "channel": channel,
        **releases,
    }
    world.reconfigure()
    os.environ.update(
        DEPLOYER_CONFIG=str(world.config_path),
        DEPLOYER_STORE=world.store_url,
        DEPLOYER_DISPATCH="inline",
        SLACK_API_URL=world.sandbox.slack_api_url,
        SLACK_BOT_TOKEN="xoxb-github-tests",
        SLACK_SIGNING_SECRET="unused-in-these-tests",
        GITHUB_WEBHOOK_SECRET=SECRET,
    )


@pytest.fixture
def client(repo_root: Path) -> Iterator[Any]:
    app = functions_framework.create_app("deployer_http", str(repo_root / "main.py"))
    yield app.test_client()
    from deployer.front.context import close_contexts

    close_contexts()  # waits for inline deploys still running


def _tag(world: World, tag: str) -> str:
    commit = world.commit(f"release {tag}")
    git(world.repo, "tag", "-a", tag, "-m", tag)
    return commit


def _records(world: World) -> list[DeployRecord]:
    return SqliteStore(world.store_path).history(ENVIRONMENT, 100)


def _thread(world: World, channel: str) -> list[dict[str, Any]]:
    return [m for m in world.sandbox.http.sink.messages(channel) if not m["ephemeral"]]


def test_published_release_deploys_its_tag_in_a_new_thread(world: World, client: Any) -> None:
    channel = _channel(world)
    _configure(world, channel)
    commit = _tag(world, "v1.2.0")
    world.commit("main moved on after the release")  # target_commitish must not be built
    # Publishing a release sends two deliveries: `published`, then `released`.
    published = release_payload(REPOSITORY, "v1.2.0", action="published", release_id=77)
    ignored = send_flask(client, github_event(SECRET, "release", published))
    assert ignored.status == 200 and "ignored" in ignored.text
    delivery = github_event(SECRET, "release", release_payload(REPOSITORY, "v1.2.0", release_id=77))

    answer = send_flask(client, delivery)
    assert answer.status == 202, answer.text
    deploy_id = answer.text.strip().rsplit(" ", 1)[-1]
    record = wait_finished(world.store(), deploy_id)
    assert record.state == State.SUCCEEDED, record.error
    assert record.requester == f"github:{REPOSITORY}"
    assert record.ref == "v1.2.0"
    assert record.commit == commit

    # The new revision carries the tag's commit and takes all traffic.
    revision = record.candidate_revision or ""
    assert world.revision(revision).labels[COMMIT_LABEL] == commit
    assert world.serving() == [(revision, 100)]

    # One thread in the releases channel: parent, then the release note naming the sender.
    messages = _thread(world, channel)
    parent = messages[0]
    assert parent["ts"] == record.slack_ts and parent["thread_ts"] == record.slack_ts
    replies = [m for m in messages[1:] if m["thread_ts"] == parent["ts"]]
    assert len(replies) == len(messages) - 1 and replies
    assert "v1.2.0" in replies[0]["text"] and "acme" in replies[0]["text"]
    assert commit[:12] in parent["text"] and revision in parent["text"]
    assert_matches(render_thread(messages, parent["ts"]), "threads/github_release")

    # A redelivery (same X-GitHub-Delivery) is answered and starts nothing; so is another
    # `released` delivery of the same release (say, after an edit).
    again = send_flask(client, delivery)
    assert again.status == 200 and "already" in again.text
    other = github_event(SECRET, "release", release_payload(REPOSITORY, "v1.2.0", release_id=77))
    once = send_flask(client, other)
    assert once.status == 200 and "already deployed to prod" in once.text
    assert len(_records(world)) == 2  # the first deploy and the release's
    assert len(_thread(world, channel)) == len(messages)


def test_prerelease_deploys_to_the_prerelease_environment(world: World, client: Any) -> None:
    channel = _channel(world)
    # Published releases would go to staging (which nobody deploys here); prereleases to prod.
    world.settings["environments.staging"] = {
        **world.settings[f"environments.{ENVIRONMENT}"],
        "cloud_run_service": "backend-staging",  # never the Cloud Run service prod deploys
        "allow": {"github_repositories": ["someone/else"]},
    }
    _configure(world, channel, environment="staging", prerelease_environment=ENVIRONMENT)
    commit = _tag(world, "v2.0.0-rc.1")
    payload = release_payload(REPOSITORY, "v2.0.0-rc.1", action="prereleased", prerelease=True)

    record = _accepted(world, client, payload)
    assert (record.environment, record.commit, record.state) == (
        ENVIRONMENT,
        commit,
        State.SUCCEEDED,
    )

    # The full release maps to staging, whose allow-list names another repository.
    final = release_payload(REPOSITORY, "v2.0.0")
    refused = send_flask(client, github_event(SECRET, "release", final))
    assert refused.status == 403
    assert SqliteStore(world.store_path).history("staging", 10) == []


def test_what_deploys_nothing(empty_world: World, client: Any) -> None:
    world = empty_world
    channel = _channel(world)
    _configure(world, channel)

    def status(event: str, payload: dict[str, Any], secret: str = SECRET) -> int:
        return send_flask(client, github_event(secret, event, payload)).status

    assert status("ping", {"zen": "Keep it logically awesome.", "hook_id": 1}) == 200
    assert status("release", release_payload(REPOSITORY, "v1.0.0", draft=True)) == 200
    assert status("release", release_payload(REPOSITORY, "v1.0.0", action="published")) == 200
    assert status("release", release_payload(REPOSITORY, "v1.0.0", action="created")) == 200
    assert (
        status("push", {"ref": "refs/heads/main", "repository": {"full_name": REPOSITORY}}) == 200
    )
    # Prereleases map nowhere unless configured.
    assert (
        status(
            "release",
            release_payload(REPOSITORY, "v1.0.0-rc.1", action="prereleased", prerelease=True),
        )
        == 200
    )
    # Unknown repository: refused, nothing started.
    assert status("release", release_payload("evil/fork", "v1.0.0")) == 403
    # Wrong secret, missing signature, body changed after signing.
    assert status("release", release_payload(REPOSITORY, "v1.0.0"), secret="wrong") == 401
    signed = github_event(SECRET, "release", release_payload(REPOSITORY, "v1.0.0"))
    unsigned = {k: v for k, v in signed.headers.items() if k != "X-Hub-Signature-256"}
    assert send_flask(client, replace(signed, headers=unsigned)).status == 401
    tampered = replace(signed, body=signed.body.replace(b"v1.0.0", b"v6.6.6"))
    assert send_flask(client, tampered).status == 401
    # Not JSON, though correctly signed; a tag git would take for an option.
    broken = github_event(SECRET, "release", {})
    body = b"{not json"
    headers = {**broken.headers, "X-Hub-Signature-256": github_signature(SECRET, body)}
    assert send_flask(client, replace(broken, body=body, headers=headers)).status == 400
    assert status("release", release_payload(REPOSITORY, "--upload-pack=id")) == 400

    assert _records(world) == []
    assert _thread(world, channel) == []


def test_a_prerelease_made_the_release_deploys_then_and_only_then(
    world: World, client: Any
) -> None:
    channel = _channel(world)
    _configure(world, channel)  # releases deploy prod; pre-releases deploy nowhere
    commit = _tag(world, "v3.0.0")
    for action in ("published", "prereleased"):
        payload = release_payload(
            REPOSITORY, "v3.0.0", action=action, prerelease=True, release_id=301
        )
        assert send_flask(client, github_event(SECRET, "release", payload)).status == 200
    assert len(_records(world)) == 1  # a pre-release never reaches prod

    # Someone ticks "Set as the latest release": GitHub sends `released` (and `edited`).
    released = release_payload(REPOSITORY, "v3.0.0", release_id=301)
    record = _accepted(world, client, released)
    assert (record.environment, record.commit, record.state) == (
        ENVIRONMENT,
        commit,
        State.SUCCEEDED,
    )


def _accepted(world: World, client: Any, payload: dict[str, Any]) -> DeployRecord:
    """Deliver the release event; the deploy it was accepted as (202), once it has ended."""
    answer = send_flask(client, github_event(SECRET, "release", payload))
    assert answer.status == 202, answer.text
    return wait_finished(world.store(), answer.text.strip().rsplit(" ", 1)[-1])


def test_a_release_waits_for_approval_in_its_thread(world: World, client: Any) -> None:
    """prod needs an approval: the release's deploy parks, asks in its thread, and the
    approver's vote (through `deployer.voting`, as the CLI and Slack cast it), once
    dispatched, moves traffic."""
    from deployer import voting
    from deployer.front.context import current_context

    channel = _channel(world)
    approver = "U" + uuid.uuid4().hex[:10].upper()
    world.sandbox.http.sink.add_user(approver, "approver")
    world.reconfigure(environment={"approval": {"approvers": [approver], "timeout": 300}})
    _configure(world, channel)
    commit = _tag(world, "v2.0.0")
    before = world.serving()
    answer = send_flask(
        client, github_event(SECRET, "release", release_payload(REPOSITORY, "v2.0.0"))
    )
    assert answer.status == 202, answer.text
    deploy_id = answer.text.strip().rsplit(" ", 1)[-1]
    store = world.store()
    deadline = time.monotonic() + 60
    while (parked := store.get(deploy_id)) is None or parked.state != State.AWAITING_APPROVAL:
        assert time.monotonic() < deadline and not (parked and parked.state.finished), parked
        time.sleep(0.1)
    assert world.serving() == before
    own = voting.vote(world.config, store, deploy_id, f"github:{REPOSITORY}", "approve")
    assert isinstance(own, str) and "someone else must approve it" in own
    voted = voting.vote(world.config, store, deploy_id, f"slack:{approver}", "approve")
    assert isinstance(voted, voting.Voted) and voted.decision == "approved"
    current_context().dispatcher.dispatch(deploy_id)
    record = wait_finished(store, deploy_id)
    assert record.state == State.SUCCEEDED, record.error
    assert record.commit == commit and world.serving() == [(record.candidate_revision, 100)]
    texts = " ".join(m["text"] for m in _thread(world, channel))
    assert "Approval needed" in texts and f"<@{approver}>" in texts
