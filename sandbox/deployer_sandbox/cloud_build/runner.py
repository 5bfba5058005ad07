"""Runs one Cloud Build build on its own thread: fetch the source, run the steps in order, push.

The source is a `git_source` (a local repository), a `connected_repository`: the
local repository behind a 2nd-gen repository (`locate`), fetched as from its
`remote_uri` with the connection's credentials, or a `storage_source`: an archive in the
sandbox's Cloud Storage (`read_object`, `cloud_build.storage_sources`).

No container runs here: each step is interpreted by `cloud_build.docker_steps`. A
build's statuses are those of `cloud_build.status`; faults `build_fail` and
`build_hang` target one step.

The runner owns its copy of the `Build` and hands snapshots to `publish` at every
change; the last snapshot has a terminal status.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, NoReturn

from google.cloud.devtools import cloudbuild_v1 as cb

from deployer_sandbox.cloud_build.docker_steps import DockerSteps
from deployer_sandbox.cloud_build.repository_store import ServedRepository
from deployer_sandbox.cloud_build.sources import Checkout, SourceError, TreeStore
from deployer_sandbox.cloud_build.status import (
    CANCELLED,
    DEFAULT_TIMEOUT_S,
    FAILURE,
    INTERNAL_ERROR,
    SUCCESS,
    TIMEOUT,
    WORKING,
    FailureType,
    Status,
    StepFailed,
)
from deployer_sandbox.cloud_build.storage_sources import ReadObject, fetch_archive, unpack
from deployer_sandbox.common.faults import Fault, Faults
from deployer_sandbox.common.images import ImageStore
from deployer_sandbox.common.protos import clone, now
from deployer_sandbox.common.rpc import RpcError

log = logging.getLogger(__name__)

Publish = Callable[[cb.Build], None]
# A 2nd-gen repository by name; raises RpcError when there is none (any more).
Locate = Callable[[str], ServedRepository]
# The default error of an injected build failure, worded like BuildKit's.
FAULT_MESSAGE = 'ERROR: failed to solve: process "/bin/sh -c exit 1" did not complete successfully'
# The `build_step` label of the build's own lines (fetching, pushing, DONE / ERROR).
MAIN = "MAIN"


class BuildLogLine(NamedTuple):
    """One line of a build's log, as Cloud Logging receives it."""

    timestamp: datetime  # when the runner wrote it (UTC), never before the line above
    number: int  # 0, 1, ... within the build: a tie-breaker
    step: str  # 'Step #1 - "build"', 'Step #2' (a step without id) or MAIN
    text: str  # with the step's prefix, as the build log shows it: 'Step #1 - "build": ...'


class _Ended(Exception):
    """The build ends before it succeeds: how, raised where that is found out."""

    def __init__(
        self, status: Status, detail: str, failure: cb.Build.FailureInfo | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.detail, self.failure = status, detail, failure


class BuildRunner:
    """Executes one build on its own thread and publishes a snapshot at every change."""

    def __init__(
        self,
        build: cb.Build,
        *,
        images: ImageStore,
        trees: TreeStore,
        faults: Faults,
        publish: Publish,
        locate: Locate | None = None,
        read_object: ReadObject | None = None,
    ) -> None:
        self._build = clone(build)
        self._locate = locate
        self._read_object = read_object
        self._images = images
        self._trees = trees
        self._faults = faults
        self._publish = publish
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._log: list[BuildLogLine] = []
        self._prefix = ""
        self.done = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name=f"build-{build.id[:8]}", daemon=True
        )

    def start(self) -> None:
        """Start executing on the runner's own thread."""
        self._thread.start()

    def cancel(self) -> None:
        """Ask the build to stop; it ends CANCELLED unless it already finished."""
        self._cancelled.set()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the runner's thread to end."""
        self._thread.join(timeout)

    def log_lines(self) -> list[str]:
        """The build's log so far."""
        with self._lock:
            return [line.text for line in self._log]

    def log_entries(self) -> list[BuildLogLine]:
        """The build's log so far, with each line's time and step."""
        with self._lock:
            return list(self._log)

    def _say(self, text: str) -> None:
        step = self._prefix.removesuffix(": ") or MAIN
        with self._lock:
            stamp = datetime.now(UTC)
            if self._log and stamp < self._log[-1].timestamp:
                stamp = self._log[-1].timestamp  # the wall clock stepped back
            for line in text.splitlines() or [""]:
                number = len(self._log)
                self._log.append(BuildLogLine(stamp, number, step, f"{self._prefix}{line}"))

    def _emit(self) -> None:
        self._publish(clone(self._build))

    def _finish(
        self, status: Status, detail: str = "", failure: cb.Build.FailureInfo | None = None
    ) -> None:
        build = self._build
        build.status, build.status_detail, build.finish_time = status, detail, now()
        if failure is not None:
            build.failure_info = failure
        self._prefix = ""
        self._say(f"{'DONE' if status == SUCCESS else 'ERROR: ' + (detail or Status(status).name)}")
        self._emit()

    def _main(self) -> None:
        try:
            self._run()
        except Exception:
            log.exception("build %s: runner failed", self._build.id)
            self._finish(INTERNAL_ERROR, "Internal error in the sandbox's build runner.")
        finally:
            self.done.set()

    def _fault_step(self, fault: Fault | None) -> int | None:
        """The index of the step a fault targets: `step` (index or id), else "build", else the last."""
        if fault is None:
            return None
        ids = [step.id for step in self._build.steps]
        wanted = fault.params.get("step")
        if isinstance(wanted, str) and wanted in ids:
            return ids.index(wanted)
        if isinstance(wanted, int | str) and str(wanted).isdigit() and int(wanted) < len(ids):
            return int(wanted)
        return ids.index("build") if "build" in ids else len(ids) - 1

    def _fetch(self) -> tuple[Path, Checkout | None, str]:
        """(workspace, checkout, source dir relative to the workspace) for this build's source."""
        if cb.Source.pb(self._build.source).HasField("connected_repository"):
            return self._fetch_connected()
        if cb.Source.pb(self._build.source).HasField("storage_source"):
            return self._fetch_storage()
        git = self._build.source.git_source
        if not git.url:
            return self._trees.empty(), None, "."
        self._say(f"Fetching {git.url} {git.revision or 'HEAD'}")
        checkout = self._trees.checkout(git.url, git.revision)
        self._say(f"HEAD is now at {checkout.commit[:7]}")
        provenance = cb.GitSource(url=git.url, dir_=git.dir_, revision=checkout.commit)
        self._build.source_provenance = cb.SourceProvenance(resolved_git_source=provenance)
        return checkout.root, checkout, posixpath.normpath(git.dir_ or ".")

    def _fetch_storage(self) -> tuple[Path, Checkout | None, str]:
        """A `storage_source` archive, unpacked (`cloud_build.storage_sources`)."""
        wanted = self._build.source.storage_source
        url = f"gs://{wanted.bucket}/{wanted.object_}"
        self._say(f"Fetching storage object: {url}")
        data, generation = fetch_archive(
            self._read_object, wanted.bucket, wanted.object_, wanted.generation
        )
        workspace = unpack(self._trees.root / "trees", data, url)
        self._say(f"Fetched {url}#{generation} ({len(data)} bytes)")
        resolved = cb.StorageSource(
            bucket=wanted.bucket, object_=wanted.object_, generation=generation
        )
        self._build.source_provenance = cb.SourceProvenance(resolved_storage_source=resolved)
        return workspace, None, "."

    def _fetch_connected(self) -> tuple[Path, Checkout | None, str]:
        connected = self._build.source.connected_repository
        if self._locate is None:
            raise SourceError(f"repository {connected.repository} not found")
        try:
            served = self._locate(connected.repository)
        except RpcError as error:
            raise SourceError(error.message) from None
        self._say(f"Fetching {served.remote_uri} {connected.revision}")
        checkout = self._trees.checkout_local(served.path, connected.revision, served.remote_uri)
        self._say(f"HEAD is now at {checkout.commit[:7]}")
        # "A copy of the build's source.connected_repository, if exists, with any
        # revisions resolved" (SourceProvenance.resolved_connected_repository).
        provenance = cb.ConnectedRepository(
            repository=connected.repository, dir_=connected.dir_, revision=checkout.commit
        )
        self._build.source_provenance = cb.SourceProvenance(
            resolved_connected_repository=provenance
        )
        return checkout.root, checkout, posixpath.normpath(connected.dir_ or ".")

    def _run(self) -> None:
        # Armed faults are consumed by this build even when it is cancelled before it starts.
        fail, hang = self._faults.take("build_fail"), self._faults.take("build_hang")
        try:
            self._check_cancelled()
            deadline = self._begin()
            workspace, checkout, source_dir = self._fetch_source()
            docker = DockerSteps(
                self._images, workspace, checkout, self._say, space=self._trees.root
            )
            self._run_steps(docker, source_dir, deadline, fail, hang)
            self._push(docker)
        except _Ended as ended:
            return self._finish(ended.status, ended.detail, ended.failure)
        return self._finish(SUCCESS)

    def _check_cancelled(self) -> None:
        if self._cancelled.is_set():
            raise _Ended(CANCELLED, "Build was cancelled.")

    def _begin(self) -> float:
        """Mark the build WORKING; returns its deadline, on the monotonic clock."""
        build = self._build
        build.status, build.start_time = WORKING, now()
        deadline = time.monotonic() + (cb.Build.pb(build).timeout.seconds or DEFAULT_TIMEOUT_S)
        self._emit()
        return deadline

    def _fetch_source(self) -> tuple[Path, Checkout | None, str]:
        """`_fetch`, timed as FETCHSOURCE; a source that cannot be fetched fails the build."""
        started = now()
        try:
            fetched = self._fetch()
        except SourceError as error:
            detail = f"failed to fetch source: {error}"
            failure = cb.Build.FailureInfo(type_=FailureType.FETCH_SOURCE_FAILED, detail=detail)
            raise _Ended(FAILURE, detail, failure) from None
        self._build.timing["FETCHSOURCE"] = cb.TimeSpan(start_time=started, end_time=now())
        return fetched

    def _run_steps(
        self,
        docker: DockerSteps,
        source_dir: str,
        deadline: float,
        fail: Fault | None,
        hang: Fault | None,
    ) -> None:
        """Each step in order, timed as BUILD; the build ends at the first step that fails
        (unless it may), hangs, or finds the build cancelled or out of time."""
        build = self._build
        fail_at, hang_at = self._fault_step(fail), self._fault_step(hang)
        fail_message = str(fail.params.get("message") or FAULT_MESSAGE) if fail else ""
        started = now()
        for index, step in enumerate(build.steps):
            self._check_cancelled()
            if time.monotonic() >= deadline:
                raise _Ended(TIMEOUT, "Build timed out.")
            self._prefix = f'Step #{index} - "{step.id}": ' if step.id else f"Step #{index}: "
            step.status = WORKING
            step.timing = step.pull_timing = cb.TimeSpan(start_time=now())
            self._emit()
            if index == hang_at:
                self._hang(step, deadline)
            try:
                if index == fail_at:
                    raise StepFailed(fail_message)
                docker.run(step, self._step_dir(source_dir, step.dir_))
            except StepFailed as failed:
                self._step_failed(index, step, str(failed))
                continue
            step.status, step.timing.end_time = SUCCESS, now()
        self._prefix = ""
        build.timing["BUILD"] = cb.TimeSpan(start_time=started, end_time=now())
        build.results.build_step_images = [
            "sha256:" + hashlib.sha256(step.name.encode()).hexdigest() for step in build.steps
        ]

    def _hang(self, step: cb.BuildStep, deadline: float) -> NoReturn:
        """Fault `build_hang`: the step runs until the build is cancelled or times out."""
        self._say("(sandbox fault build_hang: this step never ends)")
        cancelled = self._cancelled.wait(max(0.0, deadline - time.monotonic()))
        step.timing.end_time = now()
        step.status = CANCELLED if cancelled else TIMEOUT
        if cancelled:
            raise _Ended(CANCELLED, "Build was cancelled.")
        raise _Ended(TIMEOUT, "Build timed out.")

    def _step_failed(self, index: int, step: cb.BuildStep, message: str) -> None:
        """Record the step's failure; the build fails with it unless `allow_failure`."""
        self._say(message)
        step.status, step.exit_code, step.timing.end_time = FAILURE, 1, now()
        if step.allow_failure:
            return
        detail = f'build step {index} "{step.name}" failed: step exited with non-zero status: 1'
        failure = cb.Build.FailureInfo(
            type_=FailureType.USER_BUILD_STEP, detail=f"Build step failure: {detail}"
        )
        raise _Ended(FAILURE, detail, failure)

    def _push(self, docker: DockerSteps) -> None:
        """Push the build's `images`, timed as PUSH; one the steps did not build fails it."""
        self._check_cancelled()
        build = self._build
        if not build.images:
            return
        started = now()
        try:
            build.results.images = docker.push_images(list(build.images))
        except LookupError as missing:
            detail = (
                "failed to find one or more images after execution of build steps: "
                + json.dumps(missing.args[0])
            )
            failure = cb.Build.FailureInfo(type_=FailureType.PUSH_IMAGE_NOT_FOUND, detail=detail)
            raise _Ended(FAILURE, detail, failure) from None
        build.timing["PUSH"] = cb.TimeSpan(start_time=started, end_time=now())

    @staticmethod
    def _step_dir(source_dir: str, step_dir: str) -> str:
        """A step's working directory relative to the workspace (/workspace)."""
        if step_dir.startswith("/"):
            relative = posixpath.relpath(posixpath.normpath(step_dir), "/workspace")
        else:
            relative = posixpath.normpath(posixpath.join(source_dir, step_dir or "."))
        if relative == ".." or relative.startswith("../"):
            raise StepFailed(f"step dir {step_dir!r} is outside /workspace")
        return relative
