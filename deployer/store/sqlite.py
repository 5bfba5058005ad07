"""The embedded store: one SQLite file, safe across processes on one machine."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deployer.pipeline.record import DeployRecord, Lock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deploys (
    id TEXT PRIMARY KEY,
    environment TEXT NOT NULL,
    created_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deploys_by_environment ON deploys (environment, created_at);
CREATE TABLE IF NOT EXISTS locks (
    environment TEXT NOT NULL,
    kind TEXT NOT NULL,
    holder TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (environment, kind)
);
CREATE TABLE IF NOT EXISTS cancels (
    deploy_id TEXT PRIMARY KEY,
    who TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
"""


class SqliteStore:
    """`Store` on a SQLite file in WAL mode; lock changes are single transactions."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        # executescript manages its own transaction (it commits first).
        self._connection().executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE,
            # so two processes racing for a lock serialise on the write lock.
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def save(self, record: DeployRecord) -> None:
        record.updated_at = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO deploys (id, environment, created_at, body) VALUES (?, ?, ?, ?)",
                (record.id, record.environment, record.created_at, record.to_json()),
            )

    def get(self, deploy_id: str) -> DeployRecord | None:
        row = (
            self._connection()
            .execute("SELECT body FROM deploys WHERE id = ?", (deploy_id,))
            .fetchone()
        )
        return DeployRecord.from_json(row[0]) if row else None

    def history(self, environment: str, limit: int = 20) -> list[DeployRecord]:
        rows = self._connection().execute(
            "SELECT body FROM deploys WHERE environment = ? ORDER BY created_at DESC, id DESC LIMIT ?",
            (environment, limit),
        )
        return [DeployRecord.from_json(body) for (body,) in rows]

    def acquire_lock(self, lock: Lock) -> Lock:
        with self._transaction() as db:
            row = db.execute(
                "SELECT environment, kind, holder, reason, created_at FROM locks WHERE environment = ? AND kind = ?",
                (lock.environment, lock.kind),
            ).fetchone()
            if row is not None:
                return Lock(*row)
            db.execute(
                "INSERT INTO locks (environment, kind, holder, reason, created_at) VALUES (?, ?, ?, ?, ?)",
                (lock.environment, lock.kind, lock.holder, lock.reason, lock.created_at),
            )
            return lock

    def release_lock(self, environment: str, kind: str, holder: str) -> bool:
        with self._transaction() as db:
            deleted = db.execute(
                "DELETE FROM locks WHERE environment = ? AND kind = ? AND holder = ?",
                (environment, kind, holder),
            ).rowcount
        return deleted > 0

    def locks(self, environment: str) -> list[Lock]:
        rows = self._connection().execute(
            "SELECT environment, kind, holder, reason, created_at FROM locks WHERE environment = ? ORDER BY kind",
            (environment,),
        )
        return [Lock(*row) for row in rows]

    def request_cancel(self, deploy_id: str, who: str) -> bool:
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO cancels (deploy_id, who, created_at) VALUES (?, ?, ?)",
                (deploy_id, who, time.time()),
            ).rowcount
        return inserted > 0

    def cancel_requested(self, deploy_id: str) -> str | None:
        row = (
            self._connection()
            .execute("SELECT who FROM cancels WHERE deploy_id = ?", (deploy_id,))
            .fetchone()
        )
        return str(row[0]) if row else None

    def claim(self, key: str) -> bool:
        with self._transaction() as db:
            inserted = db.execute(
                "INSERT OR IGNORE INTO claims (key, created_at) VALUES (?, ?)", (key, time.time())
            ).rowcount
        return inserted > 0
