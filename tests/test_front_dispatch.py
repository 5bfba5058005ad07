"""Dispatch: a Cloud Run job execution per deploy (the sandbox runs `deployer worker` for real),
the inline worker pool, and what happens when a deploy cannot be started."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deployer_sandbox.harness.chat_front import create_worker_job, store_bot_token
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import run_v2

from deployer.adapters.google_clients import EMULATOR_HOST_ENV, google_client
from deployer.adapters.slack_chat import SlackChat
from deployer.adapters.slack_client import slack_web_client
from deployer.front.dispatch import (
    Failures,
    InlineDispatcher,
    JobDispatcher,
    dispatcher_from_environment,
)
from deployer.front.outbox import Outbox
from deployer.front.thread import open_thread
from deployer.front.worker import run_deploy
from deployer.pipeline.record import DeployRecord, Lock, State
from deployer.store.sqlite import SqliteStore
from tests.conftest import REGION
from tests.engine_world import ENVIRONMENT, World, wait_finished, world_fixture  # noqa: F401  (fixture)

Completion = run_v2.ExecutionReference.CompletionStatus


@pytest.fixture
def slack(sandbox: Sandbox) -> Iterator[SlackChat]:
    yield SlackChat(
        slack_web_client("xoxb-dispatch-tests", sandbox.slack_api_url, retries=False, timeout=2)
    )


def outbox_of(store: SqliteStore, slack: SlackChat) -> Outbox:
    return Outbox(store, slack)


def _channel(sandbox: Sandbox) -> str:
    channel = "C" + uuid.uuid4().hex[:10].upper()
    sandbox.http.sink.add_channel(channel, "dispatch-tests")
    return channel


def _saved(world: World, slack: SlackChat) -> DeployRecord:
    """A deploy record as the front leaves it: locked, thread parent posted, saved, not started."""
    record = world.engine.new_deploy(ENVIRONMENT, None, "slack:U0TESTER1")
    return _taken_in(world.store(), slack, record, _channel(world.sandbox))


def _taken_in(
    store: SqliteStore, slack: SlackChat, record: DeployRecord, channel: str
) -> DeployRecord:
    now = time.time()
    lock = Lock(record.environment, "deploy", record.id, "deploy", now, "", now + 60)
    assert store.acquire_lock(lock, now) == lock
    outbox = outbox_of(store, slack)
    open_thread(outbox, channel, record)
    box = outbox.drain(record.id, 2)
    assert box is not None and box.ts
    record.slack_ts = box.ts
    store.save(record)
    return record


def _parent(sandbox: Sandbox, record: DeployRecord) -> dict[str, Any]:
    messages = sandbox.http.sink.messages(record.slack_channel)
    return next(m for m in messages if m["ts"] == record.slack_ts)


def test_a_job_execution_runs_the_deploy(world: World, slack: SlackChat) -> None:
    host = world.sandbox.grpc_address
    parent = f"projects/{world.project}/locations/{REGION}"
    job = create_worker_job(
        world.sandbox,
        parent,
        {
            "DEPLOYER_STORE": world.store_url,
            EMULATOR_HOST_ENV: host,
            "SLACK_API_URL": world.sandbox.slack_api_url,
        },
        store_bot_token(host, world.project, "xoxb-dispatch-worker"),
        world.config_path.read_text(encoding="utf-8"),
    )
    record = _saved(world, slack)
    dispatcher = JobDispatcher(
        job, host=host, failures=Failures(world.store(), outbox_of(world.store(), slack))
    )
    # The worker runs from the deployer's image: its config comes from Secret Manager, the
    # build config from the repository at the commit. Nothing on this disk is read.
    container = google_client(run_v2.JobsClient, host).get_job(name=job).template.template
    env = {variable.name: variable.value for variable in container.containers[0].env}
    assert env["DEPLOYER_CONFIG"] == (
        f"projects/{world.project}/secrets/deployer-config/versions/latest"
    )
    world.config_path.rename(world.config_path.with_suffix(".gone"))

    started = time.monotonic()
    dispatcher.dispatch(record.id)
    assert time.monotonic() - started < 1.0  # handed over, not waited for

    done = wait_finished(world.store(), record.id)
    assert done.state == State.SUCCEEDED, done.error
    jobs = google_client(run_v2.JobsClient, host)
    deadline = time.monotonic() + 15
    latest = jobs.get_job(name=job).latest_created_execution
    while latest.completion_status == Completion.EXECUTION_RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
        latest = jobs.get_job(name=job).latest_created_execution
    assert latest.completion_status == Completion.EXECUTION_SUCCEEDED
    execution = google_client(run_v2.ExecutionsClient, host).get_execution(name=latest.name)
    assert list(execution.template.containers[0].args) == ["worker", record.id]
    assert execution.succeeded_count == 1
    # The worker told the thread: the parent was updated to the final state, with replies.
    thread = _parent(world.sandbox, done)
    assert thread["edits"] and done.candidate_revision in thread["text"]
    assert thread["reply_count"] >= 1
    assert world.serving() == [(done.candidate_revision, 100)]


def test_inline_dispatch_runs_the_deploy_in_this_process(world: World, slack: SlackChat) -> None:
    store = world.store()
    outbox = outbox_of(store, slack)
    dispatcher = dispatcher_from_environment(
        lambda deploy_id: run_deploy(deploy_id, world.engine, outbox), store, outbox, "inline"
    )
    assert isinstance(dispatcher, InlineDispatcher)
    record = _saved(world, slack)
    started = time.monotonic()
    dispatcher.dispatch(record.id)
    assert time.monotonic() - started < 0.5
    done = wait_finished(store, record.id)
    dispatcher.close()
    assert done.state == State.SUCCEEDED, done.error
    assert done.candidate_revision in _parent(world.sandbox, done)["text"]


def test_a_job_that_cannot_start_fails_the_record_frees_prod_and_says_so(
    gcp: Sandbox, tmp_path: Path, slack: SlackChat
) -> None:
    store = SqliteStore(tmp_path / "state.db")
    record = DeployRecord(
        id="d-dispatch-" + uuid.uuid4().hex[:6], kind="deploy", environment="prod",
        service="backend", requester="slack:U0TESTER1",
    )  # fmt: skip
    _taken_in(store, slack, record, _channel(gcp))
    missing = "projects/nowhere/locations/europe-west1/jobs/deployer-worker"
    dispatcher = JobDispatcher(
        missing, host=gcp.grpc_address, failures=Failures(store, outbox_of(store, slack))
    )

    dispatcher.dispatch(record.id)  # never raises: the failure is recorded and told

    failed = store.get(record.id)
    assert failed is not None and failed.state == State.FAILED
    assert "could not start the Cloud Run job deployer-worker" in failed.error
    assert "does not exist" in failed.error
    assert store.locks("prod") == []
    # The thread learns it from the outbox (no Slack call in the hand-over: it runs
    # inside a request); the next drain, the sweep's, sends it.
    outbox_of(store, slack).drain(record.id, 5)
    parent = _parent(gcp, failed)
    assert parent["edits"], "the thread's parent should show the failure"
    assert parent["text"] != parent["original"]["text"]


def test_the_inline_pool_survives_a_crashing_deploy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path / "state.db")
    ran: list[str] = []
    lock = threading.Lock()

    def run(deploy_id: str) -> None:
        if deploy_id.startswith("d-bad"):
            raise RuntimeError("the worker blew up")
        time.sleep(0.05)
        with lock:
            ran.append(deploy_id)

    bad = DeployRecord("d-bad-1", "deploy", "prod", "backend", "cli:tester")
    store.save(bad)
    dispatcher = InlineDispatcher(run, workers=2, failures=Failures(store))
    with caplog.at_level(logging.ERROR, logger="deployer.front.dispatch"):
        dispatcher.dispatch(bad.id)
        good = [f"d-good-{n}" for n in range(8)]
        for deploy_id in good:
            dispatcher.dispatch(deploy_id)
        dispatcher.close(wait=True)
    assert sorted(ran) == sorted(good)
    # A crashed run is left to its lease and the sweep, as a job task that died would be.
    crashed = store.get(bad.id)
    assert crashed is not None and crashed.state == State.PENDING
    assert any("d-bad-1 crashed" in r.getMessage() for r in caplog.records)
    # After close, a dispatch is refused and left to the sweep (the next process), never
    # lost silently.
    late = DeployRecord("d-late-1", "deploy", "prod", "backend", "cli:tester")
    store.save(late)
    dispatcher.dispatch(late.id)
    refused = store.get(late.id)
    assert refused is not None and refused.state == State.PENDING
    assert refused.handovers_failed == 1 and "the sweep tries again" in refused.notes[-1].text


def test_dispatch_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="neither `inline` nor a Cloud Run job name"):
        dispatcher_from_environment(lambda _: None, value="my-job")
    job = dispatcher_from_environment(
        lambda _: None, value="projects/p/locations/europe-west1/jobs/deployer-worker"
    )
    assert isinstance(job, JobDispatcher)
