"""Cloud Scheduler v1 in the sandbox, through the real `scheduler_v1` client over gRPC."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.api_core import exceptions
from google.cloud import run_v2, scheduler_v1
from google.protobuf import field_mask_pb2
from google.rpc import code_pb2

from tests.conftest import GoogleClients

REGION = "europe-west1"
State = scheduler_v1.Job.State
# A Cloud Run job's container that writes its arguments to $OUT, then exits 0.
TASK = "import json, os, pathlib, sys; pathlib.Path(os.environ['OUT']).write_text(json.dumps(sys.argv[1:]))"


@pytest.fixture
def client(google_clients: GoogleClients) -> scheduler_v1.CloudSchedulerClient:
    return google_clients(scheduler_v1.CloudSchedulerClient)


@pytest.fixture
def parent(project: str) -> str:
    return f"projects/{project}/locations/{REGION}"


def http_job(parent: str, job_id: str, uri: str, **fields: Any) -> scheduler_v1.Job:
    return scheduler_v1.Job(
        name=f"{parent}/jobs/{job_id}",
        schedule=fields.pop("schedule", "* * * * *"),
        http_target=scheduler_v1.HttpTarget(uri=uri, **fields),
    )


def run_url(job_name: str) -> str:
    return f"https://run.googleapis.com/v2/{job_name}:run"


class _Recorder(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str], bytes]]
    answer = 200

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.seen.append((self.command, self.path, dict(self.headers), body))
        self.send_response(self.answer)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def endpoint() -> Iterator[tuple[str, type[_Recorder]]]:
    """A loopback HTTP endpoint recording what it was sent; (its URL, its handler class)."""
    handler = type("Recorder", (_Recorder,), {"seen": [], "answer": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


# --- jobs --------------------------------------------------------------------------------


def test_create_get_and_list_fill_the_api_defaults(client, parent) -> None:
    created = client.create_job(
        parent=parent, job=http_job(parent, "sweep", "https://example.com/sweep")
    )
    fetched = client.get_job(name=created.name)

    assert fetched.name == f"{parent}/jobs/sweep"
    assert fetched.state == State.ENABLED
    assert fetched.time_zone == "Etc/UTC"
    assert fetched.http_target.http_method == scheduler_v1.HttpMethod.POST
    assert fetched.attempt_deadline == timedelta(minutes=3)
    assert fetched.user_update_time.timestamp() > 0
    # Every minute: the next one is within a minute from now.
    assert 0 < fetched.schedule_time.timestamp() - datetime.now(UTC).timestamp() <= 60
    assert "status" not in fetched and "last_attempt_time" not in fetched
    assert [job.name for job in client.list_jobs(parent=parent)] == [fetched.name]


def test_create_without_a_name_gets_one(client, parent) -> None:
    job = scheduler_v1.Job(
        schedule="0 3 * * *", http_target=scheduler_v1.HttpTarget(uri="https://example.com")
    )

    created = client.create_job(parent=parent, job=job)

    assert created.name.startswith(f"{parent}/jobs/")


def test_create_twice_is_already_exists(client, parent) -> None:
    job = http_job(parent, "twice", "https://example.com")
    client.create_job(parent=parent, job=job)

    with pytest.raises(exceptions.AlreadyExists, match=f"Job {parent}/jobs/twice already exists"):
        client.create_job(parent=parent, job=job)


@pytest.mark.parametrize("job_id", ["has.dot", "has space", "x" * 501])
def test_invalid_job_id_is_refused(client, parent, job_id) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="JOB_ID"):
        client.create_job(parent=parent, job=http_job(parent, job_id, "https://example.com"))


@pytest.mark.parametrize(
    "schedule",
    ["*/5 * * * *", "0 9 * * MON-FRI", "30 4 1,15 * 5", "0 0-23/2 * JAN-MAR *", "0 0 * * 7"],
)
def test_unix_cron_schedules_are_accepted(client, parent, schedule) -> None:
    job = http_job(parent, "cron", "https://example.com", schedule=schedule)

    assert client.create_job(parent=parent, job=job).schedule == schedule


@pytest.mark.parametrize(
    "schedule",
    ["every minute, please", "* * * *", "* * * * * *", "60 * * * *", "0 0 L * *", "5/2 * * * *"],
)
def test_garbage_schedules_are_refused(client, parent, schedule) -> None:
    job = http_job(parent, "cron", "https://example.com", schedule=schedule)

    with pytest.raises(exceptions.InvalidArgument, match="Schedule or time zone is invalid"):
        client.create_job(parent=parent, job=job)


def test_time_zone_must_be_in_the_tz_database(client, parent) -> None:
    good = http_job(parent, "paris", "https://example.com")
    good.time_zone = "Europe/Paris"
    bad = http_job(parent, "mars", "https://example.com")
    bad.time_zone = "Mars/Olympus_Mons"

    assert client.create_job(parent=parent, job=good).time_zone == "Europe/Paris"
    with pytest.raises(exceptions.InvalidArgument, match="Schedule or time zone is invalid"):
        client.create_job(parent=parent, job=bad)


def test_a_job_needs_a_target(client, parent) -> None:
    job = scheduler_v1.Job(name=f"{parent}/jobs/aimless", schedule="* * * * *")

    with pytest.raises(exceptions.InvalidArgument, match="target"):
        client.create_job(parent=parent, job=job)


def test_missing_job_is_not_found(client, parent) -> None:
    with pytest.raises(exceptions.NotFound):
        client.get_job(name=f"{parent}/jobs/nope")
    with pytest.raises(exceptions.NotFound):
        client.run_job(name=f"{parent}/jobs/nope")


def test_update_with_a_mask_changes_only_those_fields(client, parent) -> None:
    job = http_job(parent, "masked", "https://example.com")
    job.description = "kept"
    client.create_job(parent=parent, job=job)

    updated = client.update_job(
        job=scheduler_v1.Job(name=job.name, schedule="*/10 * * * *", description="ignored"),
        update_mask=field_mask_pb2.FieldMask(paths=["schedule"]),
    )

    assert updated.schedule == "*/10 * * * *"
    assert updated.description == "kept"
    assert updated.http_target.uri == "https://example.com"
    with pytest.raises(exceptions.InvalidArgument, match="update_mask"):
        client.update_job(job=job, update_mask=field_mask_pb2.FieldMask(paths=["colour"]))


def test_update_without_a_mask_replaces_the_job(client, parent) -> None:
    job = http_job(parent, "whole", "https://example.com")
    job.description = "dropped"
    client.create_job(parent=parent, job=job)

    updated = client.update_job(job=http_job(parent, "whole", "https://example.org"))

    assert updated.description == ""
    assert updated.http_target.uri == "https://example.org"
    with pytest.raises(exceptions.NotFound):
        client.update_job(job=http_job(parent, "never-made", "https://example.org"))


def test_pause_and_resume(client, parent) -> None:
    name = client.create_job(parent=parent, job=http_job(parent, "p", "https://x.test")).name

    assert client.pause_job(name=name).state == State.PAUSED
    with pytest.raises(exceptions.FailedPrecondition):
        client.pause_job(name=name)
    with pytest.raises(exceptions.FailedPrecondition):
        client.run_job(name=name)
    assert client.resume_job(name=name).state == State.ENABLED
    with pytest.raises(exceptions.FailedPrecondition):
        client.resume_job(name=name)


def test_delete(client, parent) -> None:
    name = client.create_job(parent=parent, job=http_job(parent, "gone", "https://x.test")).name

    client.delete_job(name=name)

    with pytest.raises(exceptions.NotFound):
        client.get_job(name=name)


# --- attempts ----------------------------------------------------------------------------


def test_run_job_on_a_cloud_run_jobs_run_url_starts_an_execution(
    client, parent, gcp: Sandbox, google_clients: GoogleClients, tmp_path: Path
) -> None:
    jobs = google_clients(run_v2.JobsClient)
    out = tmp_path / "args.json"
    container = run_v2.Container(
        image=f"{REGION}-docker.pkg.dev/tools/worker:latest",  # never pushed: runs `command`
        command=[sys.executable, "-c", TASK],
        args=["worker"],
        env=[run_v2.EnvVar(name="OUT", value=str(out))],
    )
    worker = jobs.create_job(
        parent=parent,
        job_id="worker",
        job=run_v2.Job(
            template=run_v2.ExecutionTemplate(
                template=run_v2.TaskTemplate(containers=[container], max_retries=0)
            )
        ),
    ).result(timeout=10)
    body = {"overrides": {"containerOverrides": [{"args": ["sweep"]}]}}
    job = http_job(
        parent,
        "sweep",
        run_url(worker.name),
        body=json.dumps(body).encode(),
        oauth_token=scheduler_v1.OAuthToken(
            service_account_email=f"scheduler@{parent.split('/')[1]}.iam.gserviceaccount.com",
            scope="https://www.googleapis.com/auth/cloud-platform",
        ),
    )
    name = client.create_job(parent=parent, job=job).name

    ran = client.run_job(name=name)
    [attempt] = gcp.scheduler.wait_for_attempts(name, 1)

    assert ran.last_attempt_time.timestamp() > 0
    assert attempt.code == code_pb2.OK and attempt.execution is not None
    assert client.get_job(name=name).status.code == code_pb2.OK
    executions = google_clients(run_v2.ExecutionsClient)
    assert [e.name for e in executions.list_executions(parent=worker.name)] == [attempt.execution]
    execution = executions.get_execution(name=attempt.execution)
    deadline = time.monotonic() + 20
    while "completion_time" not in execution and time.monotonic() < deadline:
        time.sleep(0.05)
        execution = executions.get_execution(name=attempt.execution)
    assert execution.succeeded_count == 1
    assert json.loads(out.read_text()) == ["sweep"]  # the body's overrides were applied


def test_a_missing_cloud_run_job_is_the_attempts_status(client, parent, gcp: Sandbox) -> None:
    job = http_job(parent, "orphan", run_url(f"{parent}/jobs/no-such-worker"))
    name = client.create_job(parent=parent, job=job).name

    client.run_job(name=name)
    [attempt] = gcp.scheduler.wait_for_attempts(name, 1)

    assert attempt.code == code_pb2.NOT_FOUND
    assert client.get_job(name=name).status.code == code_pb2.NOT_FOUND


def test_a_loopback_url_is_called_for_real(client, parent, gcp: Sandbox, endpoint) -> None:
    url, recorder = endpoint
    job = http_job(parent, "ping", f"{url}/hook?x=1", body=b"hello")
    name = client.create_job(parent=parent, job=job).name

    client.run_job(name=name)
    [attempt] = gcp.scheduler.wait_for_attempts(name, 1)

    [(method, path, headers, body)] = recorder.seen
    assert (method, path, body) == ("POST", "/hook?x=1", b"hello")
    assert headers["User-Agent"] == "Google-Cloud-Scheduler"
    assert headers["X-CloudScheduler"] == "true"
    assert headers["X-CloudScheduler-JobName"] == "ping"
    assert headers["Content-Type"] == "application/octet-stream"
    assert attempt.code == code_pb2.OK

    recorder.answer = 500
    client.run_job(name=name)
    gcp.scheduler.wait_for_attempts(name, 2)
    assert client.get_job(name=name).status.code == code_pb2.INTERNAL


def test_other_urls_are_not_reachable(client, parent, gcp: Sandbox) -> None:
    name = client.create_job(parent=parent, job=http_job(parent, "far", "https://example.com")).name

    client.run_job(name=name)
    [attempt] = gcp.scheduler.wait_for_attempts(name, 1)

    assert attempt.code == code_pb2.UNAVAILABLE
    assert "not reachable" in client.get_job(name=name).status.message


def test_run_due_runs_what_the_schedule_says_once_a_minute(
    client, parent, project, gcp: Sandbox, endpoint
) -> None:
    url, recorder = endpoint
    every_minute = client.create_job(parent=parent, job=http_job(parent, "often", url)).name
    new_year = http_job(parent, "yearly", url, schedule="0 0 1 1 *")
    client.create_job(parent=parent, job=new_year)
    paused = client.create_job(parent=parent, job=http_job(parent, "paused", url)).name
    client.pause_job(name=paused)
    at = datetime(2026, 6, 1, 12, 30, 15, tzinfo=UTC)

    assert gcp.scheduler.run_due(at, project=project) == [every_minute]
    assert gcp.scheduler.run_due(at + timedelta(seconds=30), project=project) == []
    assert gcp.scheduler.run_due(at + timedelta(minutes=1), project=project) == [every_minute]
    assert len(recorder.seen) == 2
    scheduled = [a.schedule_time for a in gcp.scheduler.attempts(every_minute)]
    assert scheduled == [at.replace(second=0), at.replace(second=0) + timedelta(minutes=1)]
    assert gcp.scheduler.run_due(datetime(2027, 1, 1, 0, 0, tzinfo=UTC), project=project) == [
        every_minute,
        new_year.name,
    ]
