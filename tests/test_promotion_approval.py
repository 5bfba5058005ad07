"""Promotion and approvals end to end: signed Slack requests through `main.py`, buttons
clicked as they were drawn in the thread (their action ids and values read back from the
sandbox's Slack), deploys dispatched inline, Cloud Run and Cloud Build read through the
real clients.

staging (Cloud Run service `backend-staging`, in a project of its own) is deployed; prod
takes staging's image by promotion, with no build, and waits for one approval from
APPROVER before its traffic moves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import run_v2

from deployer.front.context import close_contexts
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State
from tests.engine_world import ENVIRONMENT, World, thread_sent, world_fixture  # noqa: F401
from tests.front_requests import block_action
from tests.front_world import FrontWorld, in_process, make_front, unique
from tests.test_environment_targets import STAGING, add_staging, serving, staging_name

PROD = ENVIRONMENT


@pytest.fixture
def front(world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    """USER may deploy staging and prod, and approve prod's deploys (not their own);
    APPROVER approves prod's deploys; OTHER is nobody."""
    made = make_front(world, gcp)
    approver = unique("U")
    gcp.http.sink.add_user(approver, "approver")
    made.people[approver] = "APPROVER"
    project = add_staging(world)
    world.reconfigure(
        environment={
            "promote_from": STAGING,
            "approval": {"required": 1, "approvers": [made.user, approver], "timeout": 120},
        }
    )
    made.env["STAGING_PROJECT"] = project
    made.env["APPROVER"] = approver
    with in_process(made, repo_root) as ready:
        yield ready


def approver(front: FrontWorld) -> str:
    return front.env["APPROVER"]


def text_of(answer: Any) -> str:
    return str(answer.json().get("text", "")) if answer.text.strip() else ""


def newest(front: FrontWorld, environment: str) -> DeployRecord:
    return front.world.store().history(environment, 1)[0]


def parent_of(front: FrontWorld, deploy_id: str) -> dict[str, Any]:
    """The deploy's thread parent as the sandbox's Slack holds it."""
    ts = front.posted(deploy_id)
    return next(m for m in front.messages() if m.get("ts") == ts)


def buttons(front: FrontWorld, deploy_id: str) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """label -> (action_id, value, the button) of the parent's buttons, as drawn."""
    found = {}
    for block in parent_of(front, deploy_id).get("blocks", []):
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            label = element["text"]["text"]
            found[label] = (element["action_id"], element.get("value", ""), element)
    return found


def click(front: FrontWorld, deploy_id: str, label: str, user: str, times: int = 1) -> Any:
    """Click the button labelled `label` on the deploy's parent, as `user` (`times` in a
    row, on the button as drawn: a double click)."""
    action_id, value, _ = buttons(front, deploy_id)[label]
    ts = front.posted(deploy_id)
    for _ in range(times - 1):
        _click(front, action_id, value, ts, user)
    return _click(front, action_id, value, ts, user)


def _click(front: FrontWorld, action_id: str, value: str, ts: str, user: str) -> Any:
    url = front.sandbox.http.mint_response_url(channel=front.channel, user=user, message_ts=ts)
    return front.send(
        block_action(
            front.signing_secret,
            action_id,
            value,
            user=user,
            channel=front.channel,
            message_ts=ts,
            response_url=url,
        )
    )


def told(front: FrontWorld, user: str) -> list[str]:
    """What `user` was told privately (button answers go to the response URL)."""
    return [
        str(m.get("text", ""))
        for m in front.messages()
        if (m.get("ephemeral") or m.get("response_url")) and m.get("user_target") == user
    ]


def thread(front: FrontWorld, deploy_id: str) -> str:
    """The parent's blocks and every reply's text."""
    ts = front.posted(deploy_id)
    messages = front.messages()
    parent = next(m for m in messages if m.get("ts") == ts)
    blocks = [str(b.get("text", {}).get("text", "")) for b in parent.get("blocks", [])]
    replies = [str(m.get("text", "")) for m in messages if m.get("thread_ts") == ts]
    return "\n".join(blocks + replies)


def awaiting(front: FrontWorld, deploy_id: str) -> DeployRecord:
    """The record once it parked (or ended) and Slack shows all it was sent."""
    store = front.world.store()
    record = front.wait(
        lambda r: r.state not in (State.RUNNING, State.PENDING) and thread_sent(store, r.id),
        deploy_id,
    )
    assert record.state == State.AWAITING_APPROVAL, record.error
    front.settle()
    return record


def deploy_staging(front: FrontWorld, message: str) -> DeployRecord:
    front.world.commit(message)
    answer = front.command("staging main")
    assert text_of(answer).startswith("Started deploy"), text_of(answer)
    done = front.finished(newest(front, STAGING).id)
    assert done.state == State.SUCCEEDED, done.error
    return done


def tag_of(world: World, name: str, tag: str = "candidate") -> list[str]:
    service: run_v2.Service = world.services.get_service(name=name, timeout=30)
    return [s.revision.rsplit("/", 1)[-1] for s in service.traffic_statuses if s.tag == tag]


def test_promote_button_reuses_the_digest_and_waits_for_one_approval(
    front: FrontWorld, gcp: Sandbox
) -> None:
    world = front.world
    staging = staging_name(front.env["STAGING_PROJECT"])
    first = deploy_staging(front, "first for staging")
    second = deploy_staging(front, "second for staging")
    assert first.image != second.image
    assert "Environment *staging* · service `backend-staging`" in thread(front, second.id)
    builds = world.build_ids()
    prod_before = world.serving()

    # The first thread's button was drawn for the image staging no longer serves: the
    # click is refused at once, naming both, and nothing is recorded.
    label = f"Promote to {PROD}"
    assert label in buttons(front, first.id)
    count = len(front.records())
    new_digest, old_digest = (r.image.partition("@")[2][:19] for r in (second, first))  # type: ignore[union-attr]
    click(front, first.id, label, front.user)
    refusal = f"staging now runs {new_digest} (deploy {second.id}), not {old_digest}"
    assert any(refusal in text for text in told(front, front.user)), told(front, front.user)
    assert len(front.records()) == count and world.serving() == prod_before

    # The second thread's button promotes what staging serves: no build, staging's digest.
    click(front, second.id, label, front.user)
    promoted = awaiting(front, newest(front, PROD).id)
    assert promoted.image == second.image and promoted.commit == second.commit
    assert world.build_ids() == builds  # Cloud Build ran nothing
    assert world.serving() == prod_before  # traffic waits for the approval
    assert tag_of(world, world.service_name) == [promoted.candidate_revision]
    asked = thread(front, promoted.id)
    assert "Approval needed" in asked and promoted.candidate_url in asked
    assert {"Approve", "Reject"} <= set(buttons(front, promoted.id))
    _, _, approve_button = buttons(front, promoted.id)["Approve"]
    assert approve_button["confirm"]["confirm"]["text"] == "Approve"  # Slack's confirm dialog
    assert serving(world, staging) == [(second.candidate_revision, 100)]

    # Neither the requester nor a stranger may approve; each is told privately.
    click(front, promoted.id, "Approve", front.user)
    click(front, promoted.id, "Approve", front.other)
    assert any("someone else must approve it" in text for text in told(front, front.user))
    assert any("Only prod's approvers may approve" in text for text in told(front, front.other))
    assert front.world.store().get(promoted.id).state == State.AWAITING_APPROVAL  # type: ignore[union-attr]

    # The approver double-clicks: it approves once, and traffic moves.
    click(front, promoted.id, "Approve", approver(front), times=2)
    done = front.finished(promoted.id)
    assert done.state == State.SUCCEEDED, done.error
    assert [(v.who, v.verdict) for v in done.votes] == [(f"slack:{approver(front)}", "approve")]
    assert world.serving() == [(done.candidate_revision, 100)]
    assert world.build_ids() == builds
    # Its health passed in full before the wait; after it, one good answer is asked again.
    health = [r.summary for r in done.stages if r.stage == Stage.HEALTH]
    assert len(health) == 2 and health[1].startswith(
        "still after the wait for approval: healthy 1x"
    )
    approval = done.stage(Stage.APPROVAL)
    assert approval is not None and approval.summary.startswith(
        f"approved by slack:{approver(front)}"
    )
    story = thread(front, done.id)
    assert f"Approved by <@{approver(front)}> (1 of 1)" in story
    assert "promoted from *staging*" in story
    assert any("counts once" in text for text in told(front, approver(front)))

    # Status says where prod's revision came from.
    status = json.dumps(front.command("status prod").json()["blocks"])
    assert done.candidate_revision in status and "promoted from *staging*" in status


def test_reject_and_timeout_leave_traffic_untouched_and_remove_the_tag(
    front: FrontWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    world = front.world
    deploy_staging(front, "for the rejected promotion")
    before = world.serving()

    answer = front.command("promote staging prod")
    assert text_of(answer).startswith("Started deploy"), text_of(answer)
    parked = awaiting(front, newest(front, PROD).id)
    assert tag_of(world, world.service_name) == [parked.candidate_revision]
    front.command(f"reject {parked.id} not on a Friday", user=approver(front))
    rejected = front.finished(parked.id)
    assert rejected.state == State.FAILED
    stage = rejected.stage(Stage.APPROVAL)
    assert stage is not None
    assert stage.summary == f"rejected by slack:{approver(front)}: not on a Friday"
    assert world.serving() == before
    assert tag_of(world, world.service_name) == []
    assert [(v.who, v.verdict) for v in rejected.votes] == [(f"slack:{approver(front)}", "reject")]
    story = thread(front, parked.id)
    assert f"Tag candidate removed from {parked.candidate_revision}" in story
    assert f"traffic stayed on `{before[0][0]}` 100%" in story

    # Nobody answers within the timeout: the sweep wakes it, and it ends the same way.
    world.reconfigure(environment={"approval": {"timeout": 1}})
    close_contexts()  # the front reads its config anew, as a new instance would
    answer = front.command("promote staging prod")
    parked = awaiting(front, newest(front, PROD).id)
    time.sleep(max(0.0, (parked.approval_due_at or 0) - time.time()) + 0.2)
    code, out, _ = world.cli(capsys, "sweep")
    assert code == 0 and f"awaiting approval, decided or out of time: {parked.id}" in out
    timed_out = front.finished(parked.id)
    assert timed_out.state == State.FAILED
    stage = timed_out.stage(Stage.APPROVAL)
    assert stage is not None and stage.outcome == Outcome.TIMED_OUT
    assert stage.summary.startswith("no approval within 1s")
    assert world.serving() == before
    assert tag_of(world, world.service_name) == []


def test_promotion_is_refused_while_staging_is_split_or_unhealthy(
    front: FrontWorld, gcp: Sandbox
) -> None:
    world = front.world
    staging = staging_name(front.env["STAGING_PROJECT"])
    first = deploy_staging(front, "one")
    second = deploy_staging(front, "two")
    before = world.serving()

    # Staging rolled back to the first revision: the store cannot tell what serves, so the
    # second thread's button starts a promotion, whose preflight reads Cloud Run and
    # refuses it, naming both digests.
    front.command("rollback staging")
    back = front.finished(newest(front, STAGING).id)
    assert back.state == State.SUCCEEDED, back.error
    assert serving(world, staging) == [(first.candidate_revision, 100)]
    click(front, second.id, f"Promote to {PROD}", front.user)
    stale = front.finished(newest(front, PROD).id)
    assert stale.state == State.FAILED and stale.promoted_from == STAGING
    now, drawn = (r.image.partition("@")[2][:19] for r in (first, second))  # type: ignore[union-attr]
    assert (
        f"staging now serves {now} ({first.candidate_revision}), not {drawn} that the button "
        "was drawn for" in stale.error
    )
    assert world.serving() == before

    # Staging split by hand between two revisions.
    service = world.services.get_service(name=staging, timeout=30)
    del service.traffic[:]
    for revision in (first.candidate_revision, second.candidate_revision):
        service.traffic.append(
            run_v2.TrafficTarget(
                type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
                revision=revision,
                percent=50,
            )
        )
    world.services.update_service(service=service, timeout=30).result(timeout=60)
    front.command("promote staging prod")
    split = front.finished(newest(front, PROD).id)
    assert split.state == State.FAILED
    assert f"staging serves {first.candidate_revision} 50%, {second.candidate_revision} 50%" in (
        split.error
    )

    # Back to one revision, which now answers its health check with 500.
    service = world.services.get_service(name=staging, timeout=30)
    del service.traffic[:]
    service.traffic.append(
        run_v2.TrafficTarget(
            type_=run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION,
            revision=second.candidate_revision,
            percent=100,
        )
    )
    world.services.update_service(service=service, timeout=30).result(timeout=60)
    gcp.faults.arm("health_500", revision=second.candidate_revision, times=100)
    front.command("promote staging prod")
    sick = front.finished(newest(front, PROD).id)
    assert sick.state == State.FAILED and "staging is unhealthy" in sick.error
    gcp.faults.clear()

    # Mid-rollout: a staging deploy holds staging's lock while the promotion starts.
    world.commit("three")
    front.command("staging main")
    running = newest(front, STAGING)
    front.command("promote staging prod")
    busy = front.finished(newest(front, PROD).id)
    assert busy.state == State.FAILED
    assert f"staging is mid-rollout: deploy {running.id}" in busy.error
    front.finished(running.id)
    assert world.serving() == before
