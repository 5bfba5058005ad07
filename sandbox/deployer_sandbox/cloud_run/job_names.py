"""Cloud Run job and execution names: parsing, the naming rules and the API's wording about them.

projects/P/locations/L                                   a parent
projects/P/locations/L/jobs/J                            a job (J: a DNS label, 1-63)
projects/P/locations/L/jobs/J/executions/J-xxxxx         an execution (5 random characters)
"""

from __future__ import annotations

import os
import re

from deployer_sandbox.common.rpc import RpcError, invalid, not_found

_PARENT_RE = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")
_JOB_RE = re.compile(r"^(projects/[^/]+/locations/[^/]+)/jobs/([^/]+)$")
_EXECUTION_RE = re.compile(r"^(projects/[^/]+/locations/[^/]+/jobs/[^/]+)/executions/([^/]+)$")
_JOB_ID_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_SUFFIX = "abcdefghijklmnopqrstuvwxyz0123456789"


def check_parent(parent: str) -> None:
    """INVALID_ARGUMENT unless `parent` is `projects/P/locations/L`."""
    if _PARENT_RE.match(parent) is None:
        raise invalid(f"Invalid parent '{parent}': expected projects/*/locations/*.")


def is_job_name(name: str) -> bool:
    """Whether `name` is a job's full name."""
    return _JOB_RE.match(name) is not None


def parse_job(name: str) -> tuple[str, str]:
    """(parent, job id) of a job's full name, or INVALID_ARGUMENT."""
    match = _JOB_RE.match(name)
    if match is None:
        raise invalid(f"Invalid job name '{name}'.")
    return match.group(1), match.group(2)


def check_job_id(job_id: str) -> None:
    """INVALID_ARGUMENT unless `job_id` follows Cloud Run's rules for job names."""
    if not _JOB_ID_RE.match(job_id):
        raise invalid(
            f"Invalid value specified for job_id: '{job_id}'. Job names must use only lowercase "
            "alphanumeric characters and dashes, begin with a letter, cannot end with a dash, "
            "and cannot be longer than 63 characters."
        )


def check_execution_name(name: str) -> None:
    """INVALID_ARGUMENT unless `name` is an execution's full name."""
    if _EXECUTION_RE.match(name) is None:
        raise invalid(f"Invalid execution name '{name}'.")


def location_of(name: str) -> str:
    """`projects/P/locations/L` of any name under it."""
    return "/".join(name.split("/")[:4])


def new_execution_id(job_id: str) -> str:
    """A fresh execution id: the job id and five random lowercase letters or digits."""
    return f"{job_id}-{''.join(_SUFFIX[b % len(_SUFFIX)] for b in os.urandom(5))}"


def missing(name: str, kind: str) -> RpcError:
    """NOT_FOUND worded as Cloud Run v2 words it."""
    location = name.split("/")
    return not_found(
        f"Resource '{location[-1]}' of kind '{kind}' in region '{location[3]}' "
        f"in project '{location[1]}' does not exist."
    )
