"""`deployer promote`, `deployer approve` and `deployer reject` as a person at a terminal
runs them (`deployer.cli.main`), against the sandbox through the real clients."""

from __future__ import annotations

import json

import pytest

from deployer.pipeline.record import State
from tests.engine_world import ENVIRONMENT, World, world_fixture  # noqa: F401
from tests.test_environment_targets import STAGING, add_staging

AWAITING = 3  # the exit status of a deploy left awaiting approval


def as_user(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Who the CLI says runs it (`cli:<user>`, from getpass: LOGNAME, then USER)."""
    monkeypatch.setenv("LOGNAME", name)
    monkeypatch.setenv("USER", name)


def test_promote_approve_and_reject_from_a_terminal(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    add_staging(world)
    world.reconfigure(
        environment={"promote_from": STAGING, "approval": {"approvers": ["U0TESTER1"]}}
    )
    as_user(monkeypatch, "alice")
    world.commit("for staging")
    code, out, err = world.cli(capsys, "deploy", STAGING)
    assert code == 0, out + err
    builds = world.build_ids()
    before = world.serving()

    # The promotion parks: exit 3, and the terminal says how to approve.
    code, out, err = world.cli(capsys, "promote", STAGING, ENVIRONMENT)
    assert code == AWAITING, out + err
    parked = world.store().history(ENVIRONMENT, 1)[0]
    assert parked.state == State.AWAITING_APPROVAL and parked.promoted_from == STAGING
    assert f"deployer approve {parked.id}" in out
    assert "nothing built: promoting sha256:" in out
    assert world.build_ids() == builds and world.serving() == before

    # alice asked for it: she may not approve it.
    code, out, err = world.cli(capsys, "approve", parked.id)
    assert code == 1 and "someone else must approve it" in err

    # bob approves: the deploy resumes in his terminal and moves traffic.
    as_user(monkeypatch, "bob")
    code, out, err = world.cli(capsys, "approve", parked.id)
    assert code == 0, out + err
    assert f"{parked.id} approved by cli:bob; resuming it here" in out
    done = world.store().get(parked.id)
    assert done is not None and done.state == State.SUCCEEDED, done and done.error
    assert world.serving() == [(done.candidate_revision, 100)]
    code, out, _ = world.cli(capsys, "show", done.id, "--json")
    shown = json.loads(out)
    assert shown["promoted_from"] == STAGING
    assert shown["approval"]["votes"][0]["who"] == "cli:bob"
    code, out, _ = world.cli(capsys, "approve", done.id)
    assert code == 1  # not waiting any more

    # A plain deploy parks too; a rejection ends it with traffic untouched.
    world.commit("not wanted")
    as_user(monkeypatch, "alice")
    code, out, _ = world.cli(capsys, "deploy", ENVIRONMENT)
    assert code == AWAITING
    parked = world.store().history(ENVIRONMENT, 1)[0]
    serving = world.serving()
    as_user(monkeypatch, "bob")
    code, out, err = world.cli(capsys, "reject", parked.id, "--reason", "wrong week")
    assert code == 1, out + err  # the deploy it resumed failed, as asked
    rejected = world.store().get(parked.id)
    assert rejected is not None and rejected.state == State.FAILED
    assert rejected.error == "approval: rejected by cli:bob: wrong week"
    assert world.serving() == serving
    assert "traffic untouched" in out


def test_a_parked_deploy_never_moves_traffic_unapproved_once_approval_is_removed(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked for when prod wanted an approval: with the table gone, a run that picks the
    parked deploy up (a lost run revived) moves traffic only on the approvals it has."""
    from tests.engine_world import Recorder

    world.reconfigure(environment={"approval": {"approvers": ["U0TESTER1"]}})
    as_user(monkeypatch, "alice")
    world.commit("asked for under approval")
    code, _, _ = world.cli(capsys, "deploy", ENVIRONMENT)
    assert code == AWAITING
    parked = world.store().history(ENVIRONMENT, 1)[0]
    serving = world.serving()

    engine = world.reconfigure(environment={"approval": None})
    done = engine.resume(parked.id, Recorder())
    assert done.state == State.FAILED
    assert done.error.startswith("approval: prod no longer asks for approval")
    assert world.serving() == serving
    assert world.store().locks(ENVIRONMENT) == []
