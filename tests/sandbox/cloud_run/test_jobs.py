"""Cloud Run jobs and executions through the real run_v2 clients: tasks run as local processes."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from deployer_sandbox.common.images import Image
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import run_v2

from deployer.adapters.google_clients import google_client

PROJECT = "test-project"
PARENT = f"projects/{PROJECT}/locations/europe-west1"
WORKER_IMAGE = "europe-west1-docker.pkg.dev/test-project/tools/worker:latest"  # never pushed
Completed = run_v2.Condition.State

# Writes what the task saw to $OUT_DIR/task<index>.json, then exits with $EXIT_CODE.
TASK_SCRIPT = """
import json, os, pathlib, sys, time
seen = {k: v for k, v in os.environ.items() if k.startswith(("CLOUD_RUN_", "GREETING", "TOKEN"))}
out = pathlib.Path(os.environ["OUT_DIR"]) / f"task{os.environ['CLOUD_RUN_TASK_INDEX']}.json"
out.write_text(json.dumps(seen))
print("task ran", flush=True)
time.sleep(float(os.environ.get("SLEEP", "0")))
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
"""


def _job_id() -> str:
    return f"job-{uuid.uuid4().hex[:8]}"


def _env(**values: str) -> list[run_v2.EnvVar]:
    return [run_v2.EnvVar(name=k, value=v) for k, v in values.items()]


def _job(out_dir: Path, max_retries: int = 0, task_count: int = 1, **env: str) -> run_v2.Job:
    container = run_v2.Container(
        image=WORKER_IMAGE,
        command=[sys.executable, "-c", TASK_SCRIPT],
        env=_env(OUT_DIR=str(out_dir), **env),
    )
    return run_v2.Job(
        template=run_v2.ExecutionTemplate(
            task_count=task_count,
            template=run_v2.TaskTemplate(containers=[container], max_retries=max_retries),
        )
    )


def _create(jobs: run_v2.JobsClient, job: run_v2.Job) -> run_v2.Job:
    created: run_v2.Job = jobs.create_job(parent=PARENT, job=job, job_id=_job_id()).result(
        timeout=10
    )
    return created


def _run(
    jobs: run_v2.JobsClient, name: str, overrides: run_v2.RunJobRequest.Overrides | None = None
) -> run_v2.Execution:
    """Run the job, wait for its execution to end, and return the execution."""
    operation = jobs.run_job(request=run_v2.RunJobRequest(name=name, overrides=overrides))
    # A failed execution fails the operation; the execution itself tells why.
    with contextlib.suppress(exceptions.GoogleAPICallError):
        operation.result(timeout=30)
    executions = google_client(run_v2.ExecutionsClient)
    execution: run_v2.Execution = executions.get_execution(name=operation.metadata.name)
    return execution


def _completed(execution: run_v2.Execution) -> run_v2.Condition:
    return next(c for c in execution.conditions if c.type_ == "Completed")


def _seen(out_dir: Path, index: int = 0) -> dict[str, str]:
    seen: dict[str, str] = json.loads((out_dir / f"task{index}.json").read_text())
    return seen


def test_create_get_and_list_job(gcp: Sandbox, tmp_path: Path) -> None:
    jobs = google_client(run_v2.JobsClient)
    created = _create(jobs, _job(tmp_path))

    fetched = jobs.get_job(name=created.name)

    assert re.fullmatch(rf"{PARENT}/jobs/job-[0-9a-f]{{8}}", fetched.name)
    assert fetched.generation == 1
    assert fetched.terminal_condition.state == Completed.CONDITION_SUCCEEDED
    assert fetched.template.template.timeout == timedelta(minutes=10)  # the API's default
    assert created.name in [job.name for job in jobs.list_jobs(parent=PARENT)]


def test_create_existing_job_is_already_exists(gcp: Sandbox, tmp_path: Path) -> None:
    jobs = google_client(run_v2.JobsClient)
    job_id = _job_id()
    jobs.create_job(parent=PARENT, job=_job(tmp_path), job_id=job_id).result(timeout=10)

    with pytest.raises(exceptions.AlreadyExists, match=f"Resource '{job_id}' already exists"):
        jobs.create_job(parent=PARENT, job=_job(tmp_path), job_id=job_id)


@pytest.mark.parametrize(
    "job_id", ["Upper-case", "1starts-with-digit", "ends-with-dash-", "x" * 64]
)
def test_invalid_job_id_is_rejected(gcp: Sandbox, tmp_path: Path, job_id: str) -> None:
    jobs = google_client(run_v2.JobsClient)

    with pytest.raises(exceptions.InvalidArgument, match="job_id"):
        jobs.create_job(parent=PARENT, job=_job(tmp_path), job_id=job_id)


def test_missing_job_is_not_found(gcp: Sandbox) -> None:
    jobs = google_client(run_v2.JobsClient)
    name = f"{PARENT}/jobs/no-such-job"

    with pytest.raises(exceptions.NotFound, match="Resource 'no-such-job' of kind 'JOB'"):
        jobs.get_job(name=name)
    with pytest.raises(exceptions.NotFound):
        jobs.run_job(name=name)
    with pytest.raises(exceptions.NotFound):
        google_client(run_v2.ExecutionsClient).get_execution(
            name=f"{name}/executions/no-such-job-abcde"
        )


def test_update_and_delete_job(gcp: Sandbox, tmp_path: Path) -> None:
    jobs = google_client(run_v2.JobsClient)
    created = _create(jobs, _job(tmp_path))
    created.template.task_count = 2

    updated = jobs.update_job(job=created).result(timeout=10)
    deleted = jobs.delete_job(name=created.name).result(timeout=10)

    assert updated.generation == 2
    assert updated.template.task_count == 2
    assert deleted.name == created.name
    with pytest.raises(exceptions.NotFound):
        jobs.get_job(name=created.name)


def test_update_missing_job_needs_allow_missing(gcp: Sandbox, tmp_path: Path) -> None:
    jobs = google_client(run_v2.JobsClient)
    job = _job(tmp_path)
    job.name = f"{PARENT}/jobs/{_job_id()}"

    with pytest.raises(exceptions.NotFound):
        jobs.update_job(job=job)
    created = jobs.update_job(request={"job": job, "allow_missing": True}).result(timeout=10)

    assert jobs.get_job(name=job.name).uid == created.uid


def test_run_with_env_override(gcp: Sandbox, tmp_path: Path) -> None:
    jobs = google_client(run_v2.JobsClient)
    job = _create(jobs, _job(tmp_path, GREETING="hello"))
    job_id = job.name.rsplit("/", 1)[1]
    override = run_v2.RunJobRequest.Overrides(
        container_overrides=[
            run_v2.RunJobRequest.Overrides.ContainerOverride(env=_env(GREETING="bonjour"))
        ]
    )

    execution = _run(jobs, job.name, override)

    assert re.fullmatch(rf"{job.name}/executions/{job_id}-[a-z0-9]{{5}}", execution.name)
    assert execution.job == job_id
    assert execution.succeeded_count == 1
    assert execution.failed_count == 0
    assert not execution.reconciling
    assert execution.completion_time
    assert _completed(execution).state == Completed.CONDITION_SUCCEEDED
    assert _seen(tmp_path) == {
        "GREETING": "bonjour",
        "CLOUD_RUN_JOB": job_id,
        "CLOUD_RUN_EXECUTION": execution.name.rsplit("/", 1)[1],
        "CLOUD_RUN_TASK_INDEX": "0",
        "CLOUD_RUN_TASK_ATTEMPT": "0",
        "CLOUD_RUN_TASK_COUNT": "1",
    }
    assert "task ran" in Path(execution.log_uri.removeprefix("file://")).read_text()
    job_after = jobs.get_job(name=job.name)
    assert job_after.execution_count == 1
    assert job_after.latest_created_execution.name == execution.name
    assert (
        job_after.latest_created_execution.completion_status
        == run_v2.ExecutionReference.CompletionStatus.EXECUTION_SUCCEEDED
    )
    listed = google_client(run_v2.ExecutionsClient).list_executions(parent=job.name)
    assert [e.name for e in listed] == [execution.name]


def test_parallel_tasks_each_get_their_index(gcp: Sandbox, tmp_path: Path) -> None:
    jobs = google_client(run_v2.JobsClient)
    job = _create(jobs, _job(tmp_path, task_count=3))

    execution = _run(jobs, job.name)

    assert execution.task_count == 3
    assert execution.succeeded_count == 3
    assert sorted(_seen(tmp_path, i)["CLOUD_RUN_TASK_INDEX"] for i in range(3)) == ["0", "1", "2"]


def test_failing_task_fails_the_execution(gcp: Sandbox, tmp_path: Path) -> None:
    jobs = google_client(run_v2.JobsClient)
    job = _create(jobs, _job(tmp_path, EXIT_CODE="3"))

    operation = jobs.run_job(name=job.name)
    with pytest.raises(exceptions.FailedPrecondition, match="The container exited with an error"):
        operation.result(timeout=30)
    execution = google_client(run_v2.ExecutionsClient).get_execution(name=operation.metadata.name)

    assert execution.failed_count == 1
    assert execution.succeeded_count == 0
    completed = _completed(execution)
    assert completed.state == Completed.CONDITION_FAILED
    assert completed.execution_reason == run_v2.Condition.ExecutionReason.NON_ZERO_EXIT_CODE
    assert completed.message == (
        f"Task {execution.name.rsplit('/', 1)[1]}-task0 failed with message: "
        "The container exited with an error."
    )
    assert "Container called exit(3)." in Path(execution.log_uri[len("file://") :]).read_text()


def test_failed_task_is_retried(gcp: Sandbox, tmp_path: Path) -> None:
    jobs = google_client(run_v2.JobsClient)
    job = _create(jobs, _job(tmp_path, max_retries=1, EXIT_CODE="3"))

    execution = _run(jobs, job.name)

    assert execution.failed_count == 1
    assert execution.retried_count == 1
    assert _seen(tmp_path)["CLOUD_RUN_TASK_ATTEMPT"] == "1"
    log = Path(execution.log_uri[len("file://") :]).read_text()
    assert log.count("Container called exit(3).") == 2


def test_task_timeout_fails_the_execution(gcp: Sandbox, tmp_path: Path) -> None:
    jobs = google_client(run_v2.JobsClient)
    job = _create(jobs, _job(tmp_path, SLEEP="30"))
    override = run_v2.RunJobRequest.Overrides(timeout=timedelta(seconds=1))

    execution = _run(jobs, job.name, override)

    assert execution.failed_count == 1
    assert execution.template.timeout == timedelta(seconds=1)
    assert "The configured timeout was reached." in _completed(execution).message


def test_cancel_execution(gcp: Sandbox, tmp_path: Path) -> None:
    jobs = google_client(run_v2.JobsClient)
    executions = google_client(run_v2.ExecutionsClient)
    job = _create(jobs, _job(tmp_path, SLEEP="30"))
    run = jobs.run_job(name=job.name)
    name = run.metadata.name
    for _ in range(200):  # until the task is running
        if (tmp_path / "task0.json").exists():
            break
        time.sleep(0.05)

    cancelled = executions.cancel_execution(name=name).result(timeout=10)

    assert cancelled.cancelled_count == 1
    completed = _completed(cancelled)
    assert completed.state == Completed.CONDITION_FAILED
    assert completed.execution_reason == run_v2.Condition.ExecutionReason.CANCELLED
    with pytest.raises(exceptions.Cancelled):
        run.result(timeout=10)
    with pytest.raises(exceptions.FailedPrecondition, match="already completed"):
        executions.cancel_execution(name=name)


def test_pushed_image_runs_in_its_context(gcp: Sandbox, tmp_path: Path) -> None:
    context = tmp_path / "image"
    context.mkdir()
    (context / "job.py").write_text(
        "import os, pathlib\npathlib.Path('ran.txt').write_text(os.environ['BAKED'])\n"
    )
    repository = f"europe-west1-docker.pkg.dev/{PROJECT}/apps/{_job_id()}"
    image = Image(repository, "sha256:" + "a" * 64, context, ("python", "job.py"), {"BAKED": "in"})
    gcp.images.push(image, ["v1"])
    jobs = google_client(run_v2.JobsClient)
    container = run_v2.Container(image=f"{repository}:v1")
    job = _create(
        jobs,
        run_v2.Job(template={"template": {"containers": [container], "max_retries": 0}}),
    )

    execution = _run(jobs, job.name)

    assert execution.succeeded_count == 1
    assert (context / "ran.txt").read_text() == "in"


def test_secret_env_is_resolved(gcp: Sandbox, tmp_path: Path) -> None:
    secret_id = f"token-{uuid.uuid4().hex[:8]}"
    gcp.secrets.create_secret_with_value(PROJECT, secret_id, b"hunter2")
    job = _job(tmp_path)
    job.template.template.containers[0].env.append(
        run_v2.EnvVar(
            name="TOKEN",
            value_source=run_v2.EnvVarSource(
                secret_key_ref=run_v2.SecretKeySelector(secret=secret_id, version="1")
            ),
        )
    )
    jobs = google_client(run_v2.JobsClient)

    execution = _run(jobs, _create(jobs, job).name)

    assert execution.succeeded_count == 1
    assert _seen(tmp_path)["TOKEN"] == "hunter2"


def test_run_job_unavailable_fails_the_next_runs_then_lets_them_through(
    gcp: Sandbox, tmp_path: Path
) -> None:
    jobs = google_client(run_v2.JobsClient)
    job = _create(jobs, _job(tmp_path))
    armed = httpx.post(
        f"{gcp.http.url}/_sandbox/faults", json={"kind": "run_job_unavailable", "times": 2}
    )
    assert (armed.status_code, armed.json()["times"]) == (201, 2)

    for _ in range(2):
        with pytest.raises(exceptions.ServiceUnavailable, match="currently unavailable"):
            jobs.run_job(name=job.name)

    # Nothing was started by the refused calls; the next one runs as usual.
    executions = google_client(run_v2.ExecutionsClient)
    assert list(executions.list_executions(parent=job.name)) == []
    assert _run(jobs, job.name).succeeded_count == 1
    assert jobs.get_job(name=job.name).execution_count == 1
