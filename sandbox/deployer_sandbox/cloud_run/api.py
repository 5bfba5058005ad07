"""Cloud Run Admin v2: services, revisions and jobs, with revisions running as local processes.

`CloudRun` puts together the servicers of Services (whose changes a reconciler
applies, one queue per service), Revisions, and Jobs with their Executions; the
`RevisionLauncher`, which starts a revision's container as a local child process in a
network namespace of its own (`common.netns`);
and the `Router`, which serves each service's URL and tag URLs and checks the ID
tokens of calls to private services. Every request a revision answered through the router
is in `request_log` (what the sandbox's Cloud Monitoring reads).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import grpc

from deployer_sandbox.cloud_run.jobs import RunJobs
from deployer_sandbox.cloud_run.launcher import RevisionLauncher
from deployer_sandbox.cloud_run.processes import RevisionProcesses
from deployer_sandbox.cloud_run.request_log import RequestLog
from deployer_sandbox.cloud_run.revisions import RevisionsServicer
from deployer_sandbox.cloud_run.router import Router
from deployer_sandbox.cloud_run.serial import SerialQueues
from deployer_sandbox.cloud_run.services import ServicesServicer
from deployer_sandbox.cloud_run.state import RunState
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.images import ImageStore
from deployer_sandbox.common.netns import ContainerNetwork
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.metadata.id_tokens import IdTokenKey
from deployer_sandbox.secret_manager.api import SecretManager


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
        network: ContainerNetwork | None = None,
    ) -> None:
        """`id_tokens`: the key whose ID tokens open private services; `platform_env`: what
        every revision and job task finds in its environment (the metadata server's address);
        `network`: how revisions and tasks are networked (a namespace each, where it works)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.state = RunState()
        self.network = network or ContainerNetwork()
        self.processes = RevisionProcesses(workdir / "revisions", faults, self.network)
        # Every URL the router hands out is reachable from every container's namespace.
        self.request_log = RequestLog()
        self.router = Router(
            faults,
            id_tokens=id_tokens,
            on_listen=self.network.egress.add,
            request_log=self.request_log,
        )
        self._queues = SerialQueues("run-reconcile")
        launcher = RevisionLauncher(self.processes, images, secrets, platform_env)
        self._services = ServicesServicer(
            self.state, operations, launcher, self.router, faults, self._queues
        )
        self._revisions = RevisionsServicer(self.state, operations, launcher, self._queues)
        self._jobs = RunJobs(
            operations, images, secrets, workdir / "jobs", faults, platform_env, self.network
        )

    @property
    def jobs(self) -> RunJobs:
        """Jobs and their executions (Cloud Logging reads the executions' lines)."""
        return self._jobs

    @property
    def services(self) -> ServicesServicer:
        """Services, for APIs that deploy through Cloud Run (2nd-gen Cloud Functions)."""
        return self._services

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """The gRPC services: Services, Revisions, and the jobs' own."""
        return [self._services.handler(), self._revisions.handler(), *self._jobs.handlers()]

    def close(self) -> None:
        """Stop reconciling, then end every revision process and URL. Idempotent."""
        self._queues.close()
        self._jobs.close()
        self.processes.close()
        self.router.close()
