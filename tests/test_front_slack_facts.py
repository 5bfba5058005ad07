"""The front against Slack as Slack really behaves (issue: right with real Slack).

no Slack call in the request   every Slack call delayed by a second: the ack is not
escaped text                   `fix <auth> & cache` arrives as `fix &lt;auth&gt; &amp;
                               cache`; it is kept as typed and shown escaped once
ssl_check                      unsigned, answered 200, and never starts anything
user groups Slack won't list   the person is told why and what to do instead
the thread's channel           the environment's channel, wherever the command was typed
channels the bot is not in     a public one takes the thread (`chat:write.public`); a
                               private one refuses it, and the asker is told to invite
                               the bot, through the command's response_url
a parent Slack took but never  found in the channel's history by its metadata, not
  answered for                 posted twice
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.pipeline.record import State
from tests.engine_world import ENVIRONMENT, World, world_fixture  # noqa: F401
from tests.front_requests import SLACK_PATH, TEAM, WireRequest
from tests.front_world import FrontWorld, in_process, make_front, unique


@pytest.fixture
def front(world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    with in_process(make_front(world, gcp), repo_root) as ready:
        yield ready


def test_the_ack_makes_no_slack_call_however_slow_slack_is(front: FrontWorld) -> None:
    front.world.commit("slack is slow")
    # Every Slack call takes Slack's whole 3 s budget for the answer.
    front.sandbox.faults.arm("slack_latency", ms=3000, times=1000)
    started = time.monotonic()
    answer = front.command("prod")
    took = time.monotonic() - started
    front.sandbox.faults.clear()
    assert answer.status == 200 and answer.json()["text"].startswith("Started deploy")
    # One Slack call inside the request and Slack would have given up on the answer.
    assert took < 3.0, f"the ack took {took:.2f} s: the request waited on Slack"
    deploy_id = front.newest().id
    assert front.finished(deploy_id, timeout=90).state == State.SUCCEEDED
    assert front.posted(deploy_id)  # the thread still appears, posted by the worker


def test_slash_command_text_is_kept_as_typed_and_escaped_once(front: FrontWorld) -> None:
    answer = front.command("lock prod fix <auth> & cache")
    assert answer.status == 200
    [lock] = front.world.store().locks(ENVIRONMENT)
    assert lock.reason == "fix <auth> & cache"
    shown = answer.json()["blocks"][0]["text"]["text"]
    assert "fix &lt;auth&gt; &amp; cache" in shown
    assert "&amp;lt;" not in shown and "&amp;amp;" not in shown


def test_an_ssl_check_is_answered_and_starts_nothing(front: FrontWorld) -> None:
    before = len(front.records())
    # As Slack sends it: no signature headers at all, and here a command riding along.
    body = b"ssl_check=1&token=legacy&command=%2Fdeploy&text=prod&user_id=U1&channel_id=C1"
    request = WireRequest(
        "POST", SLACK_PATH, {"Content-Type": "application/x-www-form-urlencoded"}, body
    )
    answer = front.send(request)
    assert (answer.status, answer.text) == (200, "")
    assert len(front.records()) == before


def test_a_user_group_slack_will_not_list_is_explained(front: FrontWorld) -> None:
    group = "S" + uuid.uuid4().hex[:10].upper()  # no such group in the workspace
    front.world.reconfigure(environment={"allow": {"slack_users": [], "slack_usergroups": [group]}})
    answer = front.command("prod", user=front.other)
    text = answer.json()["text"]
    assert f"cannot read user group {group}" in text and "does not exist" in text
    assert "allow.slack_users" in text
    assert len(front.records()) == 1  # the first deploy only


def test_the_thread_lives_in_the_environments_channel(front: FrontWorld) -> None:
    home = unique("C")
    front.sandbox.http.sink.add_channel(home, "prod-deploys")
    front.world.reconfigure(environment={"channel": home})
    front.world.commit("typed elsewhere")
    answer = front.command("prod")
    assert f"<#{home}>" in answer.json()["text"]
    record = front.newest()
    assert record.slack_channel == home
    assert front.finished(record.id).state == State.SUCCEEDED
    ts = front.posted(record.id)
    assert [m["ts"] for m in front.sandbox.http.sink.messages(home) if m["ts"] == ts] == [ts]
    # Nothing landed where the command was typed.
    assert front.messages() == []


def test_a_parent_whose_post_went_unanswered_is_not_posted_twice(front: FrontWorld) -> None:
    front.world.commit("slack answers late")
    # The parent's post lands, but Slack's answer is lost: a 503 after the post.
    front.sandbox.faults.arm(
        "slack_5xx", status=503, times=1, after_post=True, method="chat.postMessage"
    )
    answer = front.command("prod")
    assert answer.status == 200
    deploy_id = front.newest().id
    assert front.finished(deploy_id, timeout=90).state == State.SUCCEEDED
    parents = [m for m in front.messages() if m.get("thread_ts") in (None, m["ts"])]
    assert len(parents) == 1, [p["text"] for p in parents]
    assert parents[0]["ts"] == front.posted(deploy_id)
    assert str(parents[0]["text"]).startswith("prod now runs")


def _not_joined(front: FrontWorld, *, is_private: bool) -> str:
    channel = unique("G" if is_private else "C")
    front.sandbox.http.sink.add_channel(channel, "releases", is_private=is_private, is_member=False)
    front.world.reconfigure(environment={"channel": channel})
    return channel


def test_a_public_channel_the_bot_never_joined_takes_the_thread(front: FrontWorld) -> None:
    channel = _not_joined(front, is_private=False)
    front.world.commit("into a public channel")
    assert front.command("prod").status == 200
    record = front.newest()
    assert front.finished(record.id).state == State.SUCCEEDED
    ts = front.posted(record.id)
    assert any(m["ts"] == ts for m in front.sandbox.http.sink.messages(channel))


def test_a_private_channel_the_bot_is_not_in_tells_the_asker_to_invite_it(
    front: FrontWorld,
) -> None:
    channel = _not_joined(front, is_private=True)
    front.world.commit("into a private channel")
    assert front.command("prod").status == 200
    record = front.newest()
    # The deploy goes on; only its thread has nowhere to go.
    assert front.finished(record.id).state == State.SUCCEEDED
    deadline = time.monotonic() + 30
    told: list[str] = []
    while not told:
        assert time.monotonic() < deadline, "the asker was never told"
        told = [str(m["text"]) for m in front.messages() if m.get("response_url")]
        time.sleep(0.2)
    [answer] = told
    assert record.id in answer and f"<#{channel}>" in answer
    assert "channel_not_found" in answer and "/invite" in answer
    assert front.sandbox.http.sink.messages(channel) == []


def test_user_groups_are_read_in_the_askers_workspace(front: FrontWorld) -> None:
    # On Enterprise Grid an org-wide install must name the workspace (`team_id`).
    group = "S" + uuid.uuid4().hex[:10].upper()
    front.sandbox.http.sink.add_usergroup(group, "deployers", [front.other])
    front.world.reconfigure(environment={"allow": {"slack_users": [], "slack_usergroups": [group]}})
    before = len(front.sandbox.http.sink.calls())
    answer = front.command("lock prod grid test", user=front.other)
    assert "locked" in answer.json()["text"].lower(), answer.json()["text"]
    [lookup] = [
        call
        for call in front.sandbox.http.sink.calls()[before:]
        if call["method"] == "usergroups.users.list"
    ]
    assert lookup["params"]["usergroup"] == group and lookup["params"]["team_id"] == TEAM
