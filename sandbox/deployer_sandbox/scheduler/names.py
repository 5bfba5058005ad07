"""Cloud Scheduler resource names, and the API's wording about them.

    projects/P/locations/L           a parent (P: letters, digits, `-`, `:`, `.`)
    projects/P/locations/L/jobs/J    a job (J: 1 to 500 letters, digits, `-`, `_`)

The rules are `Job.name`'s comment (google/cloud/scheduler/v1/job.proto): "PROJECT_ID
can contain letters ([A-Za-z]), numbers ([0-9]), hyphens (-), colons (:), or periods
(.)", "JOB_ID can contain only letters ([A-Za-z]), numbers ([0-9]), hyphens (-), or
underscores (_). The maximum length is 500 characters."
"""

from __future__ import annotations

import re

from deployer_sandbox.common.rpc import RpcError, already_exists, invalid, not_found

_PARENT = r"projects/(?P<project>[A-Za-z0-9:.-]+)/locations/(?P<location>[a-z0-9-]+)"
_PARENT_RE = re.compile(rf"^{_PARENT}$")
_JOB_RE = re.compile(rf"^(?P<parent>{_PARENT})/jobs/(?P<job>[A-Za-z0-9_-]{{1,500}})$")


def check_parent(parent: str) -> tuple[str, str]:
    """(project, location) of `projects/P/locations/L`, or INVALID_ARGUMENT."""
    match = _PARENT_RE.match(parent)
    if match is None:
        raise invalid(
            f"Invalid resource field value in the request: parent [{parent}] does not match "
            "projects/{project}/locations/{location}."
        )
    return match["project"], match["location"]


def parse_job(name: str) -> tuple[str, str]:
    """(parent, job id) of a job's name, or INVALID_ARGUMENT naming the rule."""
    match = _JOB_RE.match(name)
    if match is None:
        raise invalid(
            f"Job name [{name}] is invalid: it must be projects/PROJECT_ID/locations/"
            "LOCATION_ID/jobs/JOB_ID, JOB_ID being 1 to 500 letters, numbers, hyphens "
            "or underscores."
        )
    return match["parent"], match["job"]


def project_of(name: str) -> str:
    """The project of a job or parent name already checked."""
    return name.split("/")[1]


def job_exists(name: str) -> RpcError:
    """ALREADY_EXISTS, in the API's words ("Job projects/…/jobs/x already exists.",
    hashicorp/terraform-provider-google#16918)."""
    return already_exists(f"Job {name} already exists.")


def job_not_found(name: str) -> RpcError:
    """NOT_FOUND for a job ("If the job does not exist, NOT_FOUND is returned", UpdateJob)."""
    return not_found(f"Job {name} not found.")
