"""The states of a Cloud Build build and its steps, and how an interpreted step fails.

QUEUED -> WORKING -> SUCCESS | FAILURE | TIMEOUT | CANCELLED | INTERNAL_ERROR
"""

from __future__ import annotations

from google.cloud.devtools import cloudbuild_v1 as cb

Status = cb.Build.Status
FailureType = cb.Build.FailureInfo.FailureType
# Built by value so that type checkers see `Status` members, not ints.
QUEUED, WORKING, SUCCESS, FAILURE, INTERNAL_ERROR, TIMEOUT, CANCELLED = map(
    Status, (1, 2, 3, 4, 5, 6, 7)
)
TERMINAL = (SUCCESS, FAILURE, INTERNAL_ERROR, TIMEOUT, CANCELLED)
DEFAULT_TIMEOUT_S = 3600  # the API's default since 2023 (it was 600 s before)


class StepFailed(Exception):
    """A step exited non-zero; the message is what its log would end with."""
