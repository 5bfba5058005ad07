"""Cloud Build behind the pipeline's `Builds` port.

    start   cloudbuild.yaml + the source at the commit + our substitutions
            -> CreateBuild (or RunBuildTrigger) -> the build id and log URL at once
    wait    GetBuild, polled from 20 ms backing off to 0.5 s, until a terminal
            status -> status, failing step, failure detail, commit, image digest;
            a FAILURE or TIMEOUT also quotes the failing step's last log lines
            (Cloud Logging, `BuildLogs`), redacted of credential shapes; the
            pipeline hides the deploy's own values in them too
    cancel  CancelBuild; a build that already ended is left as it is

The build is followed with GetBuild rather than the CreateBuild operation so that
a worker resuming a deploy in a new process, with only the build id saved, waits
the same way. The request itself, and what a build's status says (progress,
failing step, outcome), are worked out by pure functions kept apart from these calls.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from google.api_core import exceptions
from google.cloud.devtools import cloudbuild_v1

from deployer.adapters.build_outcome import (
    TERMINAL,
    created_at,
    failing_index,
    failing_step,
    read_outcome,
    report_changes,
    step_label,
    step_name,
)
from deployer.adapters.build_request import (
    build_name,
    build_parent,
    our_substitutions,
    prepare_build,
    wanted_substitutions,
)
from deployer.adapters.build_reuse import find_earlier_build
from deployer.adapters.cloud_logging import BuildLogs
from deployer.adapters.google_clients import google_client
from deployer.config import ServiceConfig
from deployer.pipeline.ports import (
    BuildOutcome,
    BuildRejected,
    BuildStarted,
    EarlierBuild,
    Progress,
)

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
        ours = our_substitutions(service, commit)
        source = service.source
        try:
            if source.trigger:
                operation = self._client.run_build_trigger(
                    request=cloudbuild_v1.RunBuildTriggerRequest(
                        name=f"{build_parent(service)}/triggers/{source.trigger}",
                        project_id=service.project,
                        trigger_id=source.trigger,
                        source=cloudbuild_v1.RepoSource(
                            project_id=service.project,
                            commit_sha=commit,
                            dir_=source.dir,
                            # The trigger brings its own config: send only what ours uses.
                            substitutions=wanted_substitutions(build, ours, keep_declared=False),
                        ),
                    ),
                    timeout=_CALL_TIMEOUT,
                )
            else:
                operation = self._client.create_build(
                    request=cloudbuild_v1.CreateBuildRequest(
                        parent=build_parent(service),
                        project_id=service.project,
                        build=prepare_build(service, build, commit, deploy_id, ours),
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
                report_changes(build, seen, progress)
                if build.status in TERMINAL:
                    return self._quote_output(service, build, read_outcome(service, build))
            if time.monotonic() >= deadline:
                return self._timed_out(service, build_id, timeout, last, unreachable)
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, _MAX_POLL)

    def cancel(self, service: ServiceConfig, build_id: str) -> None:
        """Stop the build; one that already ended is left as it is."""
        try:
            self._client.cancel_build(
                request=cloudbuild_v1.CancelBuildRequest(
                    name=build_name(service, build_id), project_id=service.project, id=build_id
                ),
                timeout=_CALL_TIMEOUT,
            )
        except (exceptions.FailedPrecondition, exceptions.InvalidArgument) as error:
            # Cancelling a build that already ended answers 400; there is nothing to stop.
            if Status(self._get(service, build_id, _CALL_TIMEOUT).status) in TERMINAL:
                return
            raise BuildRejected(
                f"Cloud Build did not cancel build {build_id}: {_reason(error)}"
            ) from None
        except exceptions.GoogleAPICallError as error:
            raise BuildRejected(
                f"Cloud Build did not cancel build {build_id}: {_reason(error)}"
            ) from None

    def earlier(
        self, service: ServiceConfig, build: cloudbuild_v1.Build, commit: str, timeout: float
    ) -> EarlierBuild | None:
        """The newest successful build of `commit` with the same effective config
        (`build_reuse`)."""
        return find_earlier_build(self._client, service, build, commit, min(timeout, _CALL_TIMEOUT))

    def _get(self, service: ServiceConfig, build_id: str, timeout: float) -> Build:
        try:
            build: Build = self._client.get_build(
                request=cloudbuild_v1.GetBuildRequest(
                    name=build_name(service, build_id), project_id=service.project, id=build_id
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
            failing_step=failing_step(last) if last else None,
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
        since = created_at(build)
        index = failing_index(build)
        lines: list[str] = []
        if index is not None:
            where = f"step {step_name(build, index)}"
            label = step_label(build, index)
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


def _reason(error: exceptions.GoogleAPICallError) -> str:
    code = error.grpc_status_code
    return f"{code.name if code is not None else type(error).__name__}: {error.message}"
