"""The production store: Cloud Firestore (native mode), shared by the function and the job.

`DEPLOYER_STORE` names it (`firestore`, `firestore://PROJECT/PREFIX?database=NAME`, ...;
the URL module lists the forms), and one document per record, lock, cancel request,
claim and outbox key holds it, under a root of its own per PREFIX (the documents
module lists the fields).

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

import secrets
import time
from typing import Any

from google.api_core import exceptions
from google.cloud import firestore
from google.cloud.firestore_v1 import FieldFilter

from deployer.adapters.firestore_client import firestore_client, firestore_emulator_host
from deployer.pipeline.record import DeployRecord, Lock, State
from deployer.store.firestore_calls import FirestoreCalls
from deployer.store.firestore_documents import (
    CANCELS,
    CLAIMS,
    DEPLOYS,
    HISTORY_INDEX,
    LOCKS,
    OUTBOX,
    ROOT_COLLECTION,
    document_id,
    lock_fields,
    lock_from,
    record_fields,
    versioned_from,
)
from deployer.store.firestore_url import FirestoreLocation, parse_firestore_url
from deployer.store.protocol import Versioned

# What users of the Firestore store import from here, wherever it is defined.
__all__ = [
    "DEPLOYS",
    "HISTORY_INDEX",
    "LOCKS",
    "OUTBOX",
    "ROOT_COLLECTION",
    "FirestoreLocation",
    "FirestoreStore",
    "parse_firestore_url",
]

DEFAULT_TIMEOUT = 10.0
_UNFINISHED = [str(state) for state in State if not state.finished]


class FirestoreStore(FirestoreCalls):
    """`Store` on Cloud Firestore: create() for one winner, transactions for the rest."""

    def __init__(
        self, client: firestore.Client, prefix: str = "", timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        emulator = firestore_emulator_host()
        super().__init__(
            client,
            f"Firestore projects/{client.project}/databases/{client._database}"
            + (f"/documents/{ROOT_COLLECTION}/{prefix}" if prefix else "")
            + (f" (emulator {emulator})" if emulator else ""),
            timeout,
        )
        root: Any = client.collection(ROOT_COLLECTION).document(prefix) if prefix else client
        self._deploys = root.collection(DEPLOYS)
        self._locks = root.collection(LOCKS)
        self._cancels = root.collection(CANCELS)
        self._claims = root.collection(CLAIMS)
        self._outbox = root.collection(OUTBOX)

    @classmethod
    def from_url(cls, url: str, timeout: float = DEFAULT_TIMEOUT) -> FirestoreStore:
        """The store a `firestore...` URL names (see `parse_firestore_url`)."""
        location = parse_firestore_url(url)
        client = firestore_client(location.project, location.database)
        return cls(client, location.prefix, timeout)

    # --- records -----------------------------------------------------------------------

    def save(self, record: DeployRecord, owner: str | None = None) -> bool:
        record.updated_at = time.time()
        fields = record_fields(record)
        ref = self._deploys.document(document_id(record.id))
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
            snapshot = self._deploys.document(document_id(deploy_id)).get(**self._calls())
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
        return self._locks.document(document_id(f"{environment}:{kind}"))

    def acquire_lock(self, lock: Lock, now: float | None = None) -> Lock:
        now = time.time() if now is None else now
        ref = self._lock_ref(lock.environment, lock.kind)
        fields = lock_fields(lock)

        def take_over(transaction: firestore.Transaction) -> Lock:
            snapshot = ref.get(**self._calls(transaction))
            if snapshot.exists:
                held = lock_from(snapshot.to_dict())
                if not held.yields_to(lock, now):
                    return held
                transaction.set(ref, fields)
            else:  # released since we looked
                transaction.create(ref, fields)
            return lock

        what = f"lock {lock.environment} ({lock.kind})"
        with self._answering(what):
            # The fast path: nobody holds it, and create() lets exactly one racer in.
            held = lock_from(self._create(ref, fields))
            if held == lock or not held.yields_to(lock, now):
                return held
            return self._transact(what, take_over)

    def renew_lock(
        self,
        environment: str,
        kind: str,
        holder: str,
        owner: str,
        lease_until: float,
        hand_over: bool = False,
    ) -> bool:
        ref = self._lock_ref(environment, kind)

        def held_by_us(snapshot: Any) -> bool:
            if not snapshot.exists:
                return False
            held = lock_from(snapshot.to_dict())
            return held.holder == holder and held.owner == owner

        def renew(transaction: firestore.Transaction) -> bool:
            if not held_by_us(ref.get(**self._calls(transaction))):
                return False
            changes: dict[str, Any] = {"lease_until": lease_until}
            if hand_over:
                changes["owner"] = ""
            transaction.update(ref, changes)
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
                and (owner is None or lock_from(snapshot.to_dict()).owner == owner)
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
            found = [lock_from(doc.to_dict()) for doc in query.stream(**self._calls())]
        return sorted(found, key=lambda lock: lock.kind)

    # --- cancels and claims ------------------------------------------------------------

    def request_cancel(self, deploy_id: str, who: str) -> bool:
        token = secrets.token_hex(8)
        fields = {"deploy_id": deploy_id, "who": who, "token": token, "created_at": time.time()}
        with self._answering(f"record a cancel request for {deploy_id}"):
            held = self._create(self._cancels.document(document_id(deploy_id)), fields)
        return held.get("token") == token

    def cancel_requested(self, deploy_id: str) -> str | None:
        with self._answering(f"read the cancel request of {deploy_id}"):
            snapshot = self._cancels.document(document_id(deploy_id)).get(**self._calls())
        return str(snapshot.get("who")) if snapshot.exists else None

    def claim(self, key: str) -> bool:
        token = secrets.token_hex(8)
        fields = {"key": key, "token": token, "created_at": time.time()}
        with self._answering(f"claim {key}"):
            held = self._create(self._claims.document(document_id(key)), fields)
        return held.get("token") == token

    # --- the outbox ----------------------------------------------------------------------

    def outbox_read(self, key: str) -> Versioned | None:
        with self._answering(f"read the outbox document {key}"):
            snapshot = self._outbox.document(document_id(key)).get(**self._calls())
        return versioned_from(snapshot.to_dict()) if snapshot.exists else None

    def outbox_write(self, key: str, body: str, due_at: float | None, version: int) -> bool:
        ref = self._outbox.document(document_id(key))
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
            return [versioned_from(doc.to_dict()) for doc in query.stream(**self._calls())]
