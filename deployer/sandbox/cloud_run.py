"""Cloud Run Admin v2: services, revisions and jobs, with revisions running as local processes.

CloudRun
├── google.cloud.run.v2.Services    run_services.py   -> run_reconciler.py (per-service queue)
├── google.cloud.run.v2.Revisions   run_revisions.py
├── google.cloud.run.v2.Jobs, ...   run_jobs.py
├── RevisionLauncher                run_launcher.py   -> revision_processes.py -> child_processes.py
└── Router                          router.py         (service and tag URLs; ID tokens
                                                       checked with id_tokens.py)
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc

from deployer.sandbox.faults import Faults
from deployer.sandbox.id_tokens import IdTokenKey
from deployer.sandbox.images import ImageStore
from deployer.sandbox.operations import Operations
from deployer.sandbox.revision_processes import RevisionProcesses
from deployer.sandbox.router import Router
from deployer.sandbox.run_jobs import RunJobs
from deployer.sandbox.run_launcher import RevisionLauncher
from deployer.sandbox.run_revisions import RevisionsServicer
from deployer.sandbox.run_serial import SerialQueues
from deployer.sandbox.run_services import ServicesServicer
from deployer.sandbox.run_state import RunState
from deployer.sandbox.secret_manager import SecretManager


class CloudRun:
    """The Cloud Run component of the sandbox; `close()` ends every revision process."""

    def __init__(
        self,
        operations: Operations,
        images: ImageStore,
        secrets: SecretManager,
        faults: Faults,
        workdir: Path,
        id_tokens: IdTokenKey | None = None,
        platform_env: Mapping[str, str] | None = None,
    ) -> None:
        """`id_tokens`: the key whose ID tokens open private services; `platform_env`: what
        every revision and job task finds in its environment (the metadata server's address)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.state = RunState()
        self.processes = RevisionProcesses(workdir / "revisions", faults)
        self.router = Router(faults, id_tokens=id_tokens)
        self._queues = SerialQueues("run-reconcile")
        launcher = RevisionLauncher(self.processes, images, secrets, platform_env)
        self._services = ServicesServicer(
            self.state, operations, launcher, self.router, faults, self._queues
        )
        self._revisions = RevisionsServicer(self.state, operations, launcher, self._queues)
        self._jobs = RunJobs(operations, images, secrets, workdir / "jobs", faults, platform_env)

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """The gRPC services: Services, Revisions, and the jobs' own."""
        return [self._services.handler(), self._revisions.handler(), *self._jobs.handlers()]

    def close(self) -> None:
        """Stop reconciling, then end every revision process and URL. Idempotent."""
        self._queues.close()
        self._jobs.close()
        self.processes.close()
        self.router.close()
