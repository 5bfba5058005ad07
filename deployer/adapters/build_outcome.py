"""What Cloud Build says of a build: its progress, its failing step and its outcome."""

from __future__ import annotations

import datetime
import re
from typing import Any

from google.cloud.devtools import cloudbuild_v1

from deployer.config import ServiceConfig
from deployer.pipeline.ports import BuildOutcome, Progress

Build = cloudbuild_v1.Build
Status = cloudbuild_v1.Build.Status

TERMINAL = frozenset(
    {
        Status.SUCCESS,
        Status.FAILURE,
        Status.INTERNAL_ERROR,
        Status.TIMEOUT,
        Status.CANCELLED,
        Status.EXPIRED,
    }
)
_FAILED_STEP = (Status.FAILURE, Status.TIMEOUT, Status.INTERNAL_ERROR)
_STOPPED_STEP = (Status.CANCELLED, Status.WORKING)
_STEP_WORDS = {
    Status.WORKING: "running",
    Status.SUCCESS: "done",
    Status.FAILURE: "failed",
    Status.TIMEOUT: "timed out",
    Status.CANCELLED: "cancelled",
    Status.INTERNAL_ERROR: "hit an internal error",
    Status.EXPIRED: "expired",
}
_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


def report_changes(build: Build, seen: dict[int, Status], progress: Progress) -> None:
    """Tell `progress` what changed since the last look: the build's status, then each step's."""
    status = Status(build.status)
    if seen.get(-1) != status and status not in TERMINAL:
        progress(f"build {status.name}")
    for index, step in enumerate(build.steps):
        step_status = Status(step.status)
        if step_status in _STEP_WORDS and seen.get(index) != step_status:
            progress(f"step {step_name(build, index)} {_STEP_WORDS[step_status]}")
        seen[index] = step_status
    if status in TERMINAL:
        progress(f"build {status.name}")  # last, after the step that ended it
    seen[-1] = status


def step_name(build: Build, index: int) -> str:
    """The step's id, else `#index`."""
    return build.steps[index].id or f"#{index}"


def created_at(build: Build) -> datetime.datetime | None:
    """When the build was created, if Cloud Build said."""
    # proto-plus hands timestamps out as datetimes, whatever the stubs say.
    stamp: Any = build.create_time if "create_time" in build else None
    return stamp if isinstance(stamp, datetime.datetime) else None


def step_label(build: Build, index: int) -> str:
    """The step's `build_step` label in Cloud Logging, and its log lines' prefix."""
    step_id = build.steps[index].id
    return f'Step #{index} - "{step_id}"' if step_id else f"Step #{index}"


def failing_index(build: Build) -> int | None:
    """The first step that failed; else, for a build that was stopped, the step it stopped in."""
    statuses = [Status(step.status) for step in build.steps]
    for wanted in (_FAILED_STEP, _STOPPED_STEP):
        for index, status in enumerate(statuses):
            if status in wanted:
                return index
    return None


def failing_step(build: Build) -> str | None:
    """The name of `failing_index`'s step."""
    index = failing_index(build)
    return None if index is None else step_name(build, index)


def read_outcome(service: ServiceConfig, build: Build) -> BuildOutcome:
    """The outcome of a build that ended: status, commit, image digest, failing step, detail."""
    status = Status(build.status)
    image = _image(service, build)
    detail = _detail(build)
    if status == Status.SUCCESS and image is None:
        pushed = ", ".join(i.name for i in build.results.images) or "nothing"
        detail = (
            f"the build pushed no image of {service.image} (pushed: {pushed}); "
            f"list {service.image}:$_COMMIT_SHA under `images:` in {service.build_config}"
        )
    return BuildOutcome(
        status=status.name,
        log_url=build.log_url,
        commit=_commit(build),
        image=image,
        failing_step=None if status == Status.SUCCESS else failing_step(build),
        detail=detail,
    )


def _image(service: ServiceConfig, build: Build) -> str | None:
    """`image@sha256:...` of the service's image among the pushed images, whatever its tag."""
    for pushed in build.results.images:
        repository = pushed.name.partition("@")[0]
        head, _, last = repository.rpartition("/")
        if ":" in last:
            repository = f"{head}/{last.partition(':')[0]}"
        if repository == service.image and pushed.digest.startswith("sha256:"):
            return f"{service.image}@{pushed.digest}"
    return None


def _commit(build: Build) -> str | None:
    """The commit the build really fetched, as Cloud Build resolved it for each source kind."""
    provenance = build.source_provenance
    for candidate in (
        provenance.resolved_git_source.revision,
        provenance.resolved_connected_repository.revision,
        provenance.resolved_repo_source.commit_sha,
        build.substitutions.get("COMMIT_SHA", ""),  # set on builds a trigger started
    ):
        if _COMMIT.match(candidate):
            return candidate
    return None


def _detail(build: Build) -> str:
    """status_detail and failure_info.detail, without saying the same thing twice."""
    parts = [part for part in (build.status_detail, build.failure_info.detail) if part]
    kept = [p for p in parts if not any(p != other and p in other for other in parts)]
    return "; ".join(dict.fromkeys(kept))
