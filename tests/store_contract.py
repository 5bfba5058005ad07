"""What every store promises, checked against each one.

A test class inherits `StoreContract` and provides the fixture `store_url`: a
`DEPLOYER_STORE` URL naming a fresh, empty store. `open_store(store_url)` twice
gives two views of the same data, as two processes (or two deployers) have;
racers in other processes open the URL themselves.

    tests/test_store_sqlite.py     TestSqliteStore(StoreContract)
    tests/test_store_firestore.py  TestFirestoreStore(StoreContract), on the emulator
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from typing import TypeVar

from deployer.pipeline.record import (
    DeployRecord,
    Lock,
    Outcome,
    Stage,
    StageResult,
    State,
    new_deploy_id,
)
from deployer.store import open_store

T = TypeVar("T")
RACERS = 8


def make_record(environment: str = "prod", created_at: float | None = None) -> DeployRecord:
    """A fresh deploy record of `environment`, created at `created_at` (default now)."""
    record = DeployRecord(
        id=new_deploy_id(),
        kind="deploy",
        environment=environment,
        service="backend",
        requester="cli:test",
    )
    if created_at is not None:
        record.created_at = created_at
    return record


def race(calls: list[Callable[[], T]]) -> list[T]:
    """Run `calls` in threads released at the same instant; their results, in order."""
    start = threading.Barrier(len(calls))
    results: list[T | None] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable[[], T]) -> None:
        start.wait(timeout=30)
        try:
            results[index] = call()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert all(not thread.is_alive() for thread in threads)
    return [result for result in results if result is not None]


# --- in other processes (module level, so that `spawn` can import them) ----------------


def _take_deploy_lock(url: str, holder: str, results: Queue[str]) -> None:
    won = open_store(url).acquire_lock(Lock("prod", "deploy", holder, "deploy", time.time()))
    results.put(won.holder)


def _lock_then_hang(url: str, holder: str, results: Queue[str]) -> None:
    open_store(url).acquire_lock(Lock("prod", "deploy", holder, "deploy", time.time()))
    results.put(holder)
    time.sleep(120)  # the test kills us long before


class StoreContract:
    """The behaviour `deployer.store.protocol.Store` promises; subclasses give `store_url`."""

    # --- records -----------------------------------------------------------------------

    def test_a_record_round_trips_with_its_stages(self, store_url: str) -> None:
        store = open_store(store_url)
        record = make_record()
        record.state = State.FAILED
        record.error = 'build: step "build" failed: exit 1 / quotes \' " and\nlines'
        record.stages.append(
            StageResult(
                Stage.BUILD,
                Outcome.FAILED,
                time.time(),
                1.5,
                "build FAILURE at step build",
                "exit 1",
            )
        )
        store.save(record)
        # A second process (here: a second store on the same URL) reads what the first wrote.
        again = open_store(store_url).get(record.id)
        assert again == record
        assert again is not None and again.stage(Stage.BUILD) is not None

    def test_saving_again_replaces_the_record(self, store_url: str) -> None:
        store = open_store(store_url)
        record = make_record()
        store.save(record)
        record.state, record.commit = State.SUCCEEDED, "a" * 40
        store.save(record)
        assert store.get(record.id) == record
        assert [r.id for r in store.history("prod")] == [record.id]

    def test_history_is_per_environment_and_newest_first(self, store_url: str) -> None:
        store = open_store(store_url)
        old, new = make_record(created_at=1.0), make_record(created_at=2.0)
        other = make_record("staging", 3.0)
        for record in (old, new, other):
            store.save(record)
        assert [r.id for r in store.history("prod")] == [new.id, old.id]
        assert [r.id for r in store.history("prod", limit=1)] == [new.id]
        assert [r.id for r in store.history("staging")] == [other.id]
        assert store.history("dev") == []
        assert store.get("d-missing") is None

    # --- locks -------------------------------------------------------------------------

    def test_lock_has_one_holder_until_released(self, store_url: str) -> None:
        store = open_store(store_url)
        mine = Lock("prod", "manual", "slack:U1", "release freeze", time.time())
        assert store.acquire_lock(mine) == mine
        theirs = store.acquire_lock(Lock("prod", "manual", "slack:U2", "", time.time()))
        assert theirs == mine
        assert not store.release_lock("prod", "manual", "slack:U2")
        assert open_store(store_url).locks("prod") == [mine]
        assert store.release_lock("prod", "manual", "slack:U1")
        assert not store.release_lock("prod", "manual", "slack:U1")
        assert store.locks("prod") == []

    def test_locks_are_per_environment_and_kind(self, store_url: str) -> None:
        store = open_store(store_url)
        manual = Lock("prod", "manual", "slack:U1", "freeze", 1.0)
        deploy = Lock("prod", "deploy", "d-1", "deploy", 2.0)
        staging = Lock("staging", "deploy", "d-2", "deploy", 3.0)
        for lock in (manual, deploy, staging):
            assert store.acquire_lock(lock) == lock
        assert store.locks("prod") == [deploy, manual]  # ordered by kind
        assert store.locks("staging") == [staging]
        assert not store.release_lock("prod", "deploy", "d-2")
        assert store.release_lock("staging", "deploy", "d-2")
        assert store.locks("prod") == [deploy, manual]

    def test_threads_racing_for_a_lock_agree_on_one_winner(self, store_url: str) -> None:
        shared = open_store(store_url)
        # Half the racers share one store (the inline dispatcher's threads), half
        # open their own (other deployers).
        stores = [shared if n % 2 else open_store(store_url) for n in range(RACERS)]
        winners = race(
            [
                lambda s=store, n=n: (
                    s.acquire_lock(Lock("prod", "deploy", f"d-{n}", "deploy", time.time())).holder
                )
                for n, store in enumerate(stores)
            ]
        )
        assert len(winners) == RACERS and len(set(winners)) == 1
        assert [lock.holder for lock in shared.locks("prod")] == winners[:1]

    def test_processes_racing_for_a_lock_agree_on_one_winner(self, store_url: str) -> None:
        open_store(store_url)
        context = multiprocessing.get_context("spawn")
        results: Queue[str] = context.Queue()
        racers = [
            context.Process(target=_take_deploy_lock, args=(store_url, f"d-{n}", results))
            for n in range(4)
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(60)
        assert [racer.exitcode for racer in racers] == [0] * len(racers)
        winners = {results.get(timeout=5) for _ in racers}
        assert len(winners) == 1
        assert [lock.holder for lock in open_store(store_url).locks("prod")] == list(winners)

    def test_a_killed_holder_leaves_its_lock_until_the_holder_releases_it(
        self, store_url: str
    ) -> None:
        context = multiprocessing.get_context("spawn")
        results: Queue[str] = context.Queue()
        worker = context.Process(target=_lock_then_hang, args=(store_url, "d-killed", results))
        worker.start()
        try:
            assert results.get(timeout=60) == "d-killed"
        finally:
            assert worker.pid is not None
            os.kill(worker.pid, signal.SIGKILL)
            worker.join(30)
        assert worker.exitcode == -signal.SIGKILL

        store = open_store(store_url)
        # No silent loss: the lock is still there, and nobody else can take it.
        assert [lock.holder for lock in store.locks("prod")] == ["d-killed"]
        taken = store.acquire_lock(Lock("prod", "deploy", "d-next", "deploy", time.time()))
        assert taken.holder == "d-killed"
        assert not store.release_lock("prod", "deploy", "d-next")
        # The resumed deploy (the holder) releases it; then the next one gets it.
        assert store.release_lock("prod", "deploy", "d-killed")
        assert store.locks("prod") == []
        again = store.acquire_lock(Lock("prod", "deploy", "d-next", "deploy", time.time()))
        assert again.holder == "d-next"

    # --- claims and cancels ------------------------------------------------------------

    def test_a_key_is_claimed_once(self, store_url: str) -> None:
        store = open_store(store_url)
        assert store.claim("github-delivery:72d3162e")
        assert not store.claim("github-delivery:72d3162e")
        assert not open_store(store_url).claim("github-delivery:72d3162e")
        # Keys are free text: slashes, spaces and long keys are keys like any other.
        for key in ("slack-action:a/b/../c", "with space", "__reserved__", "x" * 2000, "."):
            assert store.claim(key), key
            assert not store.claim(key), key
        assert store.claim("slack-action:a/b/../d")

    def test_racers_claim_a_key_once(self, store_url: str) -> None:
        stores = [open_store(store_url) for _ in range(RACERS)]
        claimed = race([lambda s=store: s.claim("github-delivery:race") for store in stores])
        assert sorted(claimed) == [False] * (RACERS - 1) + [True]

    def test_a_cancel_request_survives_the_record_being_rewritten(self, store_url: str) -> None:
        store = open_store(store_url)
        record = make_record()
        store.save(record)
        assert store.cancel_requested(record.id) is None
        assert store.request_cancel(record.id, "slack:U1")
        store.save(record)  # the running pipeline saves its own copy after the request
        open_store(store_url).save(record)
        assert store.cancel_requested(record.id) == "slack:U1"
        assert not store.request_cancel(record.id, "slack:U2")
        assert store.cancel_requested(record.id) == "slack:U1"
        assert open_store(store_url).cancel_requested(record.id) == "slack:U1"
        assert store.cancel_requested(make_record().id) is None

    def test_racers_request_a_cancel_once(self, store_url: str) -> None:
        store = open_store(store_url)
        record = make_record()
        store.save(record)
        asked = race(
            [lambda n=n: store.request_cancel(record.id, f"slack:U{n}") for n in range(RACERS)]
        )
        assert sorted(asked) == [False] * (RACERS - 1) + [True]
        store.save(record)
        assert store.cancel_requested(record.id) == f"slack:U{asked.index(True)}"


__all__ = ["StoreContract", "make_record", "race"]
