"""Records for scripts: `deployer show ID [--json]`, `history ENV --json`, `status --json`.

A real deploy in a test world, read back as a script would; and the documented
shapes on hand-made records (queued, abandoned with notes, holding a lease).
"""

from __future__ import annotations

import getpass
import json
import re
from pathlib import Path
from typing import Any

import pytest

from deployer import records_json
from deployer.engine import EnvironmentStatus, RevisionStatus
from deployer.front.thread_box import ThreadBox
from deployer.pipeline.ports import HealthOutcome
from deployer.pipeline.record import (
    DEPLOY_STAGES,
    DeployRecord,
    Lock,
    Note,
    Outcome,
    Share,
    Stage,
    StageResult,
    State,
)
from deployer.terminal import render_record
from tests.engine_world import ENVIRONMENT, World, world_fixture  # noqa: F401

ME = f"cli:{getpass.getuser()}"
RECORD_FIELDS = [
    "id",
    "kind",
    "environment",
    "service",
    "state",
    "requester",
    "source",
    "commit",
    "build_id",
    "build_log_url",
    "image",
    "rebuild",
    "build_reused",
    "reused_from",
    "candidate_revision",
    "target_revision",
    "previous_revision",
    "baseline_traffic",
    "final_traffic",
    "stages",
    "error",
    "attempt",
    "running_stage",
    "cancel_requested",
    "cancelled_by",
    "abandoned_by",
    "queued_at",
    "notes",
    "slack_channel",
    "slack_ts",
    "thread_url",
    "created_at",
    "updated_at",
    "lock",
    "break_glass",
    "changes",
    "cloud_run_service",
    "promoted_from",
    "promoted_revision",
    "approval",
    "analysis",
]
STAGE_FIELDS = ["stage", "outcome", "summary", "detail", "started_at", "duration", "link"]
LOCK_FIELDS = [
    "environment",
    "kind",
    "holder",
    "reason",
    "created_at",
    "owner",
    "lease_until",
    "expired",
]
STATUS_FIELDS = [
    "environment",
    "service",
    "location",
    "uri",
    "serving",
    "tagged",
    "health",
    "locks",
    "last",
    "problem",
]
ROW_FIELDS = [
    "revision",
    "percent",
    "tag",
    "commit",
    "image",
    "deploy_id",
    "deployed_by",
    "deployed_at",
    "promoted_from",
]


def served(shares: list[dict[str, Any]] | None) -> list[tuple[str, int]]:
    """(revision, percent) of the shares taking requests, sorted as `world.serving()` is."""
    assert shares is not None
    return sorted((s["revision"], s["percent"]) for s in shares if s["percent"] > 0)


# --- a real deploy, read back by a script ----------------------------------------------


def test_show_history_and_status_as_json_after_a_real_deploy(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    first = world.first
    serving_before = world.serving()
    commit = world.commit("for the scripts")
    record, _ = world.deploy()
    assert record.state == State.SUCCEEDED, record.error
    serving_after = world.serving()
    assert serving_after == [(record.candidate_revision, 100)]

    code, out, _ = world.cli(capsys, "show", record.id, "--json")

    assert code == 0
    shown = json.loads(out)
    assert list(shown) == RECORD_FIELDS
    assert shown["id"] == record.id and shown["kind"] == "deploy"
    assert shown["state"] == "succeeded"
    assert shown["requester"] == "cli:tester"
    assert shown["source"] == {"kind": "cli", "ref": None}
    assert shown["commit"] == commit
    assert shown["candidate_revision"] == record.candidate_revision
    assert shown["previous_revision"] == first.candidate_revision
    assert shown["image"] == record.image and shown["build_id"] == record.build_id
    # The traffic before and after, as the service reported it.
    assert served(shown["baseline_traffic"]) == serving_before
    assert served(shown["final_traffic"]) == serving_after
    assert [s["stage"] for s in shown["stages"]] == [str(stage) for stage in DEPLOY_STAGES]
    assert {s["outcome"] for s in shown["stages"]} == {"succeeded"}
    assert all(list(s) == STAGE_FIELDS for s in shown["stages"])
    assert shown["error"] is None and shown["attempt"] == 1 and shown["running_stage"] is None
    assert shown["lock"] is None  # released at the end
    assert shown["slack_channel"] is None and shown["thread_url"] is None  # from a terminal
    assert shown["created_at"] == record.created_at

    code, out, _ = world.cli(capsys, "history", ENVIRONMENT, "--json")

    assert code == 0
    history = json.loads(out)
    assert [(r["id"], r["state"]) for r in history] == [
        (record.id, "succeeded"),
        (first.id, "succeeded"),
    ]
    assert history[0] == shown
    assert history[1]["baseline_traffic"] == []  # the first deploy created the service

    code, out, _ = world.cli(capsys, "status", "--json")

    assert code == 0
    [status] = json.loads(out)
    assert list(status) == STATUS_FIELDS
    assert status["environment"] == ENVIRONMENT and status["service"] == world.service_id
    assert status["uri"] == world.service().uri and status["problem"] is None
    assert [(row["revision"], row["percent"]) for row in status["serving"]] == serving_after
    [row] = status["serving"]
    assert list(row) == ROW_FIELDS
    assert row["commit"] == commit and row["image"] == record.image
    assert row["deploy_id"] == record.id and row["deployed_by"] == "cli:tester"
    assert status["health"]["ok"] is True
    assert status["last"] == {
        "id": record.id,
        "kind": "deploy",
        "state": "succeeded",
        "requester": "cli:tester",
        "created_at": record.created_at,
    }
    assert status["locks"] == []

    code, text, _ = world.cli(capsys, "show", record.id)

    assert code == 0
    assert text.startswith(f"deploy {record.id} of {ENVIRONMENT} ({world.service_id}): succeeded")
    assert f"commit: {commit}" in text
    assert f"revision: {record.candidate_revision} (previous {first.candidate_revision})" in text
    stage_lines = [line.split()[0] for line in text.splitlines() if re.match(r"  \w+ +ok ", line)]
    assert stage_lines == [str(stage) for stage in DEPLOY_STAGES]
    assert f"traffic before: {first.candidate_revision} 100%" in text
    assert f"traffic after (read back): {record.candidate_revision} 100%" in text
    assert f"image: {record.image}" in text and f"build: {record.build_id}" in text
    assert "lock: not held" in text

    world.assert_no_secrets(json.dumps([shown, history, status]), text)


def test_the_thread_link_comes_from_the_outbox_when_the_record_lacks_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    record = world.first
    assert record.slack_ts is None
    link = "https://example.slack.com/archives/C0TESTS01/p1700000000000100"
    box = ThreadBox(record.id, "C0TESTS01", record.created_at, ts="1700000000.000100")
    box.permalink = link
    assert world.store().outbox_write(record.id, box.to_json(), None, 0)

    code, out, _ = world.cli(capsys, "show", record.id, "--json")

    assert code == 0
    shown = json.loads(out)
    assert (shown["slack_channel"], shown["slack_ts"], shown["thread_url"]) == (
        "C0TESTS01",
        "1700000000.000100",
        link,
    )

    code, text, _ = world.cli(capsys, "show", record.id)

    assert code == 0 and f"thread: {link}" in text


def test_status_json_lists_locks_and_exits_1_on_a_problem(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert world.cli(capsys, "lock", ENVIRONMENT, "--reason", "release freeze")[0] == 0

    code, out, _ = world.cli(capsys, "status", ENVIRONMENT, "--json")

    assert code == 0
    [status] = json.loads(out)
    [held] = status["locks"]
    assert list(held) == LOCK_FIELDS
    assert held["kind"] == "manual" and held["holder"] == ME
    assert held["reason"] == "release freeze"
    assert held["lease_until"] is None and held["expired"] is False

    world.services.delete_service(name=world.service_name, timeout=30).result(timeout=30)

    code, out, _ = world.cli(capsys, "status", ENVIRONMENT, "--json")

    assert code == 1
    [status] = json.loads(out)
    assert status["problem"] == f"service {world.service_id} does not exist"
    assert status["serving"] == [] and status["health"] is None and status["uri"] is None
    assert status["last"]["id"] == world.first.id


def test_show_of_an_unknown_id_exits_1(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["show", "d-nope-000000"], ["show", "d-nope-000000", "--json"]):
        code, out, err = world.cli(capsys, *args)

        assert code == 1
        assert out == ""
        assert "no deploy d-nope-000000" in err


def test_history_json_of_an_unknown_environment_exits_2(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = world.cli(capsys, "history", "staging", "--json")

    assert code == 2 and out == ""
    assert "unknown environment 'staging'" in err


# --- the shapes, on hand-made records --------------------------------------------------

NOW = 1_700_000_000.0


def test_a_queued_record() -> None:
    queued = DeployRecord(
        id="d-queued-aaaaaa",
        kind="deploy",
        environment="prod",
        service="backend",
        requester="slack:U0TESTER1",
        ref="v1.4.2",
        state=State.QUEUED,
        created_at=NOW - 30,
        updated_at=NOW - 30,
        queued_at=NOW - 30,
        slack_channel="C0TESTS01",
    )
    box = ThreadBox(queued.id, "C0TESTS01", NOW - 30, ts="1700000000.000200", permalink="https://x")
    someone_elses = Lock("prod", "deploy", "d-other-bbbbbb", "", NOW - 60, "job:e/0", NOW + 30)

    document = records_json.record(queued, NOW, box, [someone_elses])

    assert list(document) == RECORD_FIELDS
    assert document["state"] == "queued"
    assert document["source"] == {"kind": "slack", "ref": "v1.4.2"}
    assert document["queued_at"] == NOW - 30
    assert document["baseline_traffic"] is None and document["final_traffic"] is None
    assert document["stages"] == [] and document["notes"] == []
    assert document["attempt"] == 0 and document["running_stage"] is None
    assert document["slack_ts"] == "1700000000.000200" and document["thread_url"] == "https://x"
    assert document["lock"] is None  # the lock is another deploy's
    assert document["cancel_requested"] is False and document["cancelled_by"] is None
    assert json.loads(json.dumps(document)) == document

    text = render_record(queued, "https://x", None, NOW)
    assert "queued at 2023-11-14 22:12:50Z" in text and "stages: none yet" in text
    assert "traffic before: not read yet" in text and "thread: https://x" in text
    assert text.endswith("lock: not held")

    asked = records_json.record(queued, NOW, None, [], cancel_asked_by="slack:U0OTHER01")
    assert asked["cancel_requested"] is True and asked["cancelled_by"] == "slack:U0OTHER01"
    assert asked["slack_ts"] is None and asked["thread_url"] is None


def abandoned_record() -> DeployRecord:
    return DeployRecord(
        id="d-abandoned-cccccc",
        kind="deploy",
        environment="prod",
        service="backend",
        requester="github:acme/content-api",
        ref="v2.0.0",
        state=State.ABANDONED,
        created_at=NOW - 600,
        updated_at=NOW - 10,
        commit="c" * 40,
        build_id="build-1",
        build_log_url="https://console.cloud.google.com/cloud-build/builds/build-1",
        image="europe-west1-docker.pkg.dev/p/deployer/backend@sha256:" + "d" * 64,
        previous_revision="backend-old",
        candidate_revision="backend-new",
        stages=[
            StageResult(Stage.PREFLIGHT, Outcome.SUCCEEDED, NOW - 590, 1.5, "ready to build"),
            StageResult(
                Stage.BUILD,
                Outcome.FAILED,
                NOW - 588,
                40.0,
                "build FAILURE at step build",
                detail="line 1\nline 2",
                link="https://console.cloud.google.com/cloud-build/builds/build-1",
            ),
        ],
        error="abandoned by slack:U0ADMIN01: stuck",
        attempt=2,
        running_stage=Stage.DEPLOY,
        slack_channel="C0TESTS01",
        slack_ts="1700000000.000300",
        baseline_traffic=[Share("backend-old", 100), Share("backend-new", 0, "candidate")],
        final_traffic=[Share("backend-old", 100)],
        abandoned_by="slack:U0ADMIN01",
        notes=[
            Note(NOW - 300, "worker lost during deploy; resumed, attempt 2"),
            Note(NOW - 20, "abandoned by slack:U0ADMIN01: stuck"),
        ],
    )


def test_an_abandoned_record_with_notes_holding_an_expired_lease() -> None:
    record = abandoned_record()
    lease = Lock("prod", "deploy", record.id, "", NOW - 600, "job:exec-1/0", NOW - 5)

    document = records_json.record(record, NOW, None, [lease])

    assert document["state"] == "abandoned" and document["abandoned_by"] == "slack:U0ADMIN01"
    assert document["source"] == {"kind": "github", "ref": "v2.0.0"}
    assert document["notes"] == [
        {"at": NOW - 300, "text": "worker lost during deploy; resumed, attempt 2"},
        {"at": NOW - 20, "text": "abandoned by slack:U0ADMIN01: stuck"},
    ]
    assert document["baseline_traffic"] == [
        {"revision": "backend-old", "percent": 100, "tag": None},
        {"revision": "backend-new", "percent": 0, "tag": "candidate"},
    ]
    assert document["final_traffic"] == [{"revision": "backend-old", "percent": 100, "tag": None}]
    assert document["stages"][0] == {
        "stage": "preflight",
        "outcome": "succeeded",
        "summary": "ready to build",
        "detail": None,
        "started_at": NOW - 590,
        "duration": 1.5,
        "link": None,
    }
    assert document["stages"][1]["outcome"] == "failed"
    assert document["stages"][1]["detail"] == "line 1\nline 2"
    assert document["attempt"] == 2 and document["running_stage"] == "deploy"
    assert document["slack_channel"] == "C0TESTS01" and document["slack_ts"] == "1700000000.000300"
    assert document["lock"] == {"owner": "job:exec-1/0", "lease_until": NOW - 5, "expired": True}

    text = render_record(record, "", lease, NOW)

    assert text.startswith("deploy d-abandoned-cccccc of prod (backend): abandoned")
    assert "requested by github:acme/content-api at 2023-11-14 22:03:20Z, ref v2.0.0" in text
    assert "abandoned by slack:U0ADMIN01" in text
    assert "attempt 2;" in text and "now in: deploy" in text
    assert re.search(r"^  preflight +ok +1\.5s  ready to build$", text, re.M)
    assert re.search(r"^  build +FAILED +40\.0s  build FAILURE at step build$", text, re.M)
    assert "      | line 2" in text
    assert "notes:\n  2023-11-14 22:08:20Z  worker lost during deploy; resumed, attempt 2" in text
    assert "traffic before: backend-old 100%, backend-new 0% (tag candidate)" in text
    assert "traffic after (read back): backend-old 100%" in text
    assert "thread: channel C0TESTS01, ts 1700000000.000300" in text
    assert "lock: held by job:exec-1/0, lease until 2023-11-14 22:13:15Z (expired" in text


def test_locks_and_an_environment_status() -> None:
    manual = Lock("prod", "manual", "cli:alice", "release freeze", NOW - 100)
    leased = Lock("prod", "deploy", "d-x", "", NOW - 50, "host:1:ab", NOW + 60)
    assert records_json.lock(manual, NOW) == {
        "environment": "prod",
        "kind": "manual",
        "holder": "cli:alice",
        "reason": "release freeze",
        "created_at": NOW - 100,
        "owner": None,
        "lease_until": None,
        "expired": False,
    }
    assert records_json.lock(leased, NOW)["lease_until"] == NOW + 60
    assert records_json.lock(leased, NOW + 61)["expired"] is True

    row = RevisionStatus(
        "backend-new", 100, "", "c" * 40, "img@sha256:1", "d-x", "t", "cli:bob", 5.0
    )
    tagged = RevisionStatus("backend-old", 0, "candidate", "", "", "", "t")
    status = EnvironmentStatus(
        environment="prod",
        service="backend",
        location="p/europe-west1",
        uri="https://backend.example",
        serving=[row],
        locks=[manual],
        last=abandoned_record(),
        health=HealthOutcome(ok=False, attempts=1, status=500, body="boom", message="HTTP 500"),
        tagged=[tagged],
    )

    document = records_json.environment_status(status, NOW)

    assert list(document) == STATUS_FIELDS
    assert document["serving"] == [
        {
            "revision": "backend-new",
            "percent": 100,
            "tag": None,
            "commit": "c" * 40,
            "image": "img@sha256:1",
            "deploy_id": "d-x",
            "deployed_by": "cli:bob",
            "deployed_at": 5.0,
            "promoted_from": None,
        }
    ]
    assert document["tagged"][0]["tag"] == "candidate"
    assert document["tagged"][0]["commit"] is None and document["tagged"][0]["deployed_at"] is None
    assert document["health"] == {"ok": False, "status": 500, "message": "HTTP 500"}
    assert document["locks"] == [records_json.lock(manual, NOW)]
    assert document["last"] == {
        "id": "d-abandoned-cccccc",
        "kind": "deploy",
        "state": "abandoned",
        "requester": "github:acme/content-api",
        "created_at": NOW - 600,
    }
    assert document["problem"] is None
    assert json.loads(json.dumps(document)) == document


def test_the_readme_documents_every_field(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Records for scripts", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("| `"))
    documented = {
        word for code in re.findall(r"`([^`]+)`", table) for word in re.findall(r"\w+", code)
    }
    nested = STAGE_FIELDS + ROW_FIELDS + ["ref", "at", "text", "ok", "status", "message"]
    every = RECORD_FIELDS + LOCK_FIELDS + STATUS_FIELDS + nested
    assert sorted(set(every) - documented) == []
