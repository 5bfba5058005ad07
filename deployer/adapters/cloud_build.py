"""Cloud Build behind the pipeline's `Builds` port.

    start   cloudbuild.yaml + the source at the commit + our substitutions
            -> CreateBuild (or RunBuildTrigger) -> the build id and log URL at once
    wait    GetBuild, polled from 20 ms backing off to 0.5 s, until a terminal
            status -> status, failing step, failure detail, commit, image digest;
            a FAILURE or TIMEOUT also quotes the failing step's last log lines
            (Cloud Logging, `BuildLogs`)
    cancel  CancelBuild; a build that already ended is left as it is

The build is followed with GetBuild rather than the CreateBuild operation so that
a worker resuming a deploy in a new process, with only the build id saved, waits
the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import time
from collections.abc import Callable
from typing import Any

from google.api_core import exceptions
from google.cloud.devtools import cloudbuild_v1

from deployer.adapters.cloud_logging import BuildLogs
from deployer.adapters.google_clients import google_client
from deployer.build_config import referenced_substitutions
from deployer.config import ServiceConfig
from deployer.pipeline.ports import BuildOutcome, BuildRejected, BuildStarted, Progress

Build = cloudbuild_v1.Build
Status = cloudbuild_v1.Build.Status

_CALL_TIMEOUT = 30.0
# The detail (status line, blank line, header, output) fits the 15 lines the Slack
# thread and the terminal show of a failure, so the header stays in view.
OUTPUT_LINES = 12
_OUTPUT_TIMEOUT = 10.0  # for reading the output, however many queries it takes
_QUOTED = ("FAILURE", "TIMEOUT")  # BuildOutcome.status, a Status name
_FIRST_POLL, _MAX_POLL = 0.02, 0.5
# Calls that may succeed when tried again: the network, not the request, failed.
_TRANSIENT = (
    exceptions.ServiceUnavailable,
    exceptions.DeadlineExceeded,
    exceptions.InternalServerError,
    exceptions.TooManyRequests,
)
_TERMINAL = frozenset(
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
# Build tags (not image tags) must match this, or CreateBuild answers INVALID_ARGUMENT.
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


class CloudBuildBuilds:
    """`Builds` over the Cloud Build v1 API, quoting a failed build's log from Cloud Logging."""

    def __init__(
        self, client: cloudbuild_v1.CloudBuildClient | None = None, logs: BuildLogs | None = None
    ) -> None:
        self._client = client or google_client(cloudbuild_v1.CloudBuildClient)
        self._logs = logs or BuildLogs()

    def start(
        self, service: ServiceConfig, build: cloudbuild_v1.Build, commit: str, deploy_id: str
    ) -> BuildStarted:
        """Submit `build` with the source at `commit`; BuildRejected when Cloud Build refuses it."""
        ours = {**service.substitutions, "_COMMIT_SHA": commit, "_IMAGE": service.image}
        source = service.source
        try:
            if source.trigger:
                operation = self._client.run_build_trigger(
                    request=cloudbuild_v1.RunBuildTriggerRequest(
                        name=f"{_parent(service)}/triggers/{source.trigger}",
                        project_id=service.project,
                        trigger_id=source.trigger,
                        source=cloudbuild_v1.RepoSource(
                            project_id=service.project,
                            commit_sha=commit,
                            dir_=source.dir,
                            # The trigger brings its own config: send only what ours uses.
                            substitutions=_wanted(build, ours, keep_declared=False),
                        ),
                    ),
                    timeout=_CALL_TIMEOUT,
                )
            else:
                operation = self._client.create_build(
                    request=cloudbuild_v1.CreateBuildRequest(
                        parent=_parent(service),
                        project_id=service.project,
                        build=_prepare(service, build, commit, deploy_id, ours),
                    ),
                    timeout=_CALL_TIMEOUT,
                )
        except exceptions.GoogleAPICallError as error:
            raise BuildRejected(
                f"Cloud Build refused the build of {service.service} at {commit[:12]}: "
                f"{_reason(error)}"
            ) from None
        started: Build = operation.metadata.build
        if not started.id:
            raise BuildRejected(f"Cloud Build started no build for {service.service}")
        return BuildStarted(build_id=started.id, log_url=started.log_url)

    def wait(
        self,
        service: ServiceConfig,
        build_id: str,
        timeout: float,
        progress: Progress,
        stop: Callable[[], bool] = lambda: False,
    ) -> BuildOutcome:
        """Poll the build to its end, reporting each change; cancel it and say TIMEOUT at `timeout`.

        When `stop()` turns true the build is cancelled and followed until Cloud Build says so.
        """
        deadline = time.monotonic() + timeout
        delay = _FIRST_POLL
        seen: dict[int, Status] = {}  # -1: the build, 0..n: its steps
        last: Build | None = None
        unreachable = ""
        stopping = False
        while True:
            if not stopping and stop():
                stopping = True
                progress("cancelling the build")
                self.cancel(service, build_id)
            left = deadline - time.monotonic()
            try:
                build = self._get(service, build_id, max(0.5, min(left, _CALL_TIMEOUT)))
            except _TRANSIENT as error:
                if not unreachable:
                    progress(f"Cloud Build unreachable ({_reason(error)[:40]}); retrying")
                unreachable = _reason(error)
            else:
                unreachable, last = "", build
                _report(build, seen, progress)
                if build.status in _TERMINAL:
                    return self._quote_output(service, build, _outcome(service, build))
            if time.monotonic() >= deadline:
                return self._timed_out(service, build_id, timeout, last, unreachable)
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, _MAX_POLL)

    def cancel(self, service: ServiceConfig, build_id: str) -> None:
        """Stop the build; one that already ended is left as it is."""
        try:
            self._client.cancel_build(
                request=cloudbuild_v1.CancelBuildRequest(
                    name=_name(service, build_id), project_id=service.project, id=build_id
                ),
                timeout=_CALL_TIMEOUT,
            )
        except (exceptions.FailedPrecondition, exceptions.InvalidArgument) as error:
            # Cancelling a build that already ended answers 400; there is nothing to stop.
            if Status(self._get(service, build_id, _CALL_TIMEOUT).status) in _TERMINAL:
                return
            raise BuildRejected(
                f"Cloud Build did not cancel build {build_id}: {_reason(error)}"
            ) from None
        except exceptions.GoogleAPICallError as error:
            raise BuildRejected(
                f"Cloud Build did not cancel build {build_id}: {_reason(error)}"
            ) from None

    def _get(self, service: ServiceConfig, build_id: str, timeout: float) -> Build:
        try:
            build: Build = self._client.get_build(
                request=cloudbuild_v1.GetBuildRequest(
                    name=_name(service, build_id), project_id=service.project, id=build_id
                ),
                # The library's default retry waits up to 600 s; our loop retries instead.
                retry=None,
                timeout=timeout,
            )
        except _TRANSIENT:
            raise
        except exceptions.GoogleAPICallError as error:
            raise BuildRejected(
                f"Cloud Build cannot report build {build_id} of {service.service}: {_reason(error)}"
            ) from None
        return build

    def _timed_out(
        self,
        service: ServiceConfig,
        build_id: str,
        timeout: float,
        last: Build | None,
        unreachable: str,
    ) -> BuildOutcome:
        detail = (
            f"the deployer cancelled the build after {timeout:.0f} s (the build stage's timeout)"
        )
        try:
            self.cancel(service, build_id)
        except (BuildRejected, *_TRANSIENT) as error:
            detail = f"the build ran past {timeout:.0f} s and could not be cancelled: {error}"
        if unreachable:
            detail += f"; Cloud Build was unreachable: {unreachable}"
        outcome = BuildOutcome(
            status="TIMEOUT",
            log_url=last.log_url if last else "",
            failing_step=_failing_step(last) if last else None,
            detail=detail,
        )
        return self._quote_output(service, last, outcome) if last else outcome

    def _quote_output(
        self, service: ServiceConfig, build: Build, outcome: BuildOutcome
    ) -> BuildOutcome:
        """`outcome` with the last lines of the failing step (else of the build) in its detail.

        Only for FAILURE and TIMEOUT: a cancelled build was stopped on purpose, and an
        internal error or an expired build ran no step of ours worth quoting.
        """
        if outcome.status not in _QUOTED or not build.id:
            return outcome
        deadline = time.monotonic() + _OUTPUT_TIMEOUT
        since = _created(build)
        index = _failing_index(build)
        lines: list[str] = []
        if index is not None:
            where = f"step {_step_name(build, index)}"
            label = _step_label(build, index)
            lines = self._logs.tail(
                service, build.id, OUTPUT_LINES, _OUTPUT_TIMEOUT, step=label, since=since
            )
        if not lines:
            # No step, or its lines are not labelled as expected: the build's own tail.
            where = "the build"
            left = deadline - time.monotonic()
            lines = self._logs.tail(service, build.id, OUTPUT_LINES, left, since=since)
        if not lines:
            return outcome
        count = "line" if len(lines) == 1 else f"{len(lines)} lines"
        output = "\n".join(lines)
        quoted = f"Build output (last {count} of {where}):\n{output}"
        detail = f"{outcome.detail}\n\n{quoted}" if outcome.detail else quoted
        return dataclasses.replace(outcome, detail=detail)


def _parent(service: ServiceConfig) -> str:
    return f"projects/{service.project}/locations/{service.region}"


def _name(service: ServiceConfig, build_id: str) -> str:
    return f"{_parent(service)}/builds/{build_id}"


def _prepare(
    service: ServiceConfig, config: Build, commit: str, deploy_id: str, ours: dict[str, str]
) -> Build:
    """The build to submit: the config with the source at `commit`, substitutions and tags."""
    build: Build = Build.deserialize(Build.serialize(config))  # the caller's copy stays as it was
    source = service.source
    if source.git:
        build.source = cloudbuild_v1.Source(
            git_source=cloudbuild_v1.GitSource(url=source.git, revision=commit, dir_=source.dir)
        )
    elif source.connected_repository:
        build.source = cloudbuild_v1.Source(
            connected_repository=cloudbuild_v1.ConnectedRepository(
                repository=source.connected_repository, revision=commit, dir_=source.dir
            )
        )
    substitutions = _wanted(build, ours, keep_declared=True)
    build.substitutions.clear()
    build.substitutions.update(substitutions)
    tags = [*build.tags, "deployer", _tag(deploy_id), _tag(f"commit-{commit[:12]}")]
    build.tags = list(dict.fromkeys(tag for tag in tags if tag))
    return build


def _wanted(build: Build, ours: dict[str, str], *, keep_declared: bool) -> dict[str, str]:
    """Our substitutions merged into the declared ones, minus keys nothing uses.

    Cloud Build refuses a build whose substitutions include a key no template uses
    ("key ... in the substitution data is not matched in the template") unless
    `options.substitution_option` is ALLOW_LOOSE. Overriding `_IMAGE` can also
    orphan keys that only fed the declared `_IMAGE` value (`_REGION`, ...).
    """
    merged = {**(build.substitutions if keep_declared else {}), **ours}
    loose = (
        build.options.substitution_option
        == cloudbuild_v1.BuildOptions.SubstitutionOption.ALLOW_LOOSE
    )
    if loose:
        return merged
    bare: Build = Build.deserialize(Build.serialize(build))
    bare.substitutions.clear()
    used = referenced_substitutions(bare)
    if build.options.dynamic_substitutions:
        # Values are expanded too, so a key another used key's value refers to is used.
        pending = [key for key in used if key in merged]
        while pending:
            value = merged[pending.pop()]
            for key in referenced_substitutions(Build(substitutions={"_V": value})):
                if key not in used and key in merged:
                    used.add(key)
                    pending.append(key)
    return {key: value for key, value in merged.items() if key in used}


def _tag(text: str) -> str:
    """`text` as a valid build tag: other characters become '-', at most 128 of them."""
    cleaned = re.sub(r"[^\w.-]", "-", text).lstrip(".-")[:128]
    return cleaned if _TAG.match(cleaned) else ""


def _report(build: Build, seen: dict[int, Status], progress: Progress) -> None:
    """Tell `progress` what changed since the last look: the build's status, then each step's."""
    status = Status(build.status)
    if seen.get(-1) != status and status not in _TERMINAL:
        progress(f"build {status.name}")
    for index, step in enumerate(build.steps):
        step_status = Status(step.status)
        if step_status in _STEP_WORDS and seen.get(index) != step_status:
            progress(f"step {_step_name(build, index)} {_STEP_WORDS[step_status]}")
        seen[index] = step_status
    if status in _TERMINAL:
        progress(f"build {status.name}")  # last, after the step that ended it
    seen[-1] = status


def _step_name(build: Build, index: int) -> str:
    return build.steps[index].id or f"#{index}"


def _created(build: Build) -> datetime.datetime | None:
    # proto-plus hands timestamps out as datetimes, whatever the stubs say.
    stamp: Any = build.create_time if "create_time" in build else None
    return stamp if isinstance(stamp, datetime.datetime) else None


def _step_label(build: Build, index: int) -> str:
    """The step's `build_step` label in Cloud Logging, and its log lines' prefix."""
    step_id = build.steps[index].id
    return f'Step #{index} - "{step_id}"' if step_id else f"Step #{index}"


def _failing_index(build: Build) -> int | None:
    """The first step that failed; else, for a build that was stopped, the step it stopped in."""
    statuses = [Status(step.status) for step in build.steps]
    for wanted in (_FAILED_STEP, _STOPPED_STEP):
        for index, status in enumerate(statuses):
            if status in wanted:
                return index
    return None


def _failing_step(build: Build) -> str | None:
    """The name of `_failing_index`'s step."""
    index = _failing_index(build)
    return None if index is None else _step_name(build, index)


def _outcome(service: ServiceConfig, build: Build) -> BuildOutcome:
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
        failing_step=None if status == Status.SUCCESS else _failing_step(build),
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


def _reason(error: exceptions.GoogleAPICallError) -> str:
    code = error.grpc_status_code
    return f"{code.name if code is not None else type(error).__name__}: {error.message}"
