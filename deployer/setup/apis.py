"""Step `apis`: enable, through Service Usage, the APIs the deployer calls.

Reads every one at once (BatchGetServices) and enables only those disabled in one
BatchEnableServices (at most 20 a batch, as Google takes them), waiting on its operation.
"""

from __future__ import annotations

from google.cloud import service_usage_v1

from deployer.adapters.polling import operation_result
from deployer.setup.context import Setup
from deployer.setup.steps import CALL_TIMEOUT, OPERATION_TIMEOUT, Outcome, StepResult

STEP = "apis"

# Each API and why the deployer needs it.
APIS = (
    "artifactregistry.googleapis.com",  # images, and checking a reused one
    "cloudbuild.googleapis.com",  # builds (and the function's build)
    "cloudfunctions.googleapis.com",  # the front, as a 2nd-gen function
    "cloudresourcemanager.googleapis.com",  # the project's IAM policy
    "cloudscheduler.googleapis.com",  # the sweep, every minute
    "firestore.googleapis.com",  # the deploy records
    "iam.googleapis.com",  # the deployer's service accounts
    "logging.googleapis.com",  # a crashed container's output
    "monitoring.googleapis.com",  # canary analysis
    "run.googleapis.com",  # services, the worker job
    "secretmanager.googleapis.com",  # the config, Slack's and GitHub's secrets, env secrets
    "storage.googleapis.com",  # the deployer image's source, uploaded for its build
)


def enable_apis(setup: Setup) -> StepResult:
    client = setup.client(service_usage_v1.ServiceUsageClient)
    parent = f"projects/{setup.project}"
    found = client.batch_get_services(
        request={"parent": parent, "names": [f"{parent}/services/{api}" for api in APIS]},
        timeout=CALL_TIMEOUT,
    )
    enabled = {
        s.config.name or s.name.rsplit("/", 1)[1]
        for s in found.services
        if s.state == service_usage_v1.State.ENABLED
    }
    missing = [api for api in APIS if api not in enabled]
    if not missing:
        return StepResult(STEP, Outcome.UNCHANGED, f"{len(APIS)} enabled")
    names = ", ".join(api.removesuffix(".googleapis.com") for api in missing)
    if setup.dry_run:
        return StepResult(STEP, Outcome.PLANNED, f"enable {names}")
    for start in range(0, len(missing), 20):
        operation = client.batch_enable_services(
            request={"parent": parent, "service_ids": missing[start : start + 20]},
            timeout=CALL_TIMEOUT,
        )
        operation_result(operation, OPERATION_TIMEOUT)
    return StepResult(STEP, Outcome.CHANGED, f"enabled {names}")
