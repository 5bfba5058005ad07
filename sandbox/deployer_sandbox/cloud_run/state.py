"""The stored Cloud Run services and revisions, behind one lock.

Handlers and reconcilers read copies and write through `RunState` methods
while holding `RunState.lock`; no stored message leaves this module uncopied.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from google.cloud import run_v2
from google.iam.v1 import policy_pb2

from deployer_sandbox.cloud_run.names import (
    ServiceName,
    parse_revision,
    parse_service,
    revision_not_found,
    service_not_found,
)
from deployer_sandbox.cloud_run.resources import State
from deployer_sandbox.common.protos import clone, new_etag, now

# The etag Google gives a resource whose IAM policy was never set ("ACAB" in base64).
EMPTY_POLICY_ETAG = b"\x00\x20\x01"


def empty_policy() -> policy_pb2.Policy:
    """The IAM policy of a service nobody has set one on: no bindings, so private."""
    return policy_pb2.Policy(etag=EMPTY_POLICY_ETAG)


@dataclass
class RevisionRecord:
    """A revision as stored, and the template configuration it was made from."""

    revision: run_v2.Revision
    config: run_v2.RevisionTemplate  # template without its name, for "same configuration"

    @property
    def id(self) -> str:
        return str(self.revision.name).rsplit("/", 1)[-1]

    def ready_state(self) -> int:
        """State of the revision's Ready condition (pending while it starts)."""
        for cond in self.revision.conditions:
            if cond.type_ == "Ready":
                return int(cond.state)
        return State.CONDITION_PENDING

    def ready_message(self) -> str:
        for cond in self.revision.conditions:
            if cond.type_ == "Ready":
                return str(cond.message)
        return ""


@dataclass
class ServiceRecord:
    """A service as stored, with its revisions in creation order."""

    name: ServiceName
    service: run_v2.Service
    revisions: dict[str, RevisionRecord] = field(default_factory=dict)
    deleted: bool = False
    policy: policy_pb2.Policy = field(default_factory=empty_policy)  # see cloud_run.iam

    def touch(self) -> None:
        """Record a change: new etag, new update time."""
        self.service.etag = new_etag()
        self.service.update_time = now()


class RunState:
    """Thread-safe store of services (by full name) and their revisions."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._services: dict[str, ServiceRecord] = {}

    def find(self, name: ServiceName) -> ServiceRecord | None:
        with self.lock:
            return self._services.get(name.name)

    def record(self, name: str, field_name: str = "name") -> ServiceRecord:
        """The stored service named `name`, or NOT_FOUND."""
        parsed = parse_service(name, field_name)
        with self.lock:
            found = self._services.get(parsed.name)
            if found is None:
                raise service_not_found(parsed)
            return found

    def revision_record(self, name: str) -> tuple[ServiceRecord, RevisionRecord]:
        """The stored revision named `name` and its service, or NOT_FOUND."""
        service, revision_id = parse_revision(name)
        with self.lock:
            found = self._services.get(service.name)
            revision = found.revisions.get(revision_id) if found else None
            if found is None or revision is None:
                raise revision_not_found(service, revision_id)
            return found, revision

    def add(self, record: ServiceRecord) -> None:
        with self.lock:
            self._services[record.name.name] = record

    def remove(self, record: ServiceRecord) -> None:
        """Forget a service; its reconciler sees `deleted` and stops touching it."""
        with self.lock:
            record.deleted = True
            if self._services.get(record.name.name) is record:
                del self._services[record.name.name]

    def revisions_in_project(self, project: str) -> list[tuple[ServiceName, str]]:
        """(service, revision id) of every stored revision in `project`, in any location."""
        prefix = f"projects/{project}/"
        with self.lock:
            return [
                (record.name, revision_id)
                for key, record in sorted(self._services.items())
                if key.startswith(prefix)
                for revision_id in record.revisions
            ]

    def services_in(self, parent: str) -> list[run_v2.Service]:
        """Copies of every service under `parent`, sorted by name."""
        with self.lock:
            return [
                clone(record.service)
                for key, record in sorted(self._services.items())
                if key.startswith(parent + "/services/")
            ]
