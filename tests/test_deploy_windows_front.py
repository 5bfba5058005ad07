"""Deploy windows end to end: signed `/deploy` requests through `main.py`, and the CLI.

The clock stands on Friday 2025-03-28 17:00 in Berlin (`DEPLOYER_WINDOW_NOW`, honoured
only against the sandbox), inside `deny = ["Fri 16:00-Mon 09:00"]`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.deploy_windows import NOW_ENV
from deployer.pipeline.record import State
from tests.engine_world import World, world_fixture  # noqa: F401
from tests.front_world import FrontWorld, in_process, make_front

FRIDAY_EVENING = "2025-03-28T17:00:00+01:00"
THURSDAY_NOON = "2025-03-27T12:00:00+01:00"
WINDOWS = {"timezone": "Europe/Berlin", "deny": ["Fri 16:00-Mon 09:00"]}
OPENS = (
    "deploys to prod are closed until Mon 2025-03-31 09:00 Europe/Berlin (07:00 UTC), "
    "2 days 15 hours from now (deny Fri 16:00-Mon 09:00)"
)


@pytest.fixture
def front(world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    """A front whose prod closes for the weekend; `front.other` is an admin here."""
    made = make_front(world, gcp)
    made.people[made.other] = "ADMIN"
    world.reconfigure(
        environment={
            "windows": WINDOWS,
            "allow": {
                "slack_users": [made.user, made.other],
                "slack_channels": [made.channel],
                "admins": [made.other],
            },
        }
    )
    os.environ[NOW_ENV] = FRIDAY_EVENING
    with in_process(made, repo_root) as ready:
        yield ready


def text_of(answer_json: dict[str, object]) -> str:
    return str(answer_json.get("text", ""))


def parent_and_replies(front: FrontWorld, deploy_id: str) -> tuple[str, list[str]]:
    """The deploy's thread as Slack shows it: the parent's blocks, and each reply's text."""
    box = front.world.store().outbox_read(deploy_id)
    assert box is not None
    ts = json.loads(box.body)["ts"]
    messages = front.messages()
    parent = next(m for m in messages if m.get("ts") == ts)
    blocks = "\n".join(
        str(block.get("text", {}).get("text", "")) for block in parent.get("blocks", [])
    )
    replies = [
        str(m.get("text", "")) for m in messages if m.get("thread_ts") == ts and m is not parent
    ]
    return blocks, replies


def test_chat_refuses_in_the_window_and_an_admin_breaks_glass(
    front: FrontWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    builds, count = front.world.build_ids(), len(front.records())

    refused = front.command("prod main")
    assert refused.status == 200
    assert OPENS in text_of(refused.json())
    assert "Nothing was locked or built" in text_of(refused.json())
    # A non-admin's break-glass is refused privately, too.
    glass_denied = front.command('prod main --break-glass "it is urgent"')
    assert "Only prod's admins may deploy with --break-glass." in text_of(glass_denied.json())
    assert len(front.records()) == count
    assert front.world.build_ids() == builds
    assert front.world.store().locks("prod") == []

    # The admin breaks glass: it deploys, and says so in the parent, a reply and the record.
    front.world.commit("the hotfix")
    started = front.command('prod main --break-glass "hotfix for outage"', user=front.other)
    assert text_of(started.json()).startswith("Started deploy")
    done = front.finished(front.newest().id)
    assert done.state == State.SUCCEEDED, done.error
    assert done.break_glass is not None
    assert (done.break_glass.by, done.break_glass.reason, done.break_glass.window) == (
        f"slack:{front.other}",
        "hotfix for outage",
        "deny Fri 16:00-Mon 09:00",
    )
    loud = f"🚨 *Break-glass* by <@{front.other}>: “hotfix for outage” (prod deploy window overrides deny Fri 16:00-Mon 09:00)"
    parent, replies = parent_and_replies(front, done.id)
    assert loud in parent
    assert loud.replace("*", "") in replies  # a reply's notification text, as Slack keeps it
    assert front.world.serving() == [(done.candidate_revision, 100)]

    # `deployer show --json` carries it for scripts.
    code, out, _ = front.world.cli(capsys, "show", done.id, "--json")
    assert code == 0
    assert json.loads(out)["break_glass"]["window"] == "deny Fri 16:00-Mon 09:00"

    # Rollbacks are never blocked by a window.
    rolled = front.command("rollback prod")
    assert text_of(rolled.json()).startswith("Started rollback")
    back = front.finished(front.newest().id)
    assert back.state == State.SUCCEEDED, back.error
    assert front.world.serving() == [(front.world.first.candidate_revision, 100)]


def test_an_open_window_lets_a_deploy_through_and_a_queued_one_waits_no_further(
    front: FrontWorld,
) -> None:
    os.environ[NOW_ENV] = THURSDAY_NOON
    # A deploy whose build hangs holds prod; another queues behind it while the window is open.
    front.world.commit("a slow build")  # a new commit: a build of its own, which hangs
    front.sandbox.faults.arm("build_hang")
    assert text_of(front.command("prod").json()).startswith("Started deploy")
    first = front.newest()
    front.wait(lambda r: r.state == State.RUNNING and bool(r.build_id), first.id)
    assert "next in line" in text_of(front.command("prod --queue").json())
    waiting = front.newest()
    assert waiting.state == State.QUEUED
    # The first ends on Friday evening: the waiter would start in the closed window.
    os.environ[NOW_ENV] = FRIDAY_EVENING
    front.world.store().request_cancel(first.id, f"slack:{front.user}")
    assert front.finished(first.id).state == State.CANCELLED
    ended = front.wait(lambda r: r.state.finished, waiting.id)
    assert ended.state == State.CANCELLED
    assert ended.error == f"not started: {OPENS}"
    assert ended.build_id is None
    assert front.world.store().locks("prod") == []

    # Back on Thursday, a plain deploy passes.
    os.environ[NOW_ENV] = THURSDAY_NOON
    started = front.command("prod")
    assert text_of(started.json()).startswith("Started deploy")
    done = front.finished(front.newest().id)
    assert done.state == State.SUCCEEDED and done.break_glass is None


def test_cli_refuses_in_the_window_then_breaks_glass(
    world: World, gcp: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    world.reconfigure(environment={"windows": WINDOWS})
    os.environ[NOW_ENV] = FRIDAY_EVENING
    builds, count = world.build_ids(), len(world.store().history("prod", 100))

    code, out, err = world.cli(capsys, "deploy", "prod")
    assert code != 0
    assert err.startswith(f"deployer: {OPENS}. Nothing was started;")
    assert "--break-glass REASON" in err
    assert world.build_ids() == builds
    assert len(world.store().history("prod", 100)) == count

    world.commit("the hotfix")
    code, out, err = world.cli(capsys, "deploy", "prod", "--break-glass", "hotfix for outage")
    assert code == 0, out + err
    done = world.store().history("prod", 1)[0]
    assert done.state == State.SUCCEEDED
    code, shown, _ = world.cli(capsys, "show", done.id)
    assert "BREAK-GLASS by cli:" in shown
    assert ": hotfix for outage, overriding deny Fri 16:00-Mon 09:00" in shown

    code, out, err = world.cli(capsys, "rollback", "prod")
    assert code == 0, out + err
