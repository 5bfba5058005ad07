"""The Firestore store's documents, under ROOT (the database root, or `deployers/PREFIX`):

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
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from deployer.pipeline.record import DeployRecord, Lock
from deployer.store.protocol import Versioned

ROOT_COLLECTION = "deployers"
DEPLOYS, LOCKS, CANCELS, CLAIMS, OUTBOX = "deploys", "locks", "cancels", "claims", "outbox"
# The composite index `history` needs, as in infra/firestore.indexes.json.
HISTORY_INDEX = ((DEPLOYS, "environment", "ASCENDING"), (DEPLOYS, "created_at", "DESCENDING"))

_PLAIN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def document_id(text: str) -> str:
    """`text` when it is a safe document id, else `~` + its SHA-256 (ids may not hold `/`)."""
    if _PLAIN_ID.match(text) and text not in (".", "..") and not text.startswith("__"):
        return text
    return "~" + hashlib.sha256(text.encode()).hexdigest()


def record_fields(record: DeployRecord) -> dict[str, Any]:
    """A deploy's document: its JSON, and the fields queries and the console read."""
    return {
        "environment": record.environment,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "kind": record.kind,
        "state": str(record.state),
        "service": record.service,
        "requester": record.requester,
        "body": record.to_json(),
    }


def lock_fields(lock: Lock) -> dict[str, Any]:
    return {
        "environment": lock.environment,
        "kind": lock.kind,
        "holder": lock.holder,
        "reason": lock.reason,
        "created_at": lock.created_at,
        "owner": lock.owner,
        "lease_until": lock.lease_until,
    }


def lock_from(fields: dict[str, Any]) -> Lock:
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


def versioned_from(fields: dict[str, Any]) -> Versioned:
    due_at = fields.get("due_at")
    return Versioned(
        key=str(fields["key"]),
        body=str(fields["body"]),
        version=int(fields["version"]),
        due_at=None if due_at is None else float(due_at),
    )
