"""`deployer demo`: a newcomer watches staging go to prod, as Slack threads, in the terminal.

    start the sandbox in this process (cloud, prod's first revision, webhook server, job)
    -> `/deploy staging` by demo.slack_user: POST /slack/events, form-encoded and signed
       exactly as Slack sends it; the staging thread runs until the deploy succeeded
    -> the same user clicks "Promote to prod" on the staging thread: a `block_actions`
       interaction (form field `payload`, signed), the button's action_id and value read
       from the parent as the sandbox's Slack drew it (`GET /_sandbox/messages`)
    -> the prod thread runs (no build: staging's digest) until it parks awaiting approval
    -> demo.slack_approver clicks "Approve" on the prod thread (read back the same way);
       a new worker resumes the deploy and traffic moves
    -> `/deploy status`, and its answer
    -> stop everything; exit 0 only when the promotion succeeded and prod serves the
       promoted revision 100 %, with Cloud Build's build count unchanged by it

Every thread is drawn live (`demo_view`). Nothing is shortcut: each deploy runs in the
sandbox's Cloud Run job execution (`deployer worker`), which talks to the same sandbox
over gRPC and to its Slack through slack_sdk, as in production; the demo reads Cloud
Build and Cloud Run back through the real clients. Every wait is bounded.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

from deployer.front.approval_messages import APPROVE_BUTTON
from deployer.pipeline.record import DeployRecord, State
from deployer_sandbox.harness.demo_view import ThreadView, deploy_of, render_message
from deployer_sandbox.harness.demo_wire import (
    HTTP_TIMEOUT,
    UserTraffic,
    channel_messages,
    click,
    drawn_button,
    label_of,
    slash_command,
)
from deployer_sandbox.harness.demo_words import (
    count_builds,
    digest,
    promotes_to,
    shares,
    statuses,
)

POLL_INTERVAL = 0.2
JOB_END_TIMEOUT = 30.0  # after a run ended or parked, for the worker's last Slack calls
BUTTON_WAIT = 20.0  # for a parent to be drawn with the button the story clicks next
STATUS_WAIT = 3.0  # for a status answer posted to the response_url
STAGING, PROD = "staging", "prod"
# Prod's users during the approved deploy: enough that each analysed step has real
# requests on both revisions (`[environments.prod.analysis] min_requests`).
USER_TRAFFIC_RPS, USER_TRAFFIC_SECONDS = 40, 10

T = TypeVar("T")


class DemoFailed(Exception):
    """The story stopped: what went wrong, as the demo's last line says it."""


def run(timeout: float = 300.0, out: TextIO = sys.stdout) -> int:
    """The `deployer demo` command; its exit status."""
    from deployer_sandbox.harness import lifecycle
    from deployer_sandbox.harness.seed import DEMO_ANALYSIS_INTERVAL, DemoError

    deadline = time.monotonic() + timeout
    # SIGTERM ends the demo like Ctrl-C: through `finally`, so every child process ends too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    say = _printer(out)
    say("Starting the sandbox: a local Cloud Build, Cloud Run, Secret Manager and Slack,")
    say("and deploying this repository's HEAD as prod's first revision ...")
    started = time.monotonic()
    try:
        running = lifecycle.start(with_demo=True)
    except DemoError as error:
        say(f"demo: {error}")
        return 1
    try:
        say(f"Sandbox ready in {time.monotonic() - started:.1f} s.")
        say(
            f"(prod's analysis judges each traffic step after {DEMO_ANALYSIS_INTERVAL} s "
            "here; deployer.example.toml says 60, Cloud Monitoring's grain)\n"
        )
        return Story(running, deadline, out).tell()
    except DemoFailed as failure:
        say(f"\ndemo: {failure}")
        return 1
    except KeyboardInterrupt:
        say("demo: interrupted")
        return 130
    finally:
        say("Stopping the sandbox ...")
        running.close()


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    return say


class Story:
    """Staging, the promotion, the approval, told against one running sandbox."""

    def __init__(self, running: Any, deadline: float, out: TextIO) -> None:
        from deployer.store import open_store

        self.running, self.deadline, self.say = running, deadline, _printer(out)
        self.demo, self.front, self.sandbox = running.demo, running.front, running.sandbox
        self.secret = running.state["slack_signing_secret"]
        self.store = open_store(self.demo.store)
        self.view = ThreadView(
            self.sandbox.http.url,
            self.demo.slack_channel,
            out,
            since=time.time(),
            name_of=self._environment_of,
        )

    def tell(self) -> int:
        """The whole story; 0 when prod serves staging's image 100 % after the approval."""
        staging = self.deploy_staging()
        builds = self.build_count()
        self.say(f"\nCloud Build has run {count_builds(builds)} so far.\n")
        parked = self.promote(staging)
        prod = self.approve(parked)
        after = self.build_count()
        if after != builds:
            raise DemoFailed(f"Cloud Build ran {count_builds(after - builds)} for the promotion")
        self.say(
            f"\nCloud Build ran {count_builds(builds)} before the promotion and {after} after it: "
            f"nothing built for prod, which runs staging's image {digest(staging.image)}."
        )
        routes = self.traffic()
        self.say(f"Cloud Run, after the approval: prod's traffic is {shares(routes)}.\n")
        self.status()
        serving = [(revision, percent) for revision, percent, _ in routes if percent]
        if prod.image != staging.image or serving != [(prod.candidate_revision, 100)]:
            raise DemoFailed(
                f"prod serves {shares(routes)} with {prod.image}, not staging's "
                f"{staging.image} on {prod.candidate_revision} at 100 %"
            )
        self.say(
            f"\ndemo: {staging.id} put {(staging.commit or '')[:12]} on staging; {prod.id} "
            f"promoted it to prod, approved by @{self.demo.slack_approver}: "
            f"{prod.candidate_revision} serves 100 %."
        )
        return 0

    def _users_of_prod(self) -> UserTraffic:
        """Prod's users keep calling it while its traffic moves, so each step is judged
        on real requests, against the revision serving them now."""
        from deployer.config import run_service_name

        name = run_service_name(self.demo.config.target(PROD))
        self.say(
            f"Meanwhile prod's users send {USER_TRAFFIC_RPS} requests a second to its URL "
            f"for {USER_TRAFFIC_SECONDS} s (the sandbox's loopback traffic)."
        )
        return UserTraffic(self.sandbox.http.url, name, USER_TRAFFIC_RPS, USER_TRAFFIC_SECONDS)

    # --- the three acts ---

    def deploy_staging(self) -> DeployRecord:
        """`/deploy staging`, until its deploy ended; it must have succeeded."""
        user = self.demo.slack_user
        self.say(f"<@{user}> in #deploys:  /deploy staging")
        sent = time.time()
        self._command("staging", user)
        record = self._until(
            "the staging deploy to end",
            lambda: self._finished(self._newest(STAGING, user, sent)),
        )
        self._settle()
        if record.state != State.SUCCEEDED:
            raise DemoFailed(f"staging deploy {record.id} ended {record.state}: {record.error}")
        return record

    def promote(self, staging: DeployRecord) -> DeployRecord:
        """Click "Promote to prod" on the staging thread; the prod deploy, once it parked."""
        user = self.demo.slack_user
        parent, button = self._button(staging, promotes_to(PROD))
        self.say(f"<@{user}> clicks [ {label_of(button)} ] on the staging thread")
        clicked = time.time()
        self._click(parent, button, user)

        def parked() -> DeployRecord | None:
            record = self._newest(PROD, user, clicked)
            if record is None or record.promoted_from != STAGING:
                return None
            waits = record.state == State.AWAITING_APPROVAL
            return record if waits or record.state.finished else None

        record = self._until("the prod deploy to ask for approval", parked)
        if record.state != State.AWAITING_APPROVAL:
            raise DemoFailed(f"prod deploy {record.id} ended {record.state}: {record.error}")
        return record

    def approve(self, parked: DeployRecord) -> DeployRecord:
        """The approver clicks "Approve" on the prod thread; the deploy, once it ended."""
        approver = self.demo.slack_approver
        parent, button = self._button(parked, lambda b: b.get("action_id") == APPROVE_BUTTON)
        self._settle()
        self.say(f"\nCloud Run, before the approval: prod's traffic is {shares(self.traffic())}.")
        self.say(f"\n<@{approver}> clicks [ {label_of(button)} ] on the prod thread")
        confirm = button.get("confirm") or {}
        if confirm:  # Slack shows the button's confirm dialog first; the click follows it
            title = (confirm.get("title") or {}).get("text", "")
            yes = (confirm.get("confirm") or {}).get("text", "")
            self.say(f"  Slack asks “{title}”; they press {yes}")
        users = self._users_of_prod()
        self._click(parent, button, approver)
        record = self._until(
            "the approved prod deploy to end",
            lambda: self._finished(self.store.get(parked.id)),
        )
        self._settle()
        sent = users.wait(USER_TRAFFIC_SECONDS + 5)
        if sent.get("sent"):
            self.say(f"Users sent {sent['sent']} requests meanwhile: {statuses(sent)}.")
        if record.state != State.SUCCEEDED:
            raise DemoFailed(f"prod deploy {record.id} ended {record.state}: {record.error}")
        return record

    def status(self) -> None:
        """`/deploy status`, and its answer (in the HTTP answer, or through response_url)."""
        user = self.demo.slack_user
        self.say(f"<@{user}> in #deploys:  /deploy status")
        self.view.since = time.time()
        before = self.view.shown
        body = self._command("status", user, quiet=True)
        try:
            answer = json.loads(body) if body.strip() else {}
        except ValueError:
            answer = {"text": body}
        if isinstance(answer, dict) and (answer.get("blocks") or answer.get("text")):
            self.say("  (only you can see this)")
            for line in render_message(answer):
                self.say(f"  │ {line}")
            return
        waited = time.monotonic() + STATUS_WAIT
        while time.monotonic() < waited and self.view.shown == before:
            self.view.poll()
            time.sleep(POLL_INTERVAL)

    # --- reading the cloud back, through the real clients ---

    def build_count(self) -> int:
        """How many builds Cloud Build has run for the demo's service."""
        from google.cloud.devtools import cloudbuild_v1

        from deployer.adapters.google_clients import google_client

        service = self.demo.config.service_of(PROD)
        builds: Any = google_client(cloudbuild_v1.CloudBuildClient, self.sandbox.grpc_address)
        try:
            request = cloudbuild_v1.ListBuildsRequest(
                parent=f"projects/{service.project}/locations/{service.region}",
                project_id=service.project,
            )
            return sum(1 for _ in builds.list_builds(request=request, timeout=HTTP_TIMEOUT))
        finally:
            builds.transport.close()

    def traffic(self) -> list[tuple[str, int, str]]:
        """(revision, percent, tag) of prod's traffic targets, as Cloud Run reports them."""
        from google.cloud import run_v2

        from deployer.adapters.google_clients import google_client
        from deployer.config import run_service_name

        name = run_service_name(self.demo.config.target(PROD))
        services: Any = google_client(run_v2.ServicesClient, self.sandbox.grpc_address)
        try:
            service = services.get_service(name=name, timeout=HTTP_TIMEOUT)
        finally:
            services.transport.close()
        return sorted(
            (
                (status.revision.rsplit("/", 1)[-1], status.percent, status.tag)
                for status in service.traffic_statuses
            ),
            key=lambda route: (-route[1], route[0]),
        )

    # --- the wire and the waits ---

    def _command(self, text: str, user: str, quiet: bool = False) -> str:
        url = self.sandbox.http.mint_response_url(channel=self.demo.slack_channel, user=user)
        status, body = slash_command(
            self.front.url, self.secret, text, user, self.demo.slack_channel, url
        )
        if status != 200:
            raise DemoFailed(f"the front refused /deploy {text}: {status} {body.strip()[:200]}")
        if not quiet:
            self.say(f"  (POST /slack/events answered {status} in time for Slack's 3 s)\n")
        return body

    def _click(self, parent: dict[str, Any], button: dict[str, Any], user: str) -> None:
        channel = self.demo.slack_channel
        url = self.sandbox.http.mint_response_url(
            channel=channel, user=user, message_ts=str(parent.get("ts"))
        )
        status, body = click(self.front.url, self.secret, parent, button, user, channel, url)
        if status != 200:
            raise DemoFailed(f"the front refused the click: {status} {body.strip()[:200]}")
        self.say(f"  (block_actions POST /slack/events answered {status})\n")

    def _button(
        self, record: DeployRecord, wanted: Callable[[dict[str, Any]], bool]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The deploy's thread parent and its button `wanted`, once Slack shows it."""

        def drawn() -> tuple[dict[str, Any], dict[str, Any]] | None:
            parent = self._parent_of(record.id)
            button = drawn_button(parent, wanted)
            return None if parent is None or button is None else (parent, button)

        return self._until(f"{record.id}'s thread to show its button", drawn, BUTTON_WAIT)

    def _parent_of(self, deploy_id: str) -> dict[str, Any] | None:
        messages = channel_messages(self.sandbox.http.url, self.demo.slack_channel)
        return next((m for m in messages if deploy_of(m) == deploy_id), None)

    def _until(self, what: str, found: Callable[[], T | None], wait: float | None = None) -> T:
        """Show the threads until `found` answers; DemoFailed when the wait ran out."""
        limit = self.deadline if wait is None else min(self.deadline, time.monotonic() + wait)
        while time.monotonic() < limit:
            self.view.poll()
            answer = found()
            if answer is not None:
                return answer
            time.sleep(POLL_INTERVAL)
        raise DemoFailed(f"waited in vain for {what}")

    def _settle(self) -> None:
        """Wait (bounded) until the job's latest execution ended: the worker said its
        last word to Slack; then show it."""
        from google.cloud import run_v2

        from deployer.adapters.google_clients import google_client

        jobs: Any = google_client(run_v2.JobsClient, self.sandbox.grpc_address)
        limit = min(self.deadline, time.monotonic() + JOB_END_TIMEOUT)
        try:
            while time.monotonic() < limit:
                self.view.poll()
                latest = jobs.get_job(name=self.front.job, timeout=HTTP_TIMEOUT)
                execution = latest.latest_created_execution
                if execution.name and execution.completion_time:
                    break
                time.sleep(POLL_INTERVAL)
        finally:
            jobs.transport.close()
        self.view.poll()

    def _newest(self, environment: str, user: str, since: float) -> DeployRecord | None:
        for record in self.store.history(environment, 5):
            if record.requester == f"slack:{user}" and record.created_at >= since - 1:
                return record
        return None

    @staticmethod
    def _finished(record: DeployRecord | None) -> DeployRecord | None:
        return record if record is not None and record.state.finished else None

    def _environment_of(self, deploy_id: str) -> str | None:
        record = self.store.get(deploy_id)
        return None if record is None else str(record.environment)
