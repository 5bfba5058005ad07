"""The embedded SQLite store: records survive, and a lock has exactly one holder."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from deployer.errors import RefusedError
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
from deployer.store.sqlite import SqliteStore


def _record(environment: str = "prod", created_at: float | None = None) -> DeployRecord:
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


def test_a_record_round_trips_with_its_stages(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    record = _record()
    record.state = State.FAILED
    record.stages.append(
        StageResult(
            Stage.BUILD, Outcome.FAILED, time.time(), 1.5, "build FAILURE at step build", "exit 1"
        )
    )
    store.save(record)
    # A second process (here: a second store on the same file) reads what the first wrote.
    again = SqliteStore(tmp_path / "state.db").get(record.id)
    assert again == record
    assert again is not None and again.stage(Stage.BUILD) is not None


def test_history_is_per_environment_and_newest_first(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    old, new, other = _record(created_at=1.0), _record(created_at=2.0), _record("staging", 3.0)
    for record in (old, new, other):
        store.save(record)
    assert [r.id for r in store.history("prod")] == [new.id, old.id]
    assert [r.id for r in store.history("prod", limit=1)] == [new.id]
    assert store.get("d-missing") is None


def test_lock_has_one_holder_until_released(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    mine = Lock("prod", "manual", "slack:U1", "release freeze", time.time())
    assert store.acquire_lock(mine) == mine
    theirs = store.acquire_lock(Lock("prod", "manual", "slack:U2", "", time.time()))
    assert theirs.holder == "slack:U1" and theirs.reason == "release freeze"
    assert not store.release_lock("prod", "manual", "slack:U2")
    assert store.locks("prod") == [mine]
    assert store.release_lock("prod", "manual", "slack:U1")
    assert store.locks("prod") == []


def _race(path: str, holder: str, results: multiprocessing.Queue[str]) -> None:
    won = SqliteStore(Path(path)).acquire_lock(
        Lock("prod", "deploy", holder, "deploy", time.time())
    )
    results.put(won.holder)


def test_processes_racing_for_a_lock_agree_on_one_winner(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    SqliteStore(Path(path))
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[str] = context.Queue()
    racers = [context.Process(target=_race, args=(path, f"d-{n}", results)) for n in range(4)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(30)
    winners = {results.get(timeout=5) for _ in racers}
    assert len(winners) == 1


def test_unknown_store_url_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEPLOYER_STORE", "redis://localhost")
    with pytest.raises(RefusedError, match="not a store"):
        open_store()
    monkeypatch.setenv("DEPLOYER_STORE", f"sqlite:///{tmp_path}/s.db")
    open_store().save(_record())
    assert (tmp_path / "s.db").exists()


def test_a_key_is_claimed_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    assert store.claim("github-delivery:72d3162e")
    assert not store.claim("github-delivery:72d3162e")
    assert not SqliteStore(tmp_path / "state.db").claim("github-delivery:72d3162e")


def test_a_cancel_request_survives_the_record_being_rewritten(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    record = _record()
    store.save(record)
    assert store.cancel_requested(record.id) is None
    assert store.request_cancel(record.id, "slack:U1")
    store.save(record)  # the running pipeline saves its own copy after the request
    assert store.cancel_requested(record.id) == "slack:U1"
    assert not store.request_cancel(record.id, "slack:U2")
    assert store.cancel_requested(record.id) == "slack:U1"
