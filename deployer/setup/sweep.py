"""Step `sweep`: the Cloud Scheduler job `deployer-sweep`, every minute, starting the
worker job with `args=["sweep"]` through its `:run` URL (Jobs.RunJob's HTTP rule), with an
OAuth token of deployer-scheduler@, which holds only run.jobsExecutorWithOverrides on
the worker job (`worker job grants`). As README's "In production" writes it with gcloud.

Google's scheduler calls *.googleapis.com with an OAuth access token, not an OIDC ID
token ("OAuth token ... should generally only be used when calling Google APIs hosted on
*.googleapis.com", `HttpTarget.oauth_token`, google/cloud/scheduler/v1/target.proto).
"""

from __future__ import annotations

import json

from google.api_core import exceptions
from google.cloud import scheduler_v1
from google.protobuf import field_mask_pb2

from deployer.setup import roles
from deployer.setup.context import Setup
from deployer.setup.names import run_job_url, sweep_job_name
from deployer.setup.steps import CALL_TIMEOUT, Outcome, StepResult

STEP = "sweep"
SCHEDULE = "* * * * *"
TIME_ZONE = "Etc/UTC"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
BODY = json.dumps({"overrides": {"containerOverrides": [{"args": ["sweep"]}]}}).encode()
_OWNED = ("schedule", "time_zone", "http_target", "description")


def wanted_job(setup: Setup) -> scheduler_v1.Job:
    return scheduler_v1.Job(
        name=sweep_job_name(setup.project, setup.region),
        description="deployer sweep: resume lost deploys, start queues, drain Slack",
        schedule=SCHEDULE,
        time_zone=TIME_ZONE,
        http_target=scheduler_v1.HttpTarget(
            uri=run_job_url(setup.project, setup.region),
            http_method=scheduler_v1.HttpMethod.POST,
            body=BODY,
            headers={"Content-Type": "application/json"},
            oauth_token=scheduler_v1.OAuthToken(
                service_account_email=roles.email(roles.account(roles.SCHEDULER), setup.project),
                scope=SCOPE,
            ),
        ),
    )


def _shape(job: scheduler_v1.Job) -> tuple[object, ...]:
    target = job.http_target
    return (
        job.schedule,
        job.time_zone,
        job.description,
        target.uri,
        target.http_method,
        bytes(target.body),
        target.headers.get("Content-Type", ""),
        target.oauth_token.service_account_email,
        target.oauth_token.scope,
    )


def ensure_sweep(setup: Setup) -> StepResult:
    client = setup.client(scheduler_v1.CloudSchedulerClient)
    wanted = wanted_job(setup)
    try:
        existing: scheduler_v1.Job | None = client.get_job(name=wanted.name, timeout=CALL_TIMEOUT)
    except exceptions.NotFound:
        existing = None
    detail = "every minute, as deployer-scheduler"
    if existing is not None and _shape(existing) == _shape(wanted):
        return StepResult(STEP, Outcome.UNCHANGED, detail)
    verb = "update" if existing is not None else "create"
    if setup.dry_run:
        return StepResult(STEP, Outcome.PLANNED, f"{verb}, {detail}")
    if existing is None:
        client.create_job(
            parent=f"projects/{setup.project}/locations/{setup.region}",
            job=wanted,
            timeout=CALL_TIMEOUT,
        )
    else:
        client.update_job(
            job=wanted,
            update_mask=field_mask_pb2.FieldMask(paths=list(_OWNED)),
            timeout=CALL_TIMEOUT,
        )
    return StepResult(STEP, Outcome.CHANGED, f"{verb}d, {detail}")
