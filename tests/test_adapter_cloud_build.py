"""The Cloud Build adapter against the sandbox: the repo's own service/ built with its own cloudbuild.yaml."""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud.devtools import cloudbuild_v1 as cb
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client

from deployer.adapters.cloud_build import OUTPUT_LINES, CloudBuildBuilds
from deployer.adapters.cloud_logging import BuildLogs
from deployer.adapters.google_clients import google_client
from deployer.build_config import load_build_config
from deployer.config import ServiceConfig, Source
from deployer.pipeline.ports import BuildOutcome, BuildRejected, BuildStarted
from tests.conftest import GoogleClients

Status = cb.Build.Status
DIGEST_REF = r"@sha256:[0-9a-f]{64}"
Progress = Callable[[str], None]


@pytest.fixture
def client(google_clients: GoogleClients) -> cb.CloudBuildClient:
    return google_clients(cb.CloudBuildClient)


@pytest.fixture
def service(repo_root: Path) -> ServiceConfig:
    """A project of its own per test: the sandbox is shared by the whole session."""
    project = f"adapter-build-{uuid.uuid4().hex[:8]}"
    return ServiceConfig(
        project=project,
        region="europe-west1",
        service="backend",
        source=Source(git=str(repo_root)),
        image=f"europe-west1-docker.pkg.dev/{project}/deployer/backend",
    )


@dataclass
class Bench:
    """The adapter building the repo's own service/ at HEAD with its own cloudbuild.yaml."""

    client: cb.CloudBuildClient
    builds: CloudBuildBuilds
    service: ServiceConfig
    config: cb.Build
    head: str

    def start(self, deploy_id: str, commit: str = "") -> BuildStarted:
        return self.builds.start(self.service, self.config, commit or self.head, deploy_id)

    def wait(
        self, started: BuildStarted, timeout: int = 60, on_progress: Progress = lambda line: None
    ) -> BuildOutcome:
        return self.builds.wait(self.service, started.build_id, timeout, on_progress)

    def read_back(self, build_id: str) -> cb.Build:
        """The build as Cloud Build holds it."""
        name = f"projects/{self.service.project}/locations/{self.service.region}/builds/{build_id}"
        return self.client.get_build(request=cb.GetBuildRequest(name=name))


@pytest.fixture
def bench(
    client: cb.CloudBuildClient,
    google_clients: GoogleClients,
    service: ServiceConfig,
    repo_root: Path,
) -> Bench:
    head = subprocess.run(
        ["git", "-C", str(repo_root), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    config = load_build_config((repo_root / "cloudbuild.yaml").read_text())
    logs = BuildLogs(google_clients(LoggingServiceV2Client))
    return Bench(client, CloudBuildBuilds(client, logs), service, config, head)


def test_success_reports_the_image_by_digest_and_the_commit_built(
    gcp: Sandbox, bench: Bench
) -> None:
    started = bench.start("d-success-1")
    lines: list[str] = []
    outcome = bench.wait(started, 60, lines.append)

    assert outcome.ok, outcome
    assert re.fullmatch(re.escape(bench.service.image) + DIGEST_REF, outcome.image or "")
    assert outcome.commit == bench.head
    assert outcome.log_url == started.log_url and started.build_id in started.log_url
    assert outcome.failing_step is None
    pushed = gcp.images.resolve(outcome.image or "")
    assert pushed is not None and pushed.commit == bench.head
    assert {"step build done", "step push-latest done", "build SUCCESS"} <= set(lines)
    assert lines[-1] == "build SUCCESS"
    assert all(len(line) < 80 for line in lines)


def test_only_substitutions_the_build_uses_are_sent_with_our_tags(bench: Bench) -> None:
    bench.service = bench.service.model_copy(update={"substitutions": {"_NOT_USED": "x"}})
    started = bench.start("d-subst-1")
    outcome = bench.wait(started)

    assert outcome.ok, outcome
    sent = bench.read_back(started.build_id)
    # _REGION, _REPOSITORY, _IMAGE_NAME only fed the declared _IMAGE, which ours replaced.
    assert dict(sent.substitutions) == {"_COMMIT_SHA": bench.head, "_IMAGE": bench.service.image}
    assert {"deployer", "d-subst-1", f"commit-{bench.head[:12]}"} <= set(sent.tags)
    assert sent.source.git_source.revision == bench.head
    # the caller's copy is intact
    assert bench.config.substitutions["_IMAGE"].startswith("${_REGION}")


def test_allow_loose_builds_get_every_substitution(bench: Bench) -> None:
    bench.config.options.substitution_option = cb.BuildOptions.SubstitutionOption.ALLOW_LOOSE
    bench.service = bench.service.model_copy(update={"substitutions": {"_NOT_USED": "x"}})
    started = bench.start("d-loose-1")
    outcome = bench.wait(started)

    assert outcome.ok, outcome
    sent = bench.read_back(started.build_id)
    assert sent.substitutions["_NOT_USED"] == "x"
    assert sent.substitutions["_REGION"] == "europe-west1"


def test_a_failing_step_is_named_with_cloud_builds_detail(gcp: Sandbox, bench: Bench) -> None:
    message = "ERROR: failed to solve: uv sync: README.md not found"
    gcp.faults.arm("build_fail", step="build", message=message)
    started = bench.start("d-fail-1")
    lines: list[str] = []
    outcome = bench.wait(started, 60, lines.append)

    assert (outcome.status, outcome.failing_step, outcome.image) == ("FAILURE", "build", None)
    assert 'build step 1 "gcr.io/cloud-builders/docker" failed' in outcome.detail
    assert "non-zero status: 1" in outcome.detail
    # Cloud Build keeps the step's own output in the log, which log_url opens.
    assert any(message in line for line in gcp.builds.logs(started.build_id))
    assert lines[-2:] == ["step build failed", "build FAILURE"]


def test_a_failed_steps_output_is_quoted_from_its_log(gcp: Sandbox, bench: Bench) -> None:
    gcp.faults.arm("build_fail", step="build", message="npm ERR! missing script: build")
    started = bench.start("d-npm-1")
    outcome = bench.wait(started)

    assert (outcome.status, outcome.failing_step) == ("FAILURE", "build")
    status, blank, *quoted = outcome.detail.splitlines()
    assert status.startswith("Build step failure: build step 1 ") and blank == ""
    assert quoted == ["Build output (last line of step build):", "npm ERR! missing script: build"]


def test_a_build_without_a_failing_step_quotes_the_end_of_its_log(bench: Bench) -> None:
    missing = secrets.token_hex(20)
    outcome = bench.wait(bench.start("d-nocommit-2", commit=missing))

    assert outcome.failing_step is None
    quoted = outcome.detail.partition("\n\nBuild output (last 2 lines of the build):\n")[2]
    fetching, error = quoted.splitlines()
    assert fetching.startswith("Fetching ") and missing in fetching
    assert error.startswith("ERROR: failed to fetch source")


def test_the_output_is_its_last_lines_at_most(gcp: Sandbox, bench: Bench) -> None:
    lines = [f"npm ERR! line {n}" for n in range(OUTPUT_LINES + 5)]
    gcp.faults.arm("build_fail", step="build", message="\n".join(lines))
    outcome = bench.wait(bench.start("d-npm-2"))

    quoted = outcome.detail.splitlines()
    assert quoted[-OUTPUT_LINES - 1] == f"Build output (last {OUTPUT_LINES} lines of step build):"
    assert quoted[-OUTPUT_LINES:] == lines[-OUTPUT_LINES:]
    assert len(quoted) <= 15  # what the thread and the terminal show of a failure


def test_a_failure_is_reported_when_its_log_cannot_be_read(
    gcp: Sandbox,
    bench: Bench,
    unreachable_logging: LoggingServiceV2Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gcp.faults.arm("build_fail", step="build", message="npm ERR! missing script: build")
    builds = CloudBuildBuilds(bench.client, BuildLogs(unreachable_logging))
    outcome = builds.wait(bench.service, bench.start("d-nologs-1").build_id, 60, lambda _: None)

    assert (outcome.status, outcome.failing_step) == ("FAILURE", "build")
    assert "non-zero status: 1" in outcome.detail and "Build output" not in outcome.detail
    assert "reading the logs of build" in caplog.text


def test_a_hanging_build_is_cancelled_at_the_timeout(gcp: Sandbox, bench: Bench) -> None:
    gcp.faults.arm("build_hang", step="build")
    started = bench.start("d-hang-1")
    began = time.monotonic()
    outcome = bench.wait(started, 2)

    assert time.monotonic() - began < 3.5
    assert (outcome.status, outcome.failing_step) == ("TIMEOUT", "build")
    assert "the deployer cancelled the build after 2 s" in outcome.detail
    assert outcome.detail.endswith(
        "Build output (last line of step build):\n(sandbox fault build_hang: this step never ends)"
    )
    assert outcome.log_url == started.log_url
    status = Status(bench.read_back(started.build_id).status)
    assert status in (Status.CANCELLED, Status.TIMEOUT)


def test_cancel_stops_a_running_build(gcp: Sandbox, bench: Bench) -> None:
    gcp.faults.arm("build_hang", step="build")
    started = bench.start("d-cancel-1")
    cancelled = threading.Event()

    def on_progress(line: str) -> None:
        if line == "step build running" and not cancelled.is_set():
            cancelled.set()
            bench.builds.cancel(bench.service, started.build_id)

    began = time.monotonic()
    outcome = bench.wait(started, 30, on_progress)

    assert cancelled.is_set()
    assert (outcome.status, outcome.failing_step) == ("CANCELLED", "build")
    assert time.monotonic() - began < 5


def test_cancelling_a_finished_build_is_quiet(bench: Bench) -> None:
    started = bench.start("d-done-1")
    assert bench.wait(started).ok

    bench.builds.cancel(bench.service, started.build_id)

    assert Status(bench.read_back(started.build_id).status) == Status.SUCCESS


def test_an_unknown_commit_fails_the_build_naming_the_revision(bench: Bench) -> None:
    missing = secrets.token_hex(20)
    started = bench.start("d-nocommit-1", commit=missing)
    outcome = bench.wait(started)

    assert (outcome.status, outcome.commit, outcome.image) == ("FAILURE", None, None)
    assert missing in outcome.detail
    assert outcome.failing_step is None  # no step ran


def test_a_build_the_api_refuses_raises_with_its_message(bench: Bench) -> None:
    bench.config.steps[0].args.append("$_NOWHERE_DEFINED")

    with pytest.raises(BuildRejected, match=r"INVALID_ARGUMENT: .*_NOWHERE_DEFINED"):
        bench.start("d-refused-1")


def test_an_unreachable_api_is_retried_until_the_timeout(service: ServiceConfig) -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{spare.getsockname()[1]}"
    client = google_client(cb.CloudBuildClient, host=closed)
    logs = google_client(LoggingServiceV2Client, host=closed)
    try:
        began = time.monotonic()
        lines: list[str] = []
        builds = CloudBuildBuilds(client, BuildLogs(logs))
        outcome = builds.wait(service, "some-build", 1, lines.append)
    finally:
        client.transport.close()
        logs.transport.close()

    assert outcome.status == "TIMEOUT"
    assert "could not be cancelled" in outcome.detail
    assert "Cloud Build was unreachable: UNAVAILABLE" in outcome.detail
    assert lines and all(line.startswith("Cloud Build unreachable") for line in lines)
    assert len(lines) == 1  # said once per outage, not once per retry
    assert time.monotonic() - began < 3
