"""`ProjectReader` over Service Usage, Resource Manager and Cloud Run's jobs.

Reads only: `check` never enables, grants or creates anything. Every API failure
becomes an answer saying why it was not read (PERMISSION_DENIED when the caller may not
see the project, NOT_FOUND for a job that is not there), never an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from google.api_core import exceptions
from google.cloud import resourcemanager_v3, run_v2, service_usage_v1

from deployer.adapters.deployer_account import deployer_account
from deployer.adapters.google_clients import google_client
from deployer.adapters.permissions import _policy, _why_not
from deployer.cli_ports import Bindings, DeployerAccount, EnabledApis, WorkerJob

_CALL_TIMEOUT = 15.0
# "Defaults to 600 seconds" (TaskTemplate.timeout, google/cloud/run/v2/task_template.proto).
CLOUD_RUN_DEFAULT_TASK_TIMEOUT = 600.0


class GoogleProjectReader:
    """The deployer's project as Google's APIs (or the sandbox's) answer about it."""

    def __init__(self) -> None:
        self._usage: service_usage_v1.ServiceUsageClient | None = None
        self._projects: resourcemanager_v3.ProjectsClient | None = None
        self._jobs: run_v2.JobsClient | None = None

    def enabled_apis(self, project: str, apis: Sequence[str]) -> EnabledApis:
        if self._usage is None:
            self._usage = google_client(service_usage_v1.ServiceUsageClient)
        # BatchGetServicesRequest.names: "A single request can get a maximum of 30 services
        # at a time" (google/api/serviceusage/v1/serviceusage.proto); the deployer asks fewer.
        request = {
            "parent": f"projects/{project}",
            "names": [f"projects/{project}/services/{api}" for api in apis],
        }
        try:
            answer = self._usage.batch_get_services(request=request, timeout=_CALL_TIMEOUT)
        except exceptions.GoogleAPICallError as error:
            return EnabledApis(checked=False, note=_why_not(error))
        enabled = frozenset(
            # Answers name the project by number: the service's own name is the last part.
            service.name.rsplit("/", 1)[-1]
            for service in answer.services
            if service.state == service_usage_v1.State.ENABLED
        )
        return EnabledApis(checked=True, enabled=enabled)

    def project_policy(self, project: str) -> Bindings:
        if self._projects is None:
            self._projects = google_client(resourcemanager_v3.ProjectsClient)
        return _policy(self._projects, f"projects/{project}")

    def worker_job(self, job: str) -> WorkerJob:
        if self._jobs is None:
            self._jobs = google_client(run_v2.JobsClient)
        try:
            found = self._jobs.get_job(name=job, timeout=_CALL_TIMEOUT)
        except exceptions.NotFound:
            return WorkerJob(found=False)
        except exceptions.GoogleAPICallError as error:
            return WorkerJob(found=False, note=_why_not(error))
        # proto-plus hands a Duration field over as a `datetime.timedelta` (0 when unset).
        given: timedelta = found.template.template.timeout  # type: ignore[assignment]
        timeout = given.total_seconds()
        return WorkerJob(found=True, task_timeout=timeout or CLOUD_RUN_DEFAULT_TASK_TIMEOUT)

    def deployer_account(self) -> DeployerAccount:
        return deployer_account()
