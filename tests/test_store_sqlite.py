"""The embedded SQLite store: records survive, and a lock has exactly one holder."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from deployer.errors import RefusedError
from deployer.store import open_store
from deployer.store.sqlite import SqliteStore
from tests.store_contract import (
    OLD_LOCKS_WRITTEN,
    StoreContract,
    assert_old_locks_are_held_and_taken_over,
    make_record,
)

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
        for kind, holder, reason, created_at in OLD_LOCKS_WRITTEN:
            db.execute(
                "INSERT INTO locks VALUES ('prod', ?, ?, ?, ?)", (kind, holder, reason, created_at)
            )
        db.commit()

    assert SqliteStore(path).locks("prod")[0].owner == ""  # and again, once opened twice
    assert_old_locks_are_held_and_taken_over(SqliteStore(path))
