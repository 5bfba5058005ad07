"""What deploy hooks need of the sandbox's Cloud Run jobs, through the real clients: an
execution's lines in Cloud Logging under `cloud_run_job`, found by the filter Cloud Run's
console writes; a job updated in place keeps its executions; a task killed at its
timeout says so."""

from __future__ import annotations

import contextlib
import sys
import uuid

from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import run_v2
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
from google.cloud.logging_v2.types import ListLogEntriesRequest
from google.protobuf import duration_pb2

from deployer.adapters.google_clients import google_client

REGION = "europe-west1"
LOCAL_IMAGE = "europe-west1-docker.pkg.dev/hooks/tools/hook:latest"  # never pushed: a local command


def _job(script: str, timeout: int = 600, **env: str) -> run_v2.Job:
    container = run_v2.Container(
        image=LOCAL_IMAGE,
        command=[sys.executable, "-c", script],
        env=[run_v2.EnvVar(name=k, value=v) for k, v in env.items()],
    )
    return run_v2.Job(
        template=run_v2.ExecutionTemplate(
            labels={"deployer-deploy": "d-test-1"},
            template=run_v2.TaskTemplate(
                containers=[container],
                max_retries=0,
                timeout=duration_pb2.Duration(seconds=timeout),
            ),
        )
    )


def _run(jobs: run_v2.JobsClient, name: str) -> run_v2.Execution:
    operation = jobs.run_job(name=name)
    with contextlib.suppress(exceptions.GoogleAPICallError):  # a failed execution fails it
        operation.result(timeout=30)
    execution: run_v2.Execution = google_client(run_v2.ExecutionsClient).get_execution(
        name=operation.metadata.name
    )
    return execution


def _lines(project: str, query: str) -> list[tuple[str, dict[str, str], str]]:
    """(text, entry labels, log name) of every entry `query` selects, oldest first."""
    client = google_client(LoggingServiceV2Client)
    request = ListLogEntriesRequest(
        resource_names=[f"projects/{project}"], filter=query, order_by="timestamp asc"
    )
    return [
        (entry.text_payload, dict(entry.labels), entry.log_name)
        for entry in client.list_log_entries(request=request, timeout=10)
    ]


def _execution_filter(job_id: str, execution: str) -> str:
    return (
        f'resource.type="cloud_run_job" resource.labels.job_name="{job_id}" '
        f'resource.labels.location="{REGION}" '
        f'labels."run.googleapis.com/execution_name"="{execution}"'
    )


def test_an_executions_lines_are_in_cloud_logging_under_its_job(gcp: Sandbox) -> None:
    project = f"hooks-{uuid.uuid4().hex[:8]}"
    job_id = f"api-{uuid.uuid4().hex[:6]}-predeploy"
    jobs = google_client(run_v2.JobsClient)
    script = "import os, sys; print('migrating to', os.environ['TARGET']); sys.exit(3)"
    jobs.create_job(
        parent=f"projects/{project}/locations/{REGION}",
        job=_job(script, TARGET="head"),
        job_id=job_id,
    ).result(timeout=10)
    name = f"projects/{project}/locations/{REGION}/jobs/{job_id}"
    first, second = _run(jobs, name), _run(jobs, name)
    first_id = first.name.rsplit("/", 1)[1]

    found = _lines(project, _execution_filter(job_id, first_id))

    assert [text for text, _, _ in found] == ["migrating to head", "Container called exit(3)."]
    _, labels, log_name = found[0]
    assert labels == {
        "run.googleapis.com/execution_name": first_id,
        "run.googleapis.com/task_index": "0",
        "run.googleapis.com/task_attempt": "0",
    }
    assert log_name == f"projects/{project}/logs/run.googleapis.com%2Fstderr"
    assert found[1][2] == f"projects/{project}/logs/run.googleapis.com%2Fvarlog%2Fsystem"
    # The second execution's lines are its own.
    second_id = second.name.rsplit("/", 1)[1]
    assert len(_lines(project, _execution_filter(job_id, second_id))) == 2
    # The execution says how it ended (execution.py: conditions), and carries the
    # template's labels (ExecutionTemplate.labels -> Execution.labels).
    completed = next(c for c in first.conditions if c.type_ == "Completed")
    assert completed.state == run_v2.Condition.State.CONDITION_FAILED
    assert completed.execution_reason == run_v2.Condition.ExecutionReason.NON_ZERO_EXIT_CODE
    assert first.failed_count == 1 and first.labels["deployer-deploy"] == "d-test-1"


def test_a_job_updated_in_place_keeps_its_executions(gcp: Sandbox) -> None:
    project = f"hooks-{uuid.uuid4().hex[:8]}"
    job_id = f"api-{uuid.uuid4().hex[:6]}-predeploy"
    parent = f"projects/{project}/locations/{REGION}"
    jobs = google_client(run_v2.JobsClient)
    created = jobs.create_job(parent=parent, job=_job("print('one')"), job_id=job_id).result(
        timeout=10
    )
    _run(jobs, created.name)

    changed = _job("print('two')")
    changed.name, changed.etag = created.name, created.etag
    updated = jobs.update_job(job=changed).result(timeout=10)
    execution = _run(jobs, created.name)

    assert updated.generation == 2
    assert [job.name for job in jobs.list_jobs(parent=parent)] == [created.name]
    executions = google_client(run_v2.ExecutionsClient).list_executions(parent=created.name)
    assert len(list(executions)) == 2
    execution_id = execution.name.rsplit("/", 1)[1]
    texts = [t for t, _, _ in _lines(project, _execution_filter(job_id, execution_id))]
    assert texts == ["two", "Container called exit(0)."]


def test_a_task_past_its_timeout_is_killed_and_says_so(gcp: Sandbox) -> None:
    project = f"hooks-{uuid.uuid4().hex[:8]}"
    job_id = f"api-{uuid.uuid4().hex[:6]}-predeploy"
    jobs = google_client(run_v2.JobsClient)
    script = "import time; print('locking tables', flush=True); time.sleep(30)"
    created = jobs.create_job(
        parent=f"projects/{project}/locations/{REGION}", job=_job(script, timeout=1), job_id=job_id
    ).result(timeout=10)

    execution = _run(jobs, created.name)

    completed = next(c for c in execution.conditions if c.type_ == "Completed")
    assert completed.state == run_v2.Condition.State.CONDITION_FAILED
    assert "timeout" in completed.message
    texts = [
        t
        for t, _, _ in _lines(project, _execution_filter(job_id, execution.name.rsplit("/", 1)[1]))
    ]
    assert texts == [
        "locking tables",
        "Terminating task because it has reached the maximum timeout.",
    ]
