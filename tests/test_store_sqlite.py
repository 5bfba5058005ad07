"""The embedded SQLite store: records survive, and a lock has exactly one holder."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from deployer.errors import RefusedError
from deployer.pipeline.record import Lock
from deployer.store import open_store
from deployer.store.sqlite import SqliteStore
from tests.store_contract import StoreContract, make_record

# The locks table as the first release created it: no owner, no lease.
OLD_LOCKS = """
CREATE TABLE locks (
    environment TEXT NOT NULL,
    kind TEXT NOT NULL,
    holder TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (environment, kind)
);
"""


class TestSqliteStore(StoreContract):
    """The shared store contract (tests/store_contract.py) on a fresh SQLite file."""

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'state.db'}"


def test_unknown_store_url_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEPLOYER_STORE", "redis://localhost")
    with pytest.raises(RefusedError, match="not a store"):
        open_store()
    monkeypatch.setenv("DEPLOYER_STORE", f"sqlite:///{tmp_path}/s.db")
    open_store().save(make_record())
    assert (tmp_path / "s.db").exists()


def test_locks_written_before_leases_read_back_without_owner_or_lease(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(OLD_LOCKS)
        db.execute("INSERT INTO locks VALUES ('prod', 'deploy', 'd-old', 'deploy', 1.5)")
        db.execute("INSERT INTO locks VALUES ('prod', 'manual', 'slack:U1', 'freeze', 2.5)")
        db.commit()

    store = SqliteStore(path)
    old_deploy = Lock("prod", "deploy", "d-old", "deploy", 1.5, owner="", lease_until=0.0)
    old_manual = Lock("prod", "manual", "slack:U1", "freeze", 2.5, owner="", lease_until=0.0)
    assert store.locks("prod") == [old_deploy, old_manual]
    assert SqliteStore(path).locks("prod") == [old_deploy, old_manual]  # opened again
    # Still held against everyone else, and the old deploy's next run takes its lock over.
    now = time.time()
    other = Lock("prod", "deploy", "d-new", "deploy", now, "w9", now + 60)
    assert store.acquire_lock(other, now + 10**6) == old_deploy
    run = Lock("prod", "deploy", "d-old", "deploy", now, "w1", now + 60)
    assert store.acquire_lock(run, now) == run
    assert store.renew_lock("prod", "deploy", "d-old", "w1", now + 120)
    assert store.locks("prod") == [
        Lock("prod", "deploy", "d-old", "deploy", now, "w1", now + 120),
        old_manual,
    ]
