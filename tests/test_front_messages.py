"""What the deployer says in Slack: renderings against tests/expected, escaping, Slack's limits."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from deployer.adapters.slack_client import slack_web_client
from deployer.config import Config, HealthCheck
from deployer.engine import EnvironmentStatus, RevisionStatus
from deployer.front import grammar, messages
from deployer.front.messages import SlackMessage
from deployer.front.mrkdwn import code_block
from deployer.pipeline.ports import HealthOutcome
from deployer.pipeline.probes import passed
from deployer.pipeline.record import (
    DeployRecord,
    Lock,
    Outcome,
    Share,
    Stage,
    StageResult,
    State,
)
from tests.slack_thread_text import assert_matches, render_message

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
COMMIT = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b"
OLD_COMMIT = "9f8e7d6c5b4a39281706f5e4d3c2b1a098765432"
DIGEST = "sha256:" + "ab12" * 16
IMAGE = f"europe-west1-docker.pkg.dev/demo/deployer/backend@{DIGEST}"
NEW, OLD = "backend-1a2b3c4-0f0f0f", "backend-9f8e7d6-a1b2c3"
LOG = "https://console.cloud.google.com/cloud-build/builds/b-1?project=demo"


def text_of(message: SlackMessage) -> str:
    return render_message({"text": message.text, "blocks": message.blocks}, "parent") + "\n"


def done(stage: Stage, at: float, took: float, summary: str, **extra: Any) -> StageResult:
    return StageResult(stage, Outcome.SUCCEEDED, T0 + at, took, summary, **extra)


def deploy(**changes: Any) -> DeployRecord:
    record = DeployRecord(
        id="d-lp3x9k2a-0f0f0f",
        kind="deploy",
        environment="prod",
        service="backend",
        requester="slack:U0TESTER1",
        ref="v1.4.2",
        created_at=T0,
        commit=COMMIT,
        previous_revision=OLD,
        baseline_traffic=[Share(OLD, 100)],
    )
    for key, value in changes.items():
        setattr(record, key, value)
    return record


PREFLIGHT = done(Stage.PREFLIGHT, 0, 0.4, f"v1.4.2 is {COMMIT[:12]}; 2 secrets pinned")
BUILT = done(Stage.BUILD, 0.4, 41.3, f"image {IMAGE}", link=LOG)
AFTER_BUILD = [
    done(Stage.DEPLOY, 41.7, 1.2, f"revision {NEW} created at 0% with tag candidate"),
    done(Stage.READY, 42.9, 6.5, f"revision {NEW} ready"),
    done(Stage.HEALTH, 49.4, 0.8, passed(HealthCheck(consecutive=2), COMMIT)),
    done(Stage.PROMOTE, 50.2, 2.1, f"100% on {NEW}"),
]
VERIFIED = done(Stage.VERIFY, 52.3, 0.6, f"https://backend.run.app serves {COMMIT[:12]}")


def test_running_parent() -> None:
    record = deploy(state=State.RUNNING, build_log_url=LOG, stages=[PREFLIGHT])
    message = messages.deploy_parent(record, T0 + 12.8, activity="step build running")
    assert_matches(text_of(message), "parent_running")
    [actions] = [b for b in message.blocks if b["type"] == "actions"]
    [cancel] = actions["elements"]
    assert (cancel["action_id"], cancel["value"]) == ("deploy_cancel", record.id)


def test_success_parent() -> None:
    record = deploy(
        state=State.SUCCEEDED,
        build_log_url=LOG,
        image=IMAGE,
        candidate_revision=NEW,
        stages=[PREFLIGHT, BUILT, *AFTER_BUILD, VERIFIED],
        final_traffic=[Share(NEW, 100)],
    )
    message = messages.deploy_parent(record, T0 + 60)
    assert_matches(text_of(message), "parent_success")
    assert message.text.startswith(f"prod now runs {COMMIT[:12]} on {NEW}")
    buttons = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [("deploy_rollback", record.id)]


def test_failure_parent() -> None:
    failed = StageResult(
        Stage.BUILD,
        Outcome.FAILED,
        T0 + 0.4,
        17.2,
        "build FAILURE at step build",
        'build step 1 "gcr.io/cloud-builders/docker" failed: exit status 1',
        LOG,
    )
    record = deploy(
        state=State.FAILED,
        build_log_url=LOG,
        stages=[PREFLIGHT, failed],
        error="build: build FAILURE at step build",
        final_traffic=[Share(OLD, 100)],
    )
    message = messages.deploy_parent(record, T0 + 30)
    assert_matches(text_of(message), "parent_failure")
    assert message.text.startswith(
        f"Deploy of v1.4.2 to prod failed at build: build FAILURE at step build; traffic stayed on {OLD} 100%"
    )
    buttons = [e for b in message.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], b["value"]) for b in buttons] == [("deploy_retry", record.id)]


def test_rolled_back_parent() -> None:
    unhealthy = StageResult(
        Stage.VERIFY, Outcome.FAILED, T0 + 52.3, 3.1, "service URL unhealthy after promotion: 500"
    )
    back = done(Stage.ROLLBACK, 55.4, 1.9, f"traffic back on {OLD} 100%")
    record = deploy(
        state=State.ROLLED_BACK,
        image=IMAGE,
        candidate_revision=NEW,
        stages=[PREFLIGHT, BUILT, *AFTER_BUILD, unhealthy, back],
        final_traffic=[Share(OLD, 100)],
    )
    text = text_of(messages.deploy_parent(record, T0 + 60))
    assert (
        "failed at verify: service URL unhealthy after promotion: 500; "
        f"rolled back: traffic on `{OLD}` 100%" in text
    )
    assert "✓ *rollback* — done in 1.9s" in text


def test_rollback_parent() -> None:
    record = DeployRecord(
        id="d-lp3xa1b2-c3d4e5",
        kind="rollback",
        environment="prod",
        service="backend",
        requester="github:acme/backend",
        created_at=T0,
        state=State.SUCCEEDED,
        previous_revision=NEW,
        target_revision=OLD,
        commit=OLD_COMMIT,
        stages=[
            done(Stage.PREFLIGHT, 0, 0.3, f"from {NEW} to {OLD}"),
            done(Stage.PROMOTE, 0.3, 1.1, f"100% on {OLD}"),
            done(Stage.VERIFY, 1.4, 0.5, f"https://backend.run.app healthy on {OLD}"),
        ],
    )
    message = messages.deploy_parent(record, T0 + 5)
    assert_matches(text_of(message), "parent_rollback")
    assert not [b for b in message.blocks if b["type"] == "actions"]


def status_fixture() -> list[EnvironmentStatus]:
    last = deploy(state=State.SUCCEEDED, candidate_revision=NEW)
    return [
        EnvironmentStatus(
            environment="prod",
            service="backend",
            location="demo/europe-west1",
            uri="https://backend-abc.run.app",
            serving=[RevisionStatus(NEW, 100, "", COMMIT, IMAGE, last.id, "2023-11-14T22:14:10Z")],
            locks=[Lock("prod", "manual", "slack:U0TESTER2", "<!channel> release freeze", T0 + 90)],
            last=last,
            health=HealthOutcome(True, 1, 200, '{"status": "healthy"}'),
            tagged=[RevisionStatus(OLD, 0, "candidate", OLD_COMMIT, IMAGE, "", "")],
        ),
        EnvironmentStatus(
            environment="staging",
            service="backend-staging",
            location="demo/europe-west1",
            uri="",
            serving=[],
            locks=[],
            last=None,
            health=None,
            problem="service backend-staging does not exist",
        ),
    ]


def test_status() -> None:
    message = messages.status_message(status_fixture())
    assert_matches(text_of(message), "status")
    assert "<!channel>" not in json.dumps(message.blocks)


def config() -> Config:
    service = {
        "project": "demo-project",
        "image": "europe-west1-docker.pkg.dev/demo-project/deployer/backend",
        "region": "europe-west1",
        "service": "backend",
        "source": {"git": "https://github.com/acme/backend.git"},
    }
    return Config.model_validate(
        {
            "services": {"backend": service},
            "environments": {
                "prod": {"service": "backend"},
                "staging": {"service": "backend", "cloud_run_service": "backend-staging"},
            },
        }
    )


def test_help_lists_the_grammar_and_the_environments() -> None:
    message = messages.help_message(config())
    assert_matches(text_of(message), "help")
    text = message.blocks[0]["text"]["text"]
    # Every command of the grammar, and every option of a deploy, with what it does.
    for line in (grammar.__doc__ or "").splitlines():
        if line.strip().startswith("/deploy"):
            command, _, options = line.strip().partition(" [--")
            assert command in text
            for option in options.split(" [--") if options else []:
                assert f"--{option.rstrip('] ')}" in text


def test_history() -> None:
    records = [
        deploy(state=State.SUCCEEDED, candidate_revision=NEW),
        deploy(id="d-lp3w0000-aaaaaa", state=State.FAILED, requester="github:acme/backend"),
    ]
    text = text_of(messages.history_message("prod", records))
    assert text.splitlines()[1:3] == [
        "*prod*: the last 2",
        "• 2023-11-14 22:13Z · deploy `d-lp3x9k2a-0f0f0f` · succeeded · `1a2b3c4d5e6f` → "
        f"`{NEW}` · <@U0TESTER1>",
    ]
    assert "failed · `1a2b3c4d5e6f` · github:acme/backend" in text
    assert "no deploys yet" in text_of(messages.history_message("prod", []))


# --- escaping -------------------------------------------------------------------------------

PING = "<!channel> & <@U0BOSS> <https://evil.example|click>"
SAFE = "&lt;!channel&gt; &amp; &lt;@U0BOSS&gt; &lt;https://evil.example|click&gt;"


def everything(message: SlackMessage) -> str:
    return json.dumps({"text": message.text, "blocks": message.blocks}, ensure_ascii=False)


def test_user_text_is_escaped_everywhere() -> None:
    lock = Lock("prod", "manual", "slack:U0TESTER2", PING, T0)
    failed = StageResult(Stage.PREFLIGHT, Outcome.FAILED, T0, 0.1, f"locked: {PING}", PING)
    record = deploy(ref=PING, state=State.FAILED, stages=[failed], requester=f"cli:{PING}")
    rendered = [
        messages.locked_out(lock),
        messages.lock_taken(lock),
        messages.deploy_parent(record, T0),
        messages.stage_reply(record, failed),
        messages.progress_reply(record, Stage.PREFLIGHT, PING, ""),
        messages.reply(PING),
        messages.denied(f"nope {PING}"),
        messages.history_message("prod", [record]),
        messages.release_note("acme/backend", PING, PING, ""),
    ]
    for message in rendered:
        assert message is not None
        assert "<!channel>" not in everything(message)
        assert "<@U0BOSS>" not in everything(message)
        assert SAFE in everything(message)


def test_denied_keeps_only_channel_links_live() -> None:
    text = messages.denied("`prod` is deployed from <#C0DEPLOYS>, ask <@U0OWNER1> <!here>").text
    assert "<#C0DEPLOYS>" in text and "&lt;@U0OWNER1&gt;" in text and "&lt;!here&gt;" in text


def test_requesters_and_cancellers_are_shown_as_people() -> None:
    cancelled = StageResult(Stage.BUILD, Outcome.CANCELLED, T0, 2.0, "cancelled by slack:U0TESTER2")
    record = deploy(
        state=State.CANCELLED, stages=[PREFLIGHT, cancelled], cancelled_by="slack:U0TESTER2"
    )
    parent = messages.deploy_parent(record, T0 + 5).text
    assert parent.startswith("Deploy of v1.4.2 to prod was cancelled by <@U0TESTER2> during build")
    reply = messages.stage_reply(record, cancelled)
    assert reply is not None and "cancelled by <@U0TESTER2>" in reply.text


# --- replies --------------------------------------------------------------------------------


def test_a_crash_reply_quotes_the_last_15_lines_in_a_code_block() -> None:
    lines = [f"line {n}: <error> & more" for n in range(40)]
    ready = StageResult(
        Stage.READY, Outcome.FAILED, T0, 30.0, f"revision {NEW} is not ready", "\n".join(lines)
    )
    reply = messages.stage_reply(deploy(), ready)
    assert reply is not None
    text = reply.blocks[0]["text"]["text"]
    assert text.startswith(f"*ready failed* after 30.0s: revision {NEW} is not ready\n```\n")
    quoted = text.split("```")[1].strip().splitlines()
    assert quoted == [f"line {n}: &lt;error&gt; &amp; more" for n in range(25, 40)]


def test_successful_stages_stay_quiet_but_health_and_rollback_speak() -> None:
    record = deploy()
    assert messages.stage_reply(record, PREFLIGHT) is None
    assert messages.stage_reply(record, BUILT) is None
    health = messages.stage_reply(record, AFTER_BUILD[2])
    assert health is not None and health.text == (
        f"Health check passed: healthy 2x (/health 200, status=healthy), reports {COMMIT[:12]} "
        "in version.commit"
    )
    back = messages.stage_reply(record, done(Stage.ROLLBACK, 0, 1, f"traffic back on {OLD} 100%"))
    assert back is not None and back.text == f"Rolled back: traffic back on {OLD} 100%"


def test_progress_replies_are_few() -> None:
    record = deploy()
    say = messages.progress_reply
    warning = say(record, Stage.PREFLIGHT, "LOG_LEVEL from env-file skipped: Cloud Run sets it", "")
    assert warning is not None and warning.text.startswith("Warning: LOG_LEVEL")
    step = say(record, Stage.PROMOTE, f"traffic 10% on {NEW} (1/3)", "")
    assert step is not None and step.text == f"Traffic: 10% on {NEW} (1/3)"
    assert say(record, Stage.PROMOTE, f"traffic 100% on {NEW} (1/1)", "") is None
    assert say(record, Stage.BUILD, "build b-1 started", LOG) is None
    assert say(record, Stage.BUILD, "step build running", "") is None
    assert say(record, Stage.HEALTH, "/health: HTTP 500", "") is None


# --- Slack's limits -------------------------------------------------------------------------


def sections(message: SlackMessage) -> list[str]:
    return [b["text"]["text"] for b in message.blocks if b["type"] == "section"]


def test_huge_texts_fit_slack_limits() -> None:
    flood = "<>&" * 5000 + "\n" + "x" * 10_000
    failed = StageResult(Stage.BUILD, Outcome.FAILED, T0, 1, flood, flood, LOG)
    record = deploy(ref="r" * 200, state=State.FAILED, stages=[failed], error=flood)
    statuses = [status_fixture()[0]] * 60
    for message in (
        messages.deploy_parent(record, T0),
        messages.stage_reply(record, failed),
        messages.status_message(statuses),
        messages.history_message("prod", [record] * 200),
        messages.reply(flood),
    ):
        assert message is not None
        assert len(message.blocks) <= 50
        assert all(len(text) <= 3000 for text in sections(message))
        assert all(
            not text.endswith(("&", "&l", "&lt", "&am", "&amp")) for text in sections(message)
        )
        assert len(message.text) <= 3000


def test_a_code_block_of_one_long_line_keeps_its_end() -> None:
    block = code_block("a" * 5000 + "THE END")
    assert block.endswith("THE END\n```") and len(block) < 2000


# --- the client and the sink ------------------------------------------------------------------


@pytest.fixture
def slack(sandbox: Sandbox) -> Iterator[WebClient]:
    sandbox.faults.clear()
    yield slack_web_client("xoxb-messages-test", sandbox.http.url + "/api")
    sandbox.faults.clear()


def test_the_client_is_bounded_and_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api/")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    client = slack_web_client()
    assert (client.base_url, client.token, client.timeout) == (
        "http://127.0.0.1:9/api/",
        "xoxb-from-env",
        5,
    )
    kinds = {type(h): h.max_retry_count for h in client.retry_handlers}
    assert kinds == {
        RateLimitErrorRetryHandler: 3,
        ServerErrorRetryHandler: 2,
        ConnectionErrorRetryHandler: 2,
    }
    monkeypatch.delenv("SLACK_API_URL")
    assert slack_web_client("xoxb-x").base_url == "https://slack.com/api/"


def test_every_message_is_accepted_by_slack(slack: WebClient, sandbox: Sandbox) -> None:
    channel = "C" + uuid.uuid4().hex[:10].upper()
    sandbox.http.sink.add_channel(channel, f"messages-{channel.lower()}")
    record = deploy(state=State.SUCCEEDED, stages=[PREFLIGHT, BUILT], candidate_revision=NEW)
    running = deploy(state=State.RUNNING, stages=[PREFLIGHT])
    lock = Lock("prod", "deploy", running.id, "deploy", T0, "", T0 + 60)
    manual = Lock("prod", "manual", "slack:U0TESTER1", "fix <auth> & cache", T0)
    # The largest renderings too: the sandbox refuses what Slack's Block Kit checks refuse.
    flood = "<>&" * 5000 + "\n" + "x" * 10_000
    failed = StageResult(Stage.BUILD, Outcome.FAILED, T0, 1, flood, flood, LOG)
    huge = deploy(ref="r" * 200, state=State.FAILED, stages=[failed], error=flood)
    for message in (
        messages.deploy_parent(record, T0),
        messages.deploy_parent(running, T0),  # with its Cancel button
        messages.status_message(status_fixture()),
        messages.help_message(config()),
        messages.history_message("prod", [record]),
        messages.busy(lock, running, "https://sandbox.slack.com/archives/C1/p1", True, "v"),
        messages.queued(record, 2, lock),
        messages.started(record),
        messages.never_started(huge),
        messages.forced("prod", manual, running),
        messages.locked_out(manual),
        messages.lock_taken(manual),
        messages.unlocked("prod", True),
        messages.denied(flood),
        messages.follow_up(record, running, "https://sandbox.slack.com/archives/C1/p1"),
        messages.release_note("acme/api", "v1.2.3", "octocat", "https://github.com/acme"),
        messages.deploy_parent(huge, T0),
        messages.stage_reply(huge, failed),
        messages.status_message([status_fixture()[0]] * 60),
        messages.history_message("prod", [huge] * 200),
        messages.reply(flood),
    ):
        assert message is not None
        answer = slack.chat_postMessage(channel=channel, **message.to_kwargs())
        assert answer["message"]["blocks"] == message.blocks


def test_the_sink_lists_user_group_members_and_permalinks(
    slack: WebClient, sandbox: Sandbox
) -> None:
    group = "S" + uuid.uuid4().hex[:9].upper()
    sandbox.http.sink.add_usergroup(group, "deployers", ["U0TESTER1", "U0TESTER2"])
    assert slack.usergroups_users_list(usergroup=group)["users"] == ["U0TESTER1", "U0TESTER2"]
    with pytest.raises(SlackApiError) as missing:
        slack.usergroups_users_list(usergroup="S0NOSUCH1")
    assert missing.value.response["error"] == "no_such_subteam"

    channel = "C" + uuid.uuid4().hex[:10].upper()
    sandbox.http.sink.add_channel(channel, f"links-{channel.lower()}")
    parent = slack.chat_postMessage(channel=channel, text="parent")["ts"]
    reply = slack.chat_postMessage(channel=channel, text="reply", thread_ts=parent)["ts"]
    link = slack.chat_getPermalink(channel=channel, message_ts=parent)["permalink"]
    assert link == f"https://sandbox.slack.com/archives/{channel}/p{parent.replace('.', '')}"
    threaded = slack.chat_getPermalink(channel=channel, message_ts=reply)["permalink"]
    assert threaded.endswith(f"?thread_ts={parent}&cid={channel}")
    with pytest.raises(SlackApiError) as unknown:
        slack.chat_getPermalink(channel=channel, message_ts="1.000001")
    assert unknown.value.response["error"] == "message_not_found"


def test_analysis_news_goes_to_the_thread_and_a_failed_watch_calls_the_requester() -> None:
    from deployer.front.deploy_messages import progress_reply, stage_reply

    record = deploy(state=State.RUNNING, candidate_revision=NEW)
    judged = (
        "analysis at 10%: candidate 64 requests, 0% 5xx, p95 12 ms; stable 580 requests, "
        "0% 5xx, p95 11 ms (same window): pass"
    )
    said = progress_reply(record, Stage.PROMOTE, judged, "")
    assert said is not None and said.text.startswith("Analysis at 10%: candidate 64 requests")
    filled = "real traffic gave x 3 of 50 requests so far: sent 47 synthetic to /health (47 requests, 0% 5xx)"
    early = progress_reply(record, Stage.PROMOTE, filled, "")
    assert early is not None and "sent 47 synthetic to /health" in early.text
    assert (
        progress_reply(record, Stage.PROMOTE, "waiting for Cloud Monitoring: 3 of 50", "") is None
    )

    regressed = StageResult(
        Stage.WATCH, Outcome.FAILED, T0 + 70, 31.0, "watch: 5xx rate 12% is above the maximum 1%"
    )
    alert = stage_reply(record, regressed)
    assert alert is not None
    assert alert.text.startswith("<@U0TESTER1> watch failed after 31.0s: watch: 5xx rate 12%")


def test_the_checklist_shows_hooks_and_the_watch_where_they_ran() -> None:
    record = deploy(
        state=State.SUCCEEDED,
        image=IMAGE,
        candidate_revision=NEW,
        stages=[
            PREFLIGHT,
            BUILT,
            *AFTER_BUILD[:3],
            done(Stage.PREDEPLOY, 50.0, 4.0, "predeploy hook `alembic upgrade head` succeeded"),
            AFTER_BUILD[3],
            VERIFIED,
            done(Stage.WATCH, 53.0, 600.0, f"{NEW} held up for the 600 s watch (10 windows)"),
        ],
        final_traffic=[Share(NEW, 100)],
    )
    text = text_of(messages.deploy_parent(record, T0 + 700))
    marks = [line.split("*")[1] for line in text.splitlines() if line.startswith("✓ *")]
    assert marks == [
        "preflight",
        "build",
        "deploy",
        "ready",
        "health",
        "predeploy",
        "promote",
        "verify",
        "watch",
    ]
