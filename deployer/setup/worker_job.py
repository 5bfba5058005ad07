"""Step `worker job`: the Cloud Run job `deployer-worker` that runs deploys, created or
updated to what README's "In production" describes:

    image            the `image` step's (built from the root Dockerfile), or `--image`
    service account  deployer@ (`roles.py`)
    retries          3: a worker that dies is retried and resumes its deploy (a finished
                     deploy exits 0, so only dead workers are retried)
    task timeout     `worker_timeout.task_timeout_s` (longer than the longest deploy)
    env              DEPLOYER_CONFIG = the deployer-config secret (pinned), DEPLOYER_STORE =
                     firestore://P, DEPLOYER_DISPATCH = the job itself (a worker starts the
                     next queued deploy), GOOGLE_CLOUD_PROJECT, and SLACK_BOT_TOKEN from
                     its secret

Only these fields are compared and written; anything else on the job (labels, memory
someone raised) is left as it is.
"""

from __future__ import annotations

from google.api_core import exceptions
from google.cloud import run_v2
from google.protobuf import duration_pb2

from deployer.adapters.polling import operation_result
from deployer.setup import roles
from deployer.setup.context import Setup
from deployer.setup.front_env import plain_env
from deployer.setup.names import CONFIG_SECRET, SLACK_BOT_TOKEN, worker_job_name
from deployer.setup.run_env import container_shape, pinned_env
from deployer.setup.steps import CALL_TIMEOUT, OPERATION_TIMEOUT, Outcome, SetupFailed, StepResult
from deployer.setup.worker_timeout import task_timeout_s

STEP = "worker job"
RETRIES = 3


def worker_env(setup: Setup) -> list[run_v2.EnvVar]:
    """The worker's environment: the front's plain variables (`front_env.plain_env`) and the
    bot token, pinned as the front's are."""
    plain = plain_env(setup.project, setup.region, setup.version_of(CONFIG_SECRET))
    return pinned_env(setup, plain, {"SLACK_BOT_TOKEN": SLACK_BOT_TOKEN})


def _shape(job: run_v2.Job) -> tuple[object, ...]:
    """What setup owns of a job, comparable."""
    task = job.template.template
    timeout = run_v2.TaskTemplate.pb(task).timeout.seconds
    return (
        container_shape(task.containers),
        task.max_retries,
        int(timeout),
        task.service_account,
    )


def wanted_job(setup: Setup, image: str) -> run_v2.Job:
    container = run_v2.Container(image=image, env=worker_env(setup))
    return run_v2.Job(
        template=run_v2.ExecutionTemplate(
            task_count=1,
            template=run_v2.TaskTemplate(
                containers=[container],
                max_retries=RETRIES,
                timeout=duration_pb2.Duration(seconds=task_timeout_s(setup.config)),
                service_account=roles.email(roles.account(roles.DEPLOYER), setup.project),
            ),
        )
    )


def _merge(existing: run_v2.Job, wanted: run_v2.Job) -> run_v2.Job:
    """`existing`, with setup's fields taken from `wanted` (its other fields kept)."""
    merged = run_v2.Job(existing)
    task, want = merged.template.template, wanted.template.template
    if task.containers:
        container = task.containers[0]
        container.image = want.containers[0].image
        del container.env[:]
        container.env.extend(want.containers[0].env)
    else:
        task.containers.append(want.containers[0])
    task.max_retries = want.max_retries
    task.timeout = want.timeout
    task.service_account = want.service_account
    return merged


def ensure_worker_job(setup: Setup) -> StepResult:
    client = setup.client(run_v2.JobsClient)
    name = worker_job_name(setup.project, setup.region)
    try:
        existing: run_v2.Job | None = client.get_job(name=name, timeout=CALL_TIMEOUT)
    except exceptions.NotFound:
        existing = None
    image = setup.image or (
        existing.template.template.containers[0].image
        if existing is not None and existing.template.template.containers
        else None
    )
    timeout = task_timeout_s(setup.config)
    if image is None:
        if setup.dry_run:
            return StepResult(STEP, Outcome.PLANNED, "create, once --image names the image")
        raise SetupFailed(
            STEP,
            "the job does not exist and no image was given",
            "Run setup with --image REGION-docker.pkg.dev/P/REPO/deployer@sha256:... "
            "(the deployer's image, built from the root Dockerfile)",
        )
    wanted = wanted_job(setup, image)
    detail = f"retries {RETRIES}, task timeout {timeout} s"
    if existing is not None and _shape(existing) == _shape(wanted):
        return StepResult(STEP, Outcome.UNCHANGED, detail)
    if setup.dry_run:
        return StepResult(STEP, Outcome.PLANNED, f"{'update' if existing else 'create'}, {detail}")
    if existing is None:
        operation = client.create_job(
            parent=f"projects/{setup.project}/locations/{setup.region}",
            job=wanted,
            job_id=name.rsplit("/", 1)[1],
            timeout=CALL_TIMEOUT,
        )
        operation_result(operation, OPERATION_TIMEOUT)
        return StepResult(STEP, Outcome.CHANGED, f"created, {detail}")
    merged = _merge(existing, wanted)  # UpdateJob replaces the job whole: keep the rest
    operation_result(client.update_job(job=merged, timeout=CALL_TIMEOUT), OPERATION_TIMEOUT)
    return StepResult(STEP, Outcome.CHANGED, f"updated, {detail}")
