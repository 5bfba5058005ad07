"""What a Cloud Scheduler job's attempt does in the sandbox, and the status it records.

    target                                             the attempt
    http_target, Cloud Run Admin `jobs/J:run` URL      RunJob of the sandbox's Cloud Run job J
      (v2: https://run.googleapis.com/v2/projects/P/      (the body, if any, is the REST body of
       locations/L/jobs/J:run; v1: https://L-run.           RunJobRequest: `overrides`, `etag`...);
       googleapis.com/apis/run.googleapis.com/v1/           its error, if any, is the status
       namespaces/P/jobs/J:run)
    http_target, a loopback URL (127.0.0.0/8, ::1,     a real HTTP request, within attempt_deadline
      localhost)
    any other http_target, Pub/Sub, App Engine         not reachable from the sandbox: UNAVAILABLE

`Job.status` is "the response from the target for the last attempted execution"
(job.proto): OK for a 2xx ("The job is acknowledged by means of an HTTP response code
in the range [200 - 299]", HttpTarget), else the `google.rpc.Code` whose HTTP mapping
is the answer's status (google/rpc/code.proto), DEADLINE_EXCEEDED past the deadline
("the attempt is marked as a DEADLINE_EXCEEDED failure", Job.attempt_deadline).

Headers sent, as HttpTarget's comment lists them: `User-Agent: Google-Cloud-Scheduler`,
`X-CloudScheduler: true`, `X-CloudScheduler-JobName`, `X-CloudScheduler-ScheduleTime`
(scheduled runs only), `Content-Type: application/octet-stream` for a body without one,
and the `Authorization` of an `oidc_token` (an ID token signed by the sandbox's key, its
audience the token's `audience` or else the URI) or `oauth_token` (an opaque access
token, as the metadata server hands out). Credentials are never logged.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import grpc
from google.cloud import run_v2, scheduler_v1
from google.rpc import code_pb2, status_pb2

from deployer_sandbox.common.rpc import RpcError
from deployer_sandbox.metadata.id_tokens import IdTokenKey

# RunJob in the sandbox's own Cloud Run: the execution it started, or RpcError.
RunCloudRunJob = Callable[[run_v2.RunJobRequest], str]

_RUN_V2 = re.compile(
    r"^https://run\.googleapis\.com/v2/(?P<job>projects/[^/]+/locations/[^/]+/jobs/[^/:]+):run$"
)
_RUN_V1 = re.compile(
    r"^https://(?P<location>[a-z0-9-]+)-run\.googleapis\.com/apis/run\.googleapis\.com/v1/"
    r"namespaces/(?P<project>[^/]+)/jobs/(?P<job>[^/:]+):run$"
)
# google/rpc/code.proto: each code's "HTTP Mapping".
_HTTP_CODES = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    404: code_pb2.NOT_FOUND,
    409: code_pb2.ABORTED,
    429: code_pb2.RESOURCE_EXHAUSTED,
    499: code_pb2.CANCELLED,
    500: code_pb2.INTERNAL,
    501: code_pb2.UNIMPLEMENTED,
    503: code_pb2.UNAVAILABLE,
    504: code_pb2.DEADLINE_EXCEEDED,
}
_SANDBOX_ACCESS_TOKEN = "ya29.sandbox-scheduler"  # opaque, as the metadata server's


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended: the job's new `status`, and the Cloud Run execution it started."""

    status: status_pb2.Status
    execution: str | None = None


def cloud_run_job_of(uri: str) -> str | None:
    """`projects/P/locations/L/jobs/J` when `uri` is Cloud Run Admin's `jobs/J:run`."""
    if (match := _RUN_V2.match(uri)) is not None:
        return match["job"]
    if (match := _RUN_V1.match(uri)) is not None:
        return f"projects/{match['project']}/locations/{match['location']}/jobs/{match['job']}"
    return None


def is_loopback(uri: str) -> bool:
    host = urlsplit(uri).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _status(code: int, message: str = "") -> status_pb2.Status:
    return status_pb2.Status(code=code, message=message)


class Dispatcher:
    """Makes attempts: `attempt(job, schedule_time)` returns how it ended."""

    def __init__(
        self, run_cloud_run_job: RunCloudRunJob | None, id_tokens: IdTokenKey | None
    ) -> None:
        self._run_cloud_run_job = run_cloud_run_job
        self._id_tokens = id_tokens

    def attempt(self, job: scheduler_v1.Job, schedule_time: datetime | None) -> Outcome:
        if "http_target" not in job:
            kind = "Pub/Sub" if "pubsub_target" in job else "App Engine"
            return Outcome(
                _status(code_pb2.UNAVAILABLE, f"{kind} targets are not reachable from the sandbox.")
            )
        target = job.http_target
        run_job = cloud_run_job_of(target.uri)
        if run_job is not None and self._run_cloud_run_job is not None:
            return self._run(run_job, target)
        if is_loopback(target.uri):
            deadline = scheduler_v1.Job.pb(job).attempt_deadline.ToTimedelta().total_seconds()
            return self._post(job, schedule_time, deadline)
        return Outcome(
            _status(code_pb2.UNAVAILABLE, f"{target.uri} is not reachable from the sandbox.")
        )

    def _run(self, name: str, target: scheduler_v1.HttpTarget) -> Outcome:
        """RunJob with the target's body, as Cloud Run's REST `jobs:run` reads it."""
        assert self._run_cloud_run_job is not None
        if target.http_method != scheduler_v1.HttpMethod.POST:
            # The REST method is `POST .../jobs/*:run` (google/cloud/run/v2/job.proto).
            return Outcome(_status(code_pb2.NOT_FOUND, "jobs:run answers POST only (404)."))
        try:
            body = json.loads(target.body or b"{}")
            request = run_v2.RunJobRequest.from_json(json.dumps(body))
        except ValueError as error:
            return Outcome(_status(code_pb2.INVALID_ARGUMENT, f"Invalid JSON payload: {error}"))
        request.name = name
        try:
            execution = self._run_cloud_run_job(request)
        except RpcError as error:
            return Outcome(_status(_grpc_code(error.code), error.message))
        return Outcome(_status(code_pb2.OK), execution)

    def _post(
        self, job: scheduler_v1.Job, schedule_time: datetime | None, deadline: float
    ) -> Outcome:
        target = job.http_target
        headers = {key: value for key, value in target.headers.items()}
        headers.update(
            {
                "User-Agent": "Google-Cloud-Scheduler",
                "X-CloudScheduler": "true",
                "X-CloudScheduler-JobName": job.name.rsplit("/", 1)[1],
            }
        )
        if schedule_time is not None:
            headers["X-CloudScheduler-ScheduleTime"] = schedule_time.isoformat()
        if target.body and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/octet-stream"
        authorization = self._authorization(target)
        if authorization is not None:
            headers["Authorization"] = authorization
        parts = urlsplit(target.uri)
        connection_class = (
            http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        )
        connection = connection_class(parts.netloc, timeout=deadline)
        method = scheduler_v1.HttpMethod(target.http_method).name
        path = parts.path or "/"
        if parts.query:
            path += f"?{parts.query}"
        try:
            connection.request(method, path, body=target.body or None, headers=headers)
            answer = connection.getresponse()
            answer.read()
        except TimeoutError:
            return Outcome(_status(code_pb2.DEADLINE_EXCEEDED, "The attempt passed its deadline."))
        except (OSError, http.client.HTTPException) as error:
            return Outcome(_status(code_pb2.UNAVAILABLE, f"{target.uri}: {error}"))
        finally:
            connection.close()
        if 200 <= answer.status < 300:
            return Outcome(_status(code_pb2.OK))
        code = _HTTP_CODES.get(answer.status, code_pb2.UNKNOWN)
        return Outcome(_status(code, f"HTTP {answer.status} {answer.reason}"))

    def _authorization(self, target: scheduler_v1.HttpTarget) -> str | None:
        if "oidc_token" in target and self._id_tokens is not None:
            token = target.oidc_token
            audience = token.audience or target.uri
            return f"Bearer {self._id_tokens.sign(audience, token.service_account_email)}"
        if "oauth_token" in target:
            return f"Bearer {_SANDBOX_ACCESS_TOKEN}"
        return None


def _grpc_code(code: grpc.StatusCode) -> int:
    number: int = code.value[0]
    return number
