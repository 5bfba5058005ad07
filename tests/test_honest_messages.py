"""Messages claim only what was checked: the health stage names a commit only when its
version field was compared, and a dry run never calls itself a success.

The deploys run against the sandbox through the real clients; what they left behind
is read back through those clients, not taken from the deployer's word.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from deployer import logs
from deployer.config import HealthCheck
from deployer.front import messages
from deployer.front.thread import SlackThread
from deployer.pipeline.events import DeployFinished
from deployer.pipeline.probes import passed
from deployer.pipeline.record import DeployRecord, Outcome, Stage, StageResult, State
from deployer.terminal import summary
from tests.engine_world import ENVIRONMENT, World, world_fixture  # noqa: F401
from tests.test_front_messages import deploy

COMMIT = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
DRY_RUN_END = "dry run: nothing was changed"
HEX = re.compile(r"\b[0-9a-f]{12,40}\b")


def health_of(record: DeployRecord) -> StageResult:
    result = record.stage(Stage.HEALTH)
    assert result is not None and result.outcome == Outcome.SUCCEEDED
    return result


# --- the health stage's words ------------------------------------------------------------


def test_passed_names_the_commit_only_with_a_version_field() -> None:
    assert passed(HealthCheck(), COMMIT) == (
        "healthy 3x (/health 200, status=healthy), reports 1a2b3c4d5e6f in version.commit"
    )
    assert passed(HealthCheck(version_field=""), COMMIT) == (
        "healthy 3x (/health 200, status=healthy)"
    )
    check = HealthCheck(
        path="/ready", expect_status=204, expect_json={}, version_field="", consecutive=1
    )
    assert passed(check, COMMIT) == "healthy 1x (/ready 204)"
    nested = HealthCheck(expect_json={"ok": True, "db": {"up": 1}}, version_field="build.sha")
    assert passed(nested, COMMIT) == (
        'healthy 3x (/health 200, ok=true, db={"up": 1}), reports 1a2b3c4d5e6f in build.sha'
    )


def test_a_checked_version_field_names_the_commit(world: World) -> None:
    """The world's first deploy checked `version.commit` (the default)."""
    first = world.first
    assert first.commit is not None
    result = health_of(first)
    assert result.summary == (
        f"healthy 2x (/health 200, status=healthy), reports {first.commit[:12]} in version.commit"
    )
    reply = messages.stage_reply(first, result)
    assert reply is not None
    assert reply.text == f"Health check passed: {result.summary}"


def test_without_a_version_field_no_commit_is_named(world: World) -> None:
    world.reconfigure(service={"health": {"version_field": ""}})
    commit = world.commit("no version check")

    record, events = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    assert record.commit == commit
    result = health_of(record)
    assert result.summary == "healthy 2x (/health 200, status=healthy)"
    [line] = [ln for ln in events.text.getvalue().splitlines() if " health ok in " in ln]
    assert line.endswith(": healthy 2x (/health 200, status=healthy)")
    assert not HEX.search(line) and "reports" not in line
    reply = messages.stage_reply(record, result)
    assert reply is not None
    assert reply.text == "Health check passed: healthy 2x (/health 200, status=healthy)"
    # As the store keeps it, for `deployer show` and `--json`.
    saved = world.store().get(record.id)
    assert saved is not None and health_of(saved).summary == result.summary


# --- dry runs ----------------------------------------------------------------------------


def test_a_dry_run_ends_saying_nothing_was_changed_and_changes_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    commit = world.commit("only planned")
    service = world.service()
    builds, revisions, traffic = world.build_ids(), world.revision_names(), world.traffic()
    history = [r.id for r in world.engine.history(ENVIRONMENT)]
    os.environ["DEPLOYER_LOG_FORMAT"] = "json"

    code, out, err = world.cli(capsys, "deploy", ENVIRONMENT, "--dry-run")

    assert code == 0, out + err
    assert out.rstrip().endswith("\n" + DRY_RUN_END), out
    assert "passed preflight" in out and f"build HEAD = {commit[:12]}" in out
    assert "succeeded" not in out
    # Nothing changed, as the clients read it back: no build, no revision, same traffic,
    # the service not written to; no record, no lock.
    assert world.build_ids() == builds
    assert world.revision_names() == revisions
    assert world.traffic() == traffic
    after = world.service()
    assert (after.generation, after.etag, after.update_time) == (
        service.generation,
        service.etag,
        service.update_time,
    )
    assert [r.id for r in world.engine.history(ENVIRONMENT)] == history
    assert world.store().locks(ENVIRONMENT) == []
    # Scripts reading the log keep the state they had (succeeded); its words say dry run.
    entries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    [ended] = [e for e in entries if " ended: " in e.get("message", "")]
    assert ended["state"] == "succeeded" and ended["dry_run"] is True
    assert ended["message"].endswith("ended: passed preflight; " + DRY_RUN_END)


def test_a_failed_dry_run_also_ends_saying_nothing_was_changed(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.reconfigure(environment={"secrets": {"API_TOKEN": "api-token"}})
    builds = world.build_ids()

    code, out, _ = world.cli(capsys, "deploy", ENVIRONMENT, "--dry-run")

    assert code == 1
    assert "API_TOKEN: secret api-token not found" in out
    assert out.rstrip().endswith("\n" + DRY_RUN_END), out
    assert world.build_ids() == builds


def dry_run_record() -> DeployRecord:
    """The record a dry run leaves: preflight passed, nothing after it."""
    return deploy(
        commit=None,
        previous_revision=None,
        baseline_traffic=None,
        state=State.SUCCEEDED,
        created_at=time.time(),
        stages=[StageResult(Stage.PREFLIGHT, Outcome.SUCCEEDED, time.time(), 0.4, "ok")],
    )


def test_a_dry_run_summary_and_parent_never_claim_success() -> None:
    record = dry_run_record()

    text = summary(record, dry_run=True)
    assert text == f"deploy {record.id} of prod passed preflight\n{DRY_RUN_END}"
    assert summary(record).endswith("succeeded")  # a real deploy's words are unchanged

    parent = messages.deploy_parent(record, time.time(), dry_run=True)
    assert parent.text == f"Deploy of v1.4.2 to prod passed preflight; {DRY_RUN_END}"
    # Nothing to roll back, and a retry would deploy for real.
    assert not [b for b in parent.blocks if b["type"] == "actions"]
    plan = messages.plan_reply(("build HEAD",))
    assert "nothing changed" not in plan.text and plan.text.startswith("Plan (dry run):")


class KeptOutbox:
    """The two outbox calls a thread listener makes, kept for reading."""

    def __init__(self) -> None:
        self.replies: list[messages.SlackMessage] = []
        self.parents: list[tuple[messages.SlackMessage, bool]] = []

    def reply(self, deploy_id: str, message: messages.SlackMessage, during_run: bool) -> None:
        self.replies.append(message)

    def parent(self, deploy_id: str, message: messages.SlackMessage, final: bool) -> None:
        self.parents.append((message, final))


def test_the_thread_renders_a_dry_run_as_one() -> None:
    record = dry_run_record()
    record.slack_channel = "C0TESTS01"
    outbox = KeptOutbox()
    thread = SlackThread(outbox, record)  # type: ignore[arg-type]

    thread(DeployFinished(record, ("build HEAD",), dry_run=True))

    [(parent, final)] = outbox.parents
    assert final and parent.text == f"Deploy of v1.4.2 to prod passed preflight; {DRY_RUN_END}"
    assert not [b for b in parent.blocks if b["type"] == "actions"]
    assert [r.text for r in outbox.replies] == ["Plan (dry run):\n• build HEAD"]


def test_a_dry_run_log_line_keeps_the_state_and_says_nothing_was_changed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    os.environ["DEPLOYER_LOG_FORMAT"] = "json"
    logs.configure()
    record = dry_run_record()

    logs.log_events(DeployFinished(record, ("build HEAD",), dry_run=True))
    logs.log_events(DeployFinished(record))

    dry, real = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert dry["state"] == real["state"] == "succeeded"
    assert dry["message"] == f"deploy {record.id} of prod ended: passed preflight; {DRY_RUN_END}"
    assert dry["dry_run"] is True and "dry_run" not in real
    assert real["message"] == f"deploy {record.id} of prod ended: succeeded"
