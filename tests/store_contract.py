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
from dataclasses import replace
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
from deployer.store.protocol import Store, Versioned

T = TypeVar("T")
RACERS = 8
# A deploy lock whose run died long ago (its lease ran out at 2.0), for takeovers.
DEAD_RUN = Lock("prod", "deploy", "d-resumed", "deploy", 1.0, "w-dead", 2.0)


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


# Locks as a deployer released before leases wrote them: (kind, holder, reason, created_at).
OLD_LOCKS_WRITTEN = (("deploy", "d-old", "deploy", 1.5), ("manual", "slack:U1", "freeze", 2.5))


def assert_old_locks_are_held_and_taken_over(store: Store) -> float:
    """`store` holds OLD_LOCKS_WRITTEN for prod: they read back without owner or lease, stay
    held against everyone else, and the old deploy's next run takes its lock over (at the
    time returned, renewed for 120 s by owner w1)."""
    old_deploy = Lock("prod", "deploy", "d-old", "deploy", 1.5, owner="", lease_until=0.0)
    old_manual = Lock("prod", "manual", "slack:U1", "freeze", 2.5, owner="", lease_until=0.0)
    assert store.locks("prod") == [old_deploy, old_manual]
    now = time.time()
    other = Lock("prod", "deploy", "d-new", "deploy", now, "w9", now + 60)
    assert store.acquire_lock(other, now + 10**6) == old_deploy
    run = Lock("prod", "deploy", "d-old", "deploy", now, "w1", now + 60)
    assert store.acquire_lock(run, now) == run
    assert store.renew_lock("prod", "deploy", "d-old", "w1", now + 120)
    renewed = Lock("prod", "deploy", "d-old", "deploy", now, "w1", now + 120)
    assert store.locks("prod") == [renewed, old_manual]
    return now


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


def race_processes(
    target: Callable[[str, str, Queue[str]], None], store_url: str, names: list[str]
) -> list[str]:
    """Run `target(store_url, name, results)` in a process of its own per name, all at
    once; what each put in `results`, once every one has exited cleanly."""
    context = multiprocessing.get_context("spawn")
    results: Queue[str] = context.Queue()
    racers = [context.Process(target=target, args=(store_url, name, results)) for name in names]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    assert [racer.exitcode for racer in racers] == [0] * len(racers)
    return [results.get(timeout=5) for _ in racers]


def _take_deploy_lock(url: str, holder: str, results: Queue[str]) -> None:
    won = open_store(url).acquire_lock(Lock("prod", "deploy", holder, "deploy", time.time()))
    results.put(won.holder)


def _resume_deploy(url: str, owner: str, results: Queue[str]) -> None:
    """A worker resuming DEAD_RUN's deploy as run `owner`: puts the owner the lock has now."""
    run = replace(DEAD_RUN, created_at=time.time(), owner=owner, lease_until=time.time() + 600)
    results.put(open_store(url).acquire_lock(run).owner)


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

    def test_unfinished_is_every_environments_pending_queued_running_and_parked_oldest_first(
        self, store_url: str
    ) -> None:
        store = open_store(store_url)
        assert store.unfinished() == []
        running = make_record("prod", 30.0)
        pending = make_record("staging", 10.0)
        queued = make_record("prod", 20.0)
        parked = make_record("staging", 40.0)
        for record, state in (
            (running, State.RUNNING),
            (pending, State.PENDING),
            (queued, State.QUEUED),
            (parked, State.AWAITING_APPROVAL),
        ):
            record.state = state
            store.save(record)
        # One record in every state that has ended, older, newer and in between.
        ended = [state for state in State if state.finished]
        for n, state in enumerate(ended):
            record = make_record("prod" if n % 2 else "staging", 5.0 + 10 * n)
            record.state = state
            store.save(record)
        assert State.ABANDONED in ended and len(ended) == len(State) - 4

        unfinished = open_store(store_url).unfinished()
        assert [r.id for r in unfinished] == [pending.id, queued.id, running.id, parked.id]
        # The records themselves, as saved.
        assert unfinished == [pending, queued, running, parked]

        # The list follows the records: one ends, one is taken off the queue.
        running.state = State.SUCCEEDED
        store.save(running)
        queued.state = State.RUNNING
        open_store(store_url).save(queued)
        assert [(r.id, r.state) for r in store.unfinished()] == [
            (pending.id, State.PENDING),
            (queued.id, State.RUNNING),
            (parked.id, State.AWAITING_APPROVAL),
        ]

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
        winners = set(race_processes(_take_deploy_lock, store_url, [f"d-{n}" for n in range(4)]))
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

    # --- leased deploy locks -----------------------------------------------------------

    def test_a_handed_over_deploy_lock_is_taken_by_one_run_of_its_deploy_at_a_time(
        self, store_url: str
    ) -> None:
        store = open_store(store_url)
        now = time.time()
        # The front takes the lock for the deploy and hands it over: no run owns it yet.
        handed = Lock("prod", "deploy", "d-1", "deploy", now)
        assert store.acquire_lock(handed, now) == handed
        assert (handed.owner, handed.lease_until) == ("", 0.0)

        w1 = replace(handed, owner="w1", lease_until=now + 60)
        assert store.acquire_lock(w1, now) == w1
        assert open_store(store_url).locks("prod") == [w1]

        # A second run of the same deploy waits while w1's lease is live...
        w2 = replace(handed, owner="w2", lease_until=now + 160)
        assert store.acquire_lock(w2, now + 59) == w1
        assert store.acquire_lock(replace(w2, owner=""), now + 59) == w1
        assert store.locks("prod") == [w1]
        # ...and takes it over once the lease ran out.
        assert store.acquire_lock(w2, now + 61) == w2
        assert open_store(store_url).locks("prod") == [w2]
        # Now w1 is the one refused, and w2 itself may take its lock again (a new lease).
        assert store.acquire_lock(w1, now + 62) == w2
        w2_again = replace(w2, lease_until=now + 300)
        assert store.acquire_lock(w2_again, now + 62) == w2_again
        assert store.locks("prod") == [w2_again]

    def test_another_deploy_never_takes_a_deploy_lock_over(self, store_url: str) -> None:
        store = open_store(store_url)
        now = time.time()
        w1 = Lock("prod", "deploy", "d-1", "deploy", now, "w1", now + 60)
        assert store.acquire_lock(w1, now) == w1
        for at in (now, now + 61, now + 10**6):  # live, just expired, long expired
            for owner, lease_until in (("w9", now + 10**7), ("", 0.0), ("w1", now + 10**7)):
                other = Lock("prod", "deploy", "d-2", "deploy", at, owner, lease_until)
                assert store.acquire_lock(other, at) == w1, (at, owner)
        assert open_store(store_url).locks("prod") == [w1]
        assert not store.release_lock("prod", "deploy", "d-2")
        assert not store.renew_lock("prod", "deploy", "d-2", "w1", now + 10**7)
        assert store.locks("prod") == [w1]

    def test_a_manual_lock_has_no_lease_and_only_its_holder_replaces_it(
        self, store_url: str
    ) -> None:
        store = open_store(store_url)
        now = time.time()
        manual = Lock("prod", "manual", "slack:U1", "release freeze", now)
        assert store.acquire_lock(manual, now) == manual
        [held] = open_store(store_url).locks("prod")
        assert held == manual and held.lease_until == 0.0 and not held.expired(now + 10**9)
        for at in (now, now + 10**9):
            for owner, lease_until in (("", 0.0), ("w1", now + 1)):
                theirs = Lock("prod", "manual", "slack:U2", "", at, owner, lease_until)
                assert store.acquire_lock(theirs, at) == manual
        assert store.locks("prod") == [manual]
        # Its holder may lock again (a new reason); the lock is theirs either way.
        again = replace(manual, reason="still frozen", created_at=now + 1)
        assert store.acquire_lock(again, now + 1) == again
        assert store.locks("prod") == [again]

    def test_threads_resuming_a_dead_run_agree_on_one_new_owner(self, store_url: str) -> None:
        shared = open_store(store_url)
        assert shared.acquire_lock(DEAD_RUN, DEAD_RUN.created_at) == DEAD_RUN
        stores = [shared if n % 2 else open_store(store_url) for n in range(RACERS)]
        now = time.time()
        owners = race(
            [
                lambda s=store, n=n: (
                    s.acquire_lock(replace(DEAD_RUN, owner=f"w{n}", lease_until=now + 600)).owner
                )
                for n, store in enumerate(stores)
            ]
        )
        assert len(owners) == RACERS and len(set(owners)) == 1
        assert owners[0] in {f"w{n}" for n in range(RACERS)}
        [lock] = shared.locks("prod")
        assert (lock.holder, lock.owner, lock.lease_until) == ("d-resumed", owners[0], now + 600)

    def test_processes_resuming_a_dead_run_agree_on_one_new_owner(self, store_url: str) -> None:
        assert open_store(store_url).acquire_lock(DEAD_RUN, DEAD_RUN.created_at) == DEAD_RUN
        names = [f"w{n}" for n in range(4)]
        owners = set(race_processes(_resume_deploy, store_url, names))
        assert len(owners) == 1 and owners <= set(names)
        assert [lock.owner for lock in open_store(store_url).locks("prod")] == list(owners)

    def test_a_lease_is_renewed_only_by_the_run_that_owns_it(self, store_url: str) -> None:
        store = open_store(store_url)
        now = time.time()
        w1 = Lock("prod", "deploy", "d-1", "deploy", now, "w1", now + 60)
        assert store.acquire_lock(w1, now) == w1
        assert store.renew_lock("prod", "deploy", "d-1", "w1", now + 120)
        renewed = replace(w1, lease_until=now + 120)
        assert open_store(store_url).locks("prod") == [renewed]
        # The renewed lease is what counts: w2 cannot take over where w1's first lease ended.
        w2 = replace(w1, owner="w2", lease_until=now + 300)
        assert store.acquire_lock(w2, now + 61) == renewed

        for environment, kind, holder, owner in (
            ("prod", "deploy", "d-1", "w2"),  # another run of the deploy
            ("prod", "deploy", "d-1", ""),
            ("prod", "deploy", "d-2", "w1"),  # another deploy
            ("prod", "manual", "d-1", "w1"),  # no such lock
            ("staging", "deploy", "d-1", "w1"),
        ):
            assert not store.renew_lock(environment, kind, holder, owner, now + 10**6), owner
        assert store.locks("prod") == [renewed]
        assert store.locks("staging") == []

        # Once w2 took the expired lock over, w1's heartbeat learns that it lost it.
        assert store.acquire_lock(w2, now + 121) == w2
        assert not store.renew_lock("prod", "deploy", "d-1", "w1", now + 10**6)
        assert store.locks("prod") == [w2]
        assert store.renew_lock("prod", "deploy", "d-1", "w2", now + 400)
        assert store.locks("prod") == [replace(w2, lease_until=now + 400)]

    def test_a_run_releases_only_the_lock_it_still_owns(self, store_url: str) -> None:
        store = open_store(store_url)
        now = time.time()
        w1 = Lock("prod", "deploy", "d-1", "deploy", now, "w1", now + 60)
        w2 = replace(w1, owner="w2", lease_until=now + 300)
        assert store.acquire_lock(w1, now) == w1
        assert store.acquire_lock(w2, now + 61) == w2
        # w1 ends late and would release w2's lock: refused.
        assert not store.release_lock("prod", "deploy", "d-1", "w1")
        assert store.locks("prod") == [w2]
        assert store.release_lock("prod", "deploy", "d-1", "w2")
        assert store.locks("prod") == []
        # Without an owner the holder releases whichever run owns it (a forced unlock).
        assert store.acquire_lock(w1, now) == w1
        assert not store.release_lock("prod", "deploy", "d-2")
        assert store.release_lock("prod", "deploy", "d-1")
        assert store.locks("prod") == []

    def test_a_run_saves_its_record_only_while_it_owns_the_deploy(self, store_url: str) -> None:
        store = open_store(store_url)
        record = make_record()
        now = time.time()
        w1 = Lock("prod", "deploy", record.id, "deploy", now, "w1", now + 60)
        assert store.acquire_lock(w1, now) == w1
        record.error = "written by w1"
        assert store.save(record, "w1")
        # w2 takes the deploy over once w1's lease ran out; w1's late write is refused.
        assert (
            store.acquire_lock(replace(w1, owner="w2", lease_until=now + 300), now + 61).owner
            == "w2"
        )
        record.error = "written by w2"
        assert store.save(record, "w2")
        stale = make_record()
        stale.id, stale.error = record.id, "w1, too late"
        assert not store.save(stale, "w1")
        found = store.get(record.id)
        assert found is not None and found.error == "written by w2"
        # Without its lock, no run saves; without an owner, the write is unconditional.
        assert store.release_lock("prod", "deploy", record.id, "w2")
        assert not store.save(record, "w2")
        assert store.save(stale)
        found = store.get(record.id)
        assert found is not None and found.error == "w1, too late"

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

    # --- the outbox ----------------------------------------------------------------------

    def test_an_outbox_document_is_created_once_then_written_over_its_version(
        self, store_url: str
    ) -> None:
        store = open_store(store_url)
        key = "slack:C0123/1700000000.000100"  # free text, as claim keys
        assert store.outbox_read(key) is None
        assert not store.outbox_write(key, '{"n": 0}', None, 1)  # nothing to write over
        assert store.outbox_read(key) is None

        assert store.outbox_write(key, '{"n": 1}', None, 0)
        assert not store.outbox_write(key, '{"n": "again"}', 5.0, 0)  # created once
        assert not open_store(store_url).outbox_write(key, '{"n": "again"}', 5.0, 0)
        assert open_store(store_url).outbox_read(key) == Versioned(key, '{"n": 1}', 1, None)

        assert not store.outbox_write(key, '{"n": 2}', 5.0, 2)  # not at version 2 yet
        assert store.outbox_write(key, '{"n": 2}', 5.0, 1)
        assert not store.outbox_write(key, '{"n": "stale"}', 6.0, 1)  # read before the write
        assert store.outbox_read(key) == Versioned(key, '{"n": 2}', 2, 5.0)
        assert open_store(store_url).outbox_write(key, '{"n": 3}', None, 2)
        assert store.outbox_read(key) == Versioned(key, '{"n": 3}', 3, None)
        assert store.outbox_read("slack:C0123/1700000000.000200") is None

    def test_racers_create_an_outbox_document_once(self, store_url: str) -> None:
        stores = [open_store(store_url) for _ in range(RACERS)]
        created = race(
            [
                lambda s=store, n=n: s.outbox_write("d-1", f'{{"writer": {n}}}', None, 0)
                for n, store in enumerate(stores)
            ]
        )
        assert sorted(created) == [False] * (RACERS - 1) + [True]
        winner = created.index(True)
        assert stores[0].outbox_read("d-1") == Versioned("d-1", f'{{"writer": {winner}}}', 1)

    def test_racers_writing_over_one_version_let_exactly_one_in(self, store_url: str) -> None:
        shared = open_store(store_url)
        assert shared.outbox_write("d-1", "{}", None, 0)
        stores = [shared if n % 2 else open_store(store_url) for n in range(RACERS)]
        wrote = race(
            [
                lambda s=store, n=n: s.outbox_write("d-1", f'{{"writer": {n}}}', float(n), 1)
                for n, store in enumerate(stores)
            ]
        )
        assert sorted(wrote) == [False] * (RACERS - 1) + [True]
        winner = wrote.index(True)
        assert shared.outbox_read("d-1") == Versioned(
            "d-1", f'{{"writer": {winner}}}', 2, float(winner)
        )

    def test_outbox_due_is_what_is_due_most_overdue_first(self, store_url: str) -> None:
        store = open_store(store_url)
        for key, due_at in (
            ("idle", None),
            ("later", 200.0),
            ("due-now", 100.0),
            ("overdue", 10.0),
            ("at-zero", 0.0),
            ("more-overdue", 1.0),
        ):
            assert store.outbox_write(key, f'{{"key": "{key}"}}', due_at, 0)

        def due(now: float, limit: int = 10) -> list[str]:
            return [document.key for document in open_store(store_url).outbox_due(now, limit)]

        assert due(100.0) == ["at-zero", "more-overdue", "overdue", "due-now"]
        assert due(100.0, limit=2) == ["at-zero", "more-overdue"]
        assert due(-1.0) == []
        assert due(10**12) == ["at-zero", "more-overdue", "overdue", "due-now", "later"]
        # The documents as they are, ready to be written over their version.
        assert store.outbox_due(0.0, 1) == [store.outbox_read("at-zero")]
        assert store.outbox_due(0.0, 1) == [Versioned("at-zero", '{"key": "at-zero"}', 1, 0.0)]

        # Done with one (nothing due any more), another put off: the list follows.
        assert store.outbox_write("overdue", "{}", None, 1)
        assert store.outbox_write("more-overdue", "{}", 150.0, 1)
        assert due(100.0) == ["at-zero", "due-now"]
        assert due(150.0) == ["at-zero", "due-now", "more-overdue"]


__all__ = ["StoreContract", "make_record", "race"]
