"""The store interface: deploy records and environment locks."""

from __future__ import annotations

from typing import Protocol

from deployer.pipeline.record import DeployRecord, Lock


class Store(Protocol):
    def save(self, record: DeployRecord) -> None:
        """Insert or replace the record (the pipeline saves after every stage output)."""
        ...

    def get(self, deploy_id: str) -> DeployRecord | None: ...

    def history(self, environment: str, limit: int = 20) -> list[DeployRecord]:
        """The environment's records, newest first."""
        ...

    def acquire_lock(self, lock: Lock) -> Lock:
        """Take `lock` unless one of its kind is held; the lock that holds the environment now."""
        ...

    def release_lock(self, environment: str, kind: str, holder: str) -> bool:
        """Release the lock if `holder` holds it; whether it did."""
        ...

    def locks(self, environment: str) -> list[Lock]:
        """The locks held on `environment`."""
        ...

    def request_cancel(self, deploy_id: str, who: str) -> bool:
        """Ask a running deploy to stop (kept apart from the record, which the run rewrites)."""
        ...

    def cancel_requested(self, deploy_id: str) -> str | None:
        """Who asked `deploy_id` to stop, or None."""
        ...

    def claim(self, key: str) -> bool:
        """Record `key` (e.g. a GitHub delivery id) once: True the first time, False after."""
        ...
