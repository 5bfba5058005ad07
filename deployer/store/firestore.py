"""The production store: Cloud Firestore (native mode), shared by the function and the job.

`DEPLOYER_STORE` names it:

    firestore                           project from GOOGLE_CLOUD_PROJECT, else ADC's
    firestore://PROJECT                 that project
    firestore://PROJECT/PREFIX          under deployers/PREFIX (deployers or tests sharing a project)
    firestore:///PREFIX                 the environment's project, under deployers/PREFIX
    ...?database=NAME                   a named database instead of "(default)"

With `FIRESTORE_EMULATOR_HOST` set, the client talks to the emulator instead.
Documents, under ROOT (the database root, or `deployers/PREFIX`):

    ROOT/deploys/{deploy id}     body (the record's JSON, the truth), and for queries and
                                 the console: environment, created_at, updated_at, kind,
                                 state, service, requester
    ROOT/locks/{env}:{kind}      environment, kind, holder, reason, created_at, owner,
                                 lease_until (locks written before leases lack the last
                                 two: read as "" and 0, no lease)
    ROOT/cancels/{deploy id}     deploy_id, who, token, created_at
    ROOT/claims/{key or hash}    key, token, created_at
    ROOT/outbox/{key or hash}    key, body (the caller's JSON), version (1 after the first
                                 write), due_at (seconds since the epoch, or null: nothing
                                 due), token

Document ids are the plain text when it is a safe id, else `~` + its SHA-256
(claim keys may hold `/`); the text is always kept as a field.

Atomicity: an absent lock, a cancel request, a claim and a new outbox document
are taken with `DocumentReference.create()`, which fails with AlreadyExists when
the document is there, so of several racers exactly one wins; the loser reads
the winner. What depends on what a document holds runs in a transaction, run
again from its first read when a racer committed first, so again exactly one
racer wins and the others read what it wrote:

    takeover   a held lock is replaced only as `Lock.yields_to` allows: by its
               holder (the same deploy), when it has no owner yet (handed over
               by the front) or is the caller's, or when its lease expired
    renew      the lease is extended only for the lock's holder and owner
    release    the lock is deleted only for its holder (and owner, when given)
    outbox     a write lands only over the version it was read at

An expired lease is taken over in that transaction, never by a blind write. A
worker killed while holding a deploy lock leaves it visible (`/deploy status`)
until its lease expires and a resumption of the same deploy takes it over, or
the deploy releases it, or someone deletes the document; no other deploy ever
takes it. A manual lock has no lease: only its holder replaces or releases it.

Indexes: `history` queries `deploys` by environment ordered by created_at
descending. The emulator needs no index; real Firestore needs the composite
index (environment ASC, created_at DESC) on the collection group `deploys`,
shipped in `infra/firestore.indexes.json` (with `body` exempt from indexing, in
`deploys` and in `outbox`). `unfinished` (state `in` a list) and `outbox_due`
(due_at `<=` now, ordered by due_at) filter and order on one field each, which
Firestore's automatic single-field indexes serve.
PREFIX is a document, not part of a collection name, so that one index serves
every prefix. Create it once per database (add `--database=NAME` for a named one):

    gcloud firestore indexes composite create --collection-group=deploys \\
        --query-scope=COLLECTION --field-config=field-path=environment,order=ascending \\
        --field-config=field-path=created_at,order=descending

The deployer's account needs `roles/datastore.user`. Any Firestore failure
(unreachable, no rights, no index) is a RefusedError naming the store: a deploy
never goes on without its lock store.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from google.api_core import exceptions
from google.api_core.retry import Retry, if_exception_type
from google.auth.exceptions import GoogleAuthError
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter

from deployer.adapters.firestore_client import firestore_client, firestore_emulator_host
from deployer.errors import RefusedError
from deployer.pipeline.record import DeployRecord, Lock, State
from deployer.store.protocol import Versioned

ROOT_COLLECTION = "deployers"
DEPLOYS, LOCKS, CANCELS, CLAIMS, OUTBOX = "deploys", "locks", "cancels", "claims", "outbox"
# The composite index `history` needs, as in infra/firestore.indexes.json.
HISTORY_INDEX = ((DEPLOYS, "environment", "ASCENDING"), (DEPLOYS, "created_at", "DESCENDING"))
DEFAULT_TIMEOUT = 10.0

_PLAIN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_PROJECT = re.compile(r"^[a-z][a-z0-9.:-]{0,99}$")
_DATABASE = re.compile(r"^[a-z0-9()-]{1,63}$")
# Safe to repeat: set() is idempotent, and a repeated create() that had committed
# reads back its own token (see _create).
_TRANSIENT_ERRORS = (
    exceptions.ServiceUnavailable,
    exceptions.DeadlineExceeded,
    exceptions.InternalServerError,
)
_TRANSIENT = if_exception_type(*_TRANSIENT_ERRORS, exceptions.Aborted)
# Inside a transaction an aborted read is not repeated: the transaction is over,
# and _transact starts it again.
_TRANSIENT_IN_TRANSACTION = if_exception_type(*_TRANSIENT_ERRORS)
_ATTEMPTS = 5
# The longest random pause before a transaction that lost to racers starts again.
_MAX_PAUSE = 1.0
_UNFINISHED = [str(state) for state in State if not state.finished]

T = TypeVar("T")


@dataclass(frozen=True)
class FirestoreLocation:
    """Where the store lives: project (None: from the environment), database and prefix."""

    project: str | None = None
    database: str | None = None
    prefix: str = ""


def parse_firestore_url(url: str) -> FirestoreLocation:
    """`firestore`, `firestore://PROJECT[/PREFIX][?database=NAME]` or `firestore:///PREFIX`."""
    if url == "firestore":
        return FirestoreLocation()
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    prefix = parts.path.removeprefix("/")
    database = query.pop("database", [None])[-1]
    problem = ""
    if parts.scheme != "firestore" or parts.fragment or query:
        problem = "it is not firestore://PROJECT/PREFIX?database=NAME"
    elif parts.netloc and not _PROJECT.match(parts.netloc):
        problem = f"{parts.netloc!r} is not a project id"
    elif prefix and not _PREFIX.match(prefix):
        problem = f"the prefix {prefix!r} must be one segment of letters, digits, '-' and '_'"
    elif database is not None and not _DATABASE.match(database):
        problem = f"{database!r} is not a database id"
    if problem:
        raise RefusedError(
            f"DEPLOYER_STORE={url!r}: {problem}. Without a store there are no locks, "
            "so nothing is deployed."
        )
    return FirestoreLocation(parts.netloc or None, database or None, prefix)


def _document_id(text: str) -> str:
    """`text` when it is a safe document id, else `~` + its SHA-256 (ids may not hold `/`)."""
    if _PLAIN_ID.match(text) and text not in (".", "..") and not text.startswith("__"):
        return text
    return "~" + hashlib.sha256(text.encode()).hexdigest()


def _lock_fields(lock: Lock) -> dict[str, Any]:
    return {
        "environment": lock.environment,
        "kind": lock.kind,
        "holder": lock.holder,
        "reason": lock.reason,
        "created_at": lock.created_at,
        "owner": lock.owner,
        "lease_until": lock.lease_until,
    }


def _lock_from(fields: dict[str, Any]) -> Lock:
    return Lock(
        environment=str(fields["environment"]),
        kind=str(fields["kind"]),
        holder=str(fields["holder"]),
        reason=str(fields["reason"]),
        created_at=float(fields["created_at"]),
        # Absent from locks written before leases: no owner yet, no lease.
        owner=str(fields.get("owner") or ""),
        lease_until=float(fields.get("lease_until") or 0.0),
    )


def _versioned_from(fields: dict[str, Any]) -> Versioned:
    due_at = fields.get("due_at")
    return Versioned(
        key=str(fields["key"]),
        body=str(fields["body"]),
        version=int(fields["version"]),
        due_at=None if due_at is None else float(due_at),
    )


class FirestoreStore:
    """`Store` on Cloud Firestore: create() for one winner, transactions for the rest."""

    def __init__(
        self, client: firestore.Client, prefix: str = "", timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._retry = Retry(
            predicate=_TRANSIENT, initial=0.1, maximum=1.0, multiplier=2.0, timeout=timeout
        )
        self._retry_in_transaction = self._retry.with_predicate(_TRANSIENT_IN_TRANSACTION)
        root: Any = client.collection(ROOT_COLLECTION).document(prefix) if prefix else client
        self._deploys = root.collection(DEPLOYS)
        self._locks = root.collection(LOCKS)
        self._cancels = root.collection(CANCELS)
        self._claims = root.collection(CLAIMS)
        self._outbox = root.collection(OUTBOX)
        emulator = firestore_emulator_host()
        self.where = (
            f"Firestore projects/{client.project}/databases/{client._database}"
            + (f"/documents/{ROOT_COLLECTION}/{prefix}" if prefix else "")
            + (f" (emulator {emulator})" if emulator else "")
        )

    @classmethod
    def from_url(cls, url: str, timeout: float = DEFAULT_TIMEOUT) -> FirestoreStore:
        """The store a `firestore...` URL names (see the module docstring)."""
        location = parse_firestore_url(url)
        client = firestore_client(location.project, location.database)
        return cls(client, location.prefix, timeout)

    @contextmanager
    def _answering(self, what: str) -> Iterator[None]:
        """Turn any Firestore failure into a RefusedError that names the store."""
        try:
            yield
        except (exceptions.GoogleAPICallError, exceptions.RetryError, GoogleAuthError) as error:
            raise RefusedError(
                f"{self.where} failed to {what}: {error}. Check that Firestore is reachable, "
                "the project and database exist, and the deployer has roles/datastore.user. "
                "Without the lock store nothing is deployed."
            ) from error

    def _calls(self, transaction: Any = None) -> dict[str, Any]:
        if transaction is None:
            return {"retry": self._retry, "timeout": self._timeout}
        return {
            "transaction": transaction,
            "retry": self._retry_in_transaction,
            "timeout": self._timeout,
        }

    def _create(self, ref: Any, fields: dict[str, Any]) -> dict[str, Any]:
        """Create the document, else read it; the fields it holds (ours when we won).

        Our fields carry a random token, so a create() retried after a reply was
        lost reads back its own document and still counts as the winner.
        """
        for _ in range(_ATTEMPTS):
            try:
                ref.create(fields, **self._calls())
                return fields
            except exceptions.AlreadyExists:
                pass
            snapshot = ref.get(**self._calls())
            if snapshot.exists:
                held: dict[str, Any] = snapshot.to_dict()
                return held
            # Deleted between our create and our read (a lock released): try again.
        raise RefusedError(f"{self.where}: {ref.path} kept changing while it was being created")

    def _transact(self, what: str, body: Callable[[Any], T]) -> T:
        """What `body(transaction)` answers, run `@firestore.transactional` until it commits.

        Its reads and writes commit together or not at all. A transaction aborted by
        racers (at a read or at its commit) starts again from its first read, so it
        decides on what the winner wrote. Each start is one attempt, after a random,
        growing pause: the library would start an aborted transaction again at once,
        and racers that all lost would meet again in the same conflict (the emulator
        breaks a deadlock by timing out every transaction in it, round after round).
        """
        run = firestore.transactional(body)
        deadline = time.monotonic() + self._timeout
        for attempt in itertools.count(1):
            try:
                result: T = run(self._client.transaction(max_attempts=1))
                return result
            except exceptions.Aborted:
                pass  # a read lost to a racer
            except ValueError as error:  # the library's "exceeded max attempts"
                if not isinstance(error.__cause__, exceptions.Aborted):
                    raise RefusedError(f"{self.where} could not {what}: {error}") from error
            pause = random.uniform(0, min(_MAX_PAUSE, 0.05 * 2**attempt))
            if time.monotonic() + pause > deadline:
                break
            time.sleep(pause)
        raise RefusedError(
            f"{self.where} could not {what}: racing writers aborted it {attempt} times "
            f"in {self._timeout:g} s"
        )

    # --- records -----------------------------------------------------------------------

    def save(self, record: DeployRecord, owner: str | None = None) -> bool:
        record.updated_at = time.time()
        fields = {
            "environment": record.environment,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
            "kind": record.kind,
            "state": str(record.state),
            "service": record.service,
            "requester": record.requester,
            "body": record.to_json(),
        }
        ref = self._deploys.document(_document_id(record.id))
        what = f"save deploy {record.id}"
        if owner is None:
            with self._answering(what):
                ref.set(fields, **self._calls())
            return True
        lock_ref = self._lock_ref(record.environment, "deploy")

        def write(transaction: firestore.Transaction) -> bool:
            # The lock is read in the transaction that writes the record: if another run
            # takes the deploy over meanwhile, the transaction fails and starts again.
            lock = lock_ref.get(**self._calls(transaction))
            if not (
                lock.exists
                and lock.get("holder") == record.id
                and (lock.to_dict() or {}).get("owner", "") == owner
            ):
                return False
            transaction.set(ref, fields)
            return True

        with self._answering(what):
            return self._transact(what, write)

    def get(self, deploy_id: str) -> DeployRecord | None:
        with self._answering(f"read deploy {deploy_id}"):
            snapshot = self._deploys.document(_document_id(deploy_id)).get(**self._calls())
        return DeployRecord.from_json(snapshot.get("body")) if snapshot.exists else None

    def history(self, environment: str, limit: int = 20) -> list[DeployRecord]:
        query = (
            self._deploys.where(filter=FieldFilter("environment", "==", environment))
            .order_by("created_at", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        # Ties on created_at come newest id first: Firestore orders by the document
        # name in the direction of the last order_by, as SQLite's `id DESC` does.
        with self._answering(f"read the history of {environment}"):
            return [
                DeployRecord.from_json(doc.get("body")) for doc in query.stream(**self._calls())
            ]

    def unfinished(self) -> list[DeployRecord]:
        # One field, so no composite index; the order is set here (a few records at most).
        query = self._deploys.where(filter=FieldFilter("state", "in", _UNFINISHED))
        with self._answering("read the unfinished deploys"):
            found = [
                DeployRecord.from_json(doc.get("body")) for doc in query.stream(**self._calls())
            ]
        return sorted(found, key=lambda record: (record.created_at, record.id))

    # --- locks -------------------------------------------------------------------------

    def _lock_ref(self, environment: str, kind: str) -> Any:
        return self._locks.document(_document_id(f"{environment}:{kind}"))

    def acquire_lock(self, lock: Lock, now: float | None = None) -> Lock:
        now = time.time() if now is None else now
        ref = self._lock_ref(lock.environment, lock.kind)
        fields = _lock_fields(lock)

        def take_over(transaction: firestore.Transaction) -> Lock:
            snapshot = ref.get(**self._calls(transaction))
            if snapshot.exists:
                held = _lock_from(snapshot.to_dict())
                if not held.yields_to(lock, now):
                    return held
                transaction.set(ref, fields)
            else:  # released since we looked
                transaction.create(ref, fields)
            return lock

        what = f"lock {lock.environment} ({lock.kind})"
        with self._answering(what):
            # The fast path: nobody holds it, and create() lets exactly one racer in.
            held = _lock_from(self._create(ref, fields))
            if held == lock or not held.yields_to(lock, now):
                return held
            return self._transact(what, take_over)

    def renew_lock(
        self, environment: str, kind: str, holder: str, owner: str, lease_until: float
    ) -> bool:
        ref = self._lock_ref(environment, kind)

        def held_by_us(snapshot: Any) -> bool:
            if not snapshot.exists:
                return False
            held = _lock_from(snapshot.to_dict())
            return held.holder == holder and held.owner == owner

        def renew(transaction: firestore.Transaction) -> bool:
            if not held_by_us(ref.get(**self._calls(transaction))):
                return False
            transaction.update(ref, {"lease_until": lease_until})
            return True

        what = f"renew the lock of {environment} ({kind})"
        with self._answering(what):
            # A plain read first: a run that lost its lock learns it without a transaction.
            if not held_by_us(ref.get(**self._calls())):
                return False
            return self._transact(what, renew)

    def release_lock(
        self, environment: str, kind: str, holder: str, owner: str | None = None
    ) -> bool:
        ref = self._lock_ref(environment, kind)

        def held_by_holder(snapshot: Any) -> bool:
            return bool(
                snapshot.exists
                and snapshot.get("holder") == holder
                and (owner is None or _lock_from(snapshot.to_dict()).owner == owner)
            )

        def release(transaction: firestore.Transaction) -> bool:
            if not held_by_holder(ref.get(**self._calls(transaction))):
                return False
            transaction.delete(ref)
            return True

        what = f"unlock {environment} ({kind})"
        with self._answering(what):
            # A plain read first: most calls find nothing to release, and it fails
            # within the store's timeout when Firestore is unreachable.
            if not held_by_holder(ref.get(**self._calls())):
                return False
            return self._transact(what, release)

    def locks(self, environment: str) -> list[Lock]:
        query = self._locks.where(filter=FieldFilter("environment", "==", environment))
        with self._answering(f"read the locks of {environment}"):
            found = [_lock_from(doc.to_dict()) for doc in query.stream(**self._calls())]
        return sorted(found, key=lambda lock: lock.kind)

    # --- cancels and claims ------------------------------------------------------------

    def request_cancel(self, deploy_id: str, who: str) -> bool:
        token = secrets.token_hex(8)
        fields = {"deploy_id": deploy_id, "who": who, "token": token, "created_at": time.time()}
        with self._answering(f"record a cancel request for {deploy_id}"):
            held = self._create(self._cancels.document(_document_id(deploy_id)), fields)
        return held.get("token") == token

    def cancel_requested(self, deploy_id: str) -> str | None:
        with self._answering(f"read the cancel request of {deploy_id}"):
            snapshot = self._cancels.document(_document_id(deploy_id)).get(**self._calls())
        return str(snapshot.get("who")) if snapshot.exists else None

    def claim(self, key: str) -> bool:
        token = secrets.token_hex(8)
        fields = {"key": key, "token": token, "created_at": time.time()}
        with self._answering(f"claim {key}"):
            held = self._create(self._claims.document(_document_id(key)), fields)
        return held.get("token") == token

    # --- the outbox ----------------------------------------------------------------------

    def outbox_read(self, key: str) -> Versioned | None:
        with self._answering(f"read the outbox document {key}"):
            snapshot = self._outbox.document(_document_id(key)).get(**self._calls())
        return _versioned_from(snapshot.to_dict()) if snapshot.exists else None

    def outbox_write(self, key: str, body: str, due_at: float | None, version: int) -> bool:
        ref = self._outbox.document(_document_id(key))
        what = f"write the outbox document {key}"
        if version == 0:
            token = secrets.token_hex(8)
            fields = {"key": key, "body": body, "version": 1, "due_at": due_at, "token": token}
            with self._answering(what):
                held = self._create(ref, fields)
            return held.get("token") == token

        with self._answering(what):
            snapshot = ref.get(**self._calls())
            if not (snapshot.exists and snapshot.get("version") == version):
                return False
            # Written only if nobody wrote since this read: an update precondition on the
            # document's update time (Firestore's optimistic concurrency, no transaction
            # locks for the outbox's frequent, short writes). The token stays the creator's.
            try:
                ref.update(
                    {"body": body, "version": version + 1, "due_at": due_at},
                    option=self._client.write_option(last_update_time=snapshot.update_time),
                    **self._calls(),
                )
            except exceptions.FailedPrecondition:
                # Lost to a racer, or our own write landed and its answer was lost (the
                # call was retried): only the document can tell which.
                now = ref.get(**self._calls())
                return bool(
                    now.exists and now.get("version") == version + 1 and now.get("body") == body
                )
            return True

    def outbox_due(self, now: float, limit: int) -> list[Versioned]:
        # A document whose due_at is null (nothing due) does not match `<= now`: null sorts
        # before every number ("Value type ordering",
        # https://cloud.google.com/firestore/docs/concepts/data-types), but a range filter
        # only matches values of the compared value's type, as the client SDKs evaluate
        # filters the backend's way ("Only compare types with matching backend order",
        # firebase/firebase-android-sdk, firebase-firestore/.../core/FieldFilter.java).
        # The store contract checks it on the emulator. One field filtered and ordered:
        # Firestore's automatic single-field index serves it.
        query = (
            self._outbox.where(filter=FieldFilter("due_at", "<=", now))
            .order_by("due_at")
            .limit(limit)
        )
        with self._answering("read the outbox documents due"):
            return [_versioned_from(doc.to_dict()) for doc in query.stream(**self._calls())]
