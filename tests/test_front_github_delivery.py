"""A GitHub delivery is never lost: answered 2xx with its deploy certain to run, or 5xx and
not recorded as handled, so that a redelivery by hand runs it.

GitHub waits 10 s for an answer and does not redeliver a failed delivery on its own
(docs.github.com/webhooks/using-webhooks/handling-failed-webhook-deliveries): people
redeliver it from the hook's page, with the same X-GitHub-Delivery.

    the jobs API unavailable     202; the deploy waits for the sweep, which starts it
    the store gives out          503; nothing is kept, the redelivery deploys once
    the front died mid-intake    the redelivery takes the release in, its lock included
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.errors import RefusedError
from deployer.front.context import current_context
from deployer.front.github import release_deploy_id
from deployer.front.sweep import Sweeper
from deployer.pipeline.record import Lock, State
from deployer.store.protocol import Store
from tests.engine_world import ENVIRONMENT, World, git, world_fixture  # noqa: F401
from tests.front_requests import github_event, release_payload
from tests.front_world import FrontWorld, in_process, make_front
from tests.job_front import with_worker_job

REPOSITORY = "acme/content-api"


def _released(front: FrontWorld, tag: str, release_id: int, delivery: str) -> Any:
    payload = release_payload(REPOSITORY, tag, release_id=release_id)
    secret = front.env["GITHUB_WEBHOOK_SECRET"]
    return front.send(github_event(secret, "release", payload, delivery=delivery))


def _tag(front: FrontWorld, tag: str) -> None:
    front.world.commit(f"release {tag}")
    git(front.world.repo, "tag", "-a", tag, "-m", tag)


@pytest.fixture
def releases(world: World, gcp: Sandbox) -> FrontWorld:
    """A front world whose releases of REPOSITORY deploy prod, with a short lease."""
    front = make_front(world, gcp)
    world.settings["releases"] = {
        "repositories": [REPOSITORY],
        "environment": ENVIRONMENT,
        "channel": front.channel,
    }
    world.reconfigure(deployer={"lease": 1.0})
    return front


@pytest.fixture
def front(releases: FrontWorld, repo_root: Path) -> Iterator[FrontWorld]:
    with in_process(releases, repo_root) as ready:
        yield ready


def test_a_release_whose_worker_cannot_start_yet_is_started_by_the_sweep(
    releases: FrontWorld, repo_root: Path
) -> None:
    with_worker_job(releases)
    with in_process(releases, repo_root) as front:
        _tag(front, "v3.1.0")
        front.sandbox.faults.arm("run_job_unavailable", times=1)

        answer = _released(front, "v3.1.0", 31, "delivery-unavailable")

        assert answer.status == 202, answer.text
        record = front.newest()
        assert record.ref == "v3.1.0" and record.state == State.PENDING
        assert "could not start a worker" in record.notes[-1].text
        # Its intake lease runs out; the sweep hands it over again, and it runs.
        sweeper = Sweeper(current_context())
        deadline = time.monotonic() + 30
        while not sweeper.sweep(budget=2).revived:
            assert time.monotonic() < deadline, "the sweep never started the release"
            time.sleep(0.3)
        done = front.finished(record.id, timeout=90)
        assert done.state == State.SUCCEEDED, done.error
        assert [r.id for r in front.records() if r.ref == "v3.1.0"] == [record.id]


class GivesOut:
    """The front's store, failing its next `outbox_write` as Firestore does when it is gone."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.failures = 1

    def outbox_write(self, key: str, body: str, due_at: float | None, version: int) -> bool:
        if self.failures:
            self.failures -= 1
            raise RefusedError("Firestore failed to write the outbox document: 503 unavailable")
        return self._store.outbox_write(key, body, due_at, version)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_delivery_the_store_gave_out_on_is_answered_503_and_runs_when_redelivered(
    front: FrontWorld,
) -> None:
    _tag(front, "v3.2.0")
    outbox = current_context().outbox
    real = outbox.store
    outbox.store = GivesOut(real)  # type: ignore[assignment]
    try:
        refused = _released(front, "v3.2.0", 32, "delivery-store-down")
    finally:
        outbox.store = real

    assert refused.status == 503 and "redeliver" in refused.text
    # Nothing was left half taken in: no deploy waits or runs, prod is free.
    assert [r.state for r in front.records() if r.ref == "v3.2.0"] in ([], [State.FAILED])
    assert front.world.store().locks(ENVIRONMENT) == []

    # Redelivered by hand from the hook's page: the same delivery id, and it deploys.
    again = _released(front, "v3.2.0", 32, "delivery-store-down")
    assert again.status == 202, again.text
    deployed = [r for r in front.records() if r.ref == "v3.2.0" and r.state != State.FAILED]
    assert len(deployed) == 1
    assert front.finished(deployed[0].id, timeout=90).state == State.SUCCEEDED
    # Any later delivery of the same release deploys nothing more.
    later = _released(front, "v3.2.0", 32, "delivery-later")
    assert later.status == 200 and "already deployed" in later.text


def test_a_delivery_whose_front_died_before_recording_runs_when_redelivered(
    front: FrontWorld,
) -> None:
    # A front killed after taking prod's lock for the release, before saving its record:
    # nothing says "handled", and the lock it left names the release's own deploy id.
    _tag(front, "v3.3.0")
    deploy_id = release_deploy_id(REPOSITORY, "33", ENVIRONMENT)
    now = time.time()
    left = Lock(ENVIRONMENT, "deploy", deploy_id, "deploy", now, "", now + 60)
    assert front.world.store().acquire_lock(left, now) == left

    again = _released(front, "v3.3.0", 33, "delivery-after-a-death")

    assert again.status == 202 and deploy_id in again.text, again.text
    assert front.finished(deploy_id, timeout=90).state == State.SUCCEEDED
    assert [r.id for r in front.records() if r.ref == "v3.3.0"] == [deploy_id]
    assert front.world.store().locks(ENVIRONMENT) == []
