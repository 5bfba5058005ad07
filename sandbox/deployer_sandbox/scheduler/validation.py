"""What Cloud Scheduler checks in a job, and the defaults it fills in.

Each rule comes from a comment in google/cloud/scheduler/v1/job.proto or target.proto
(as shipped in google-cloud-scheduler's `scheduler_v1.types`):

    rule                                          source
    description at most 500 characters            Job.description
    exactly one target                            Job's `target` oneof (none: refused)
    schedule required, unix-cron                  Job.schedule ("Required, except when used
                                                  with UpdateJob"); `scheduler.cron`
    time_zone from the tz database, "utc" too     Job.time_zone; empty is Etc/UTC ("If a
                                                  time zone is not specified, the default
                                                  will be in UTC"; the docs: "The default
                                                  time-zone is Etc/UTC")
    retry_count 0 to 5                            RetryConfig.retry_count ("Values greater
                                                  than 5 and negative values are not allowed")
    attempt_deadline 15 s to 30 min, default 3 min   Job.attempt_deadline (HTTP targets)
    uri http:// or https://, at most 2083         HttpTarget.uri
    http_method unset is POST                     HttpMethod.HTTP_METHOD_UNSPECIFIED
                                                  ("Defaults to POST")
    a body only with POST, PUT or PATCH           HttpTarget.body
    a token's service_account_email required      OAuthToken, OidcToken
    a topic `projects/P/topics/T` of the job's    PubsubTarget.topic_name ("The topic must
    project, with data or attributes              be in the same project")

A refused schedule or time zone is INVALID_ARGUMENT "Schedule or time zone is invalid."
(googleapis/google-cloud-go#1352), followed by what the sandbox could not read.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from google.cloud import scheduler_v1

from deployer_sandbox.common.rpc import invalid
from deployer_sandbox.scheduler.cron import CronError, CronSchedule, parse

DEFAULT_TIME_ZONE = "Etc/UTC"
_DEFAULT_DEADLINE = timedelta(minutes=3)
_MIN_DEADLINE, _MAX_DEADLINE = timedelta(seconds=15), timedelta(minutes=30)
_MAX_URI = 2083
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TOPIC = re.compile(r"^projects/(?P<project>[^/]+)/topics/[^/]+$")
# proto-plus enums, typed loosely: mypy reads their members as plain ints.
HttpMethod: Any = scheduler_v1.HttpMethod
_BODY_METHODS = (
    scheduler_v1.HttpMethod.POST,
    scheduler_v1.HttpMethod.PUT,
    scheduler_v1.HttpMethod.PATCH,
)


def zone(time_zone: str) -> ZoneInfo:
    """The tz database zone of a job's `time_zone` (empty or "utc": UTC)."""
    if not time_zone or time_zone.lower() == "utc":
        return ZoneInfo("UTC")
    return ZoneInfo(time_zone)


def schedule_of(job: scheduler_v1.Job) -> CronSchedule:
    """The parsed schedule of a job already checked."""
    return parse(job.schedule)


def check_and_fill(job: scheduler_v1.Job, project: str) -> None:
    """INVALID_ARGUMENT for the first rule `job` breaks; else fill the API's defaults."""
    if len(job.description) > 500:
        raise invalid("Job.description must not contain more than 500 characters.")
    _check_schedule(job)
    target = scheduler_v1.Job.pb(job).WhichOneof("target")
    if target is None:
        raise invalid(
            "Job must have a target: one of http_target, pubsub_target or app_engine_http_target."
        )
    if target == "http_target":
        _check_http_target(job.http_target)
    elif target == "pubsub_target":
        _check_pubsub_target(job.pubsub_target, project)
    retries = job.retry_config.retry_count
    if not 0 <= retries <= 5:
        raise invalid(f"RetryConfig.retry_count must be between 0 and 5; got {retries}.")
    if target == "http_target":
        deadline = scheduler_v1.Job.pb(job).attempt_deadline
        if "attempt_deadline" not in job:
            deadline.FromTimedelta(_DEFAULT_DEADLINE)
        elif not _MIN_DEADLINE <= deadline.ToTimedelta() <= _MAX_DEADLINE:
            raise invalid(
                "Job.attempt_deadline for an HTTP target must be between 15 seconds and 30 minutes."
            )
    job.time_zone = job.time_zone or DEFAULT_TIME_ZONE


def _check_schedule(job: scheduler_v1.Job) -> None:
    if not job.schedule:
        raise invalid("Job.schedule is required.")
    try:
        parse(job.schedule)
        zone(job.time_zone)
    except CronError as error:
        raise invalid(f"Schedule or time zone is invalid. Schedule: {error}.") from None
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(
            f"Schedule or time zone is invalid. Time zone [{job.time_zone}] is not in the "
            "tz database."
        ) from None


def _check_http_target(target: scheduler_v1.HttpTarget) -> None:
    if not target.uri.startswith(("http://", "https://")):
        raise invalid('HttpTarget.uri must begin with "http://" or "https://".')
    if len(target.uri) > _MAX_URI:
        raise invalid(f"HttpTarget.uri must be at most {_MAX_URI} characters.")
    if target.http_method == HttpMethod.HTTP_METHOD_UNSPECIFIED:
        target.http_method = HttpMethod.POST
    if target.body and target.http_method not in _BODY_METHODS:
        method = scheduler_v1.HttpMethod(target.http_method).name
        raise invalid(f"HttpTarget.body is not allowed with the HTTP method {method}.")
    token = scheduler_v1.HttpTarget.pb(target).WhichOneof("authorization_header")
    if token is not None:
        email = getattr(target, token).service_account_email
        if not _EMAIL.match(email):
            raise invalid(f"HttpTarget.{token}.service_account_email must be an email address.")


def _check_pubsub_target(target: scheduler_v1.PubsubTarget, project: str) -> None:
    match = _TOPIC.match(target.topic_name)
    if match is None:
        raise invalid("PubsubTarget.topic_name must be projects/PROJECT_ID/topics/TOPIC_ID.")
    if match["project"] != project:
        raise invalid("PubsubTarget.topic_name must be in the same project as the job.")
    if not target.data and not target.attributes:
        raise invalid(
            "Pubsub message must contain either non-empty data, or at least one attribute."
        )
