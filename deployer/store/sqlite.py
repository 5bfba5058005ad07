"""The embedded store: one SQLite file, safe across processes on one machine."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deployer.pipeline.record import DeployRecord, Lock, State
from deployer.store.protocol import Versioned

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
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    version INTEGER NOT NULL,
    due_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_by_due ON outbox (due_at);
"""
# Columns added after the first release: files written before get them on open.
_ADDED_COLUMNS = {
    "locks": (("owner", "TEXT NOT NULL DEFAULT ''"), ("lease_until", "REAL NOT NULL DEFAULT 0")),
}
_LOCK_COLUMNS = "environment, kind, holder, reason, created_at, owner, lease_until"
_UNFINISHED = tuple(str(state) for state in State if not state.finished)


_WRITERS: dict[Path, threading.Lock] = {}
_WRITERS_GUARD = threading.Lock()


def _writers(path: Path) -> threading.Lock:
    """The lock this process's writers of the database at `path` take turns on."""
    key = path.resolve()
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(key, threading.Lock())


class SqliteStore:
    """`Store` on a SQLite file in WAL mode; every change is one `BEGIN IMMEDIATE` transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        db = self._connection()
        # executescript manages its own transaction (it commits first).
        db.executescript(_SCHEMA)
        for table, columns in _ADDED_COLUMNS.items():
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for name, declaration in columns:
                if name not in have:
                    try:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
                    except sqlite3.OperationalError as error:  # another process added it first
                        if "duplicate column" not in str(error):
                            raise

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            # Autocommit mode: transactions are opened explicitly with BEGIN IMMEDIATE,
            # so two processes racing for a lock serialise on the write lock.
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL is safe from corruption and loses nothing when a process
            # dies (a killed worker); only an OS crash may lose the last commits
            # (sqlite.org/pragma.html#pragma_synchronous). FULL syncs every commit.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # Writers of this process queue on a lock of their own: waiting inside SQLite
        # means sleeping in growing steps (its busy handler), which starves everyone
        # once the CPUs are busy. Other processes still meet at BEGIN IMMEDIATE.
        with _writers(self.path):
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # --- records -----------------------------------------------------------------------

    def save(self, record: DeployRecord, owner: str | None = None) -> bool:
        record.updated_at = time.time()
        body = record.to_json()  # outside the transaction: writers wait for each other
        with self._transaction() as db:
            if owner is not None:
                held = db.execute(
                    "SELECT 1 FROM locks WHERE environment = ? AND kind = 'deploy' "
                    "AND holder = ? AND owner = ?",
                    (record.environment, record.id, owner),
                ).fetchone()
                if held is None:
                    return False
            db.execute(
                "INSERT OR REPLACE INTO deploys (id, environment, created_at, body) VALUES (?, ?, ?, ?)",
                (record.id, record.environment, record.created_at, body),
            )
        return True

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

    def unfinished(self) -> list[DeployRecord]:
        marks = ", ".join("?" for _ in _UNFINISHED)
        rows = self._connection().execute(
            f"SELECT body FROM deploys WHERE json_extract(body, '$.state') IN ({marks}) "
            "ORDER BY created_at, id",
            _UNFINISHED,
        )
        return [DeployRecord.from_json(body) for (body,) in rows]

    # --- locks -------------------------------------------------------------------------

    def acquire_lock(self, lock: Lock, now: float | None = None) -> Lock:
        now = time.time() if now is None else now
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_LOCK_COLUMNS} FROM locks WHERE environment = ? AND kind = ?",
                (lock.environment, lock.kind),
            ).fetchone()
            if row is not None:
                held = Lock(*row)
                if not held.yields_to(lock, now):
                    return held
            db.execute(
                f"INSERT OR REPLACE INTO locks ({_LOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    lock.environment,
                    lock.kind,
                    lock.holder,
                    lock.reason,
                    lock.created_at,
                    lock.owner,
                    lock.lease_until,
                ),
            )
            return lock

    def renew_lock(
        self,
        environment: str,
        kind: str,
        holder: str,
        owner: str,
        lease_until: float,
        hand_over: bool = False,
    ) -> bool:
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE locks SET lease_until = ?, owner = ? "
                "WHERE environment = ? AND kind = ? AND holder = ? AND owner = ?",
                (lease_until, "" if hand_over else owner, environment, kind, holder, owner),
            ).rowcount
        return changed > 0

    def release_lock(
        self, environment: str, kind: str, holder: str, owner: str | None = None
    ) -> bool:
        query = "DELETE FROM locks WHERE environment = ? AND kind = ? AND holder = ?"
        args: tuple[str, ...] = (environment, kind, holder)
        if owner is not None:
            query, args = query + " AND owner = ?", (*args, owner)
        with self._transaction() as db:
            deleted = db.execute(query, args).rowcount
        return deleted > 0

    def locks(self, environment: str) -> list[Lock]:
        rows = self._connection().execute(
            f"SELECT {_LOCK_COLUMNS} FROM locks WHERE environment = ? ORDER BY kind",
            (environment,),
        )
        return [Lock(*row) for row in rows]

    # --- cancels and claims ------------------------------------------------------------

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

    # --- the outbox ----------------------------------------------------------------------

    def outbox_read(self, key: str) -> Versioned | None:
        row = (
            self._connection()
            .execute("SELECT key, body, version, due_at FROM outbox WHERE key = ?", (key,))
            .fetchone()
        )
        return Versioned(*row) if row else None

    def outbox_write(self, key: str, body: str, due_at: float | None, version: int) -> bool:
        with self._transaction() as db:
            if version == 0:
                written = db.execute(
                    "INSERT OR IGNORE INTO outbox (key, body, version, due_at) VALUES (?, ?, 1, ?)",
                    (key, body, due_at),
                ).rowcount
            else:
                written = db.execute(
                    "UPDATE outbox SET body = ?, version = version + 1, due_at = ? "
                    "WHERE key = ? AND version = ?",
                    (body, due_at, key, version),
                ).rowcount
        return written > 0

    def outbox_due(self, now: float, limit: int) -> list[Versioned]:
        rows = self._connection().execute(
            "SELECT key, body, version, due_at FROM outbox "
            "WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at LIMIT ?",
            (now, limit),
        )
        return [Versioned(*row) for row in rows]
