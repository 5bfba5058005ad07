"""`deployer demo`: a newcomer watches `/deploy prod` unfold as a Slack thread, in the terminal.

    start the sandbox in this process (cloud, demo service, webhook server, worker job)
    -> POST /slack/events: `/deploy prod`, form-encoded and signed exactly as Slack sends it
    -> poll the Slack sink (`/_sandbox/messages`): redraw the thread's parent as it is
       updated, print each reply as it appears, until the deploy has ended
    -> `/deploy status`, and print its answer
    -> stop everything; exit 0 only when the deploy succeeded

Nothing is shortcut: the deploy runs in the sandbox's Cloud Run job execution
(`deployer worker`), which talks to the same sandbox over gRPC and to the sink
through slack_sdk, as it would in production. Every wait is bounded.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from deployer.front.mrkdwn import escape
from deployer.front.verify import slack_signature
from deployer.pipeline.record import DeployRecord, State

HTTP_TIMEOUT = 10.0
POLL_INTERVAL = 0.2
JOB_END_TIMEOUT = 30.0  # after the record ended, for the worker's last Slack calls
STATUS_WAIT = 3.0  # for a status answer posted to the response_url
TEAM_DOMAIN = "sandbox"

_LINK = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_MENTION = re.compile(r"<([@#!])([^<>|]+)>")
_BARE_LINK = re.compile(r"<([^<>|@#!][^<>]*)>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")


# --- rendering Slack messages as plain text --------------------------------------------


def plain(mrkdwn: str) -> str:
    """Slack mrkdwn as terminal text: links show their label, mentions their id."""
    text = _LINK.sub(lambda m: m[2], mrkdwn)
    text = _MENTION.sub(lambda m: ("@" if m[1] == "!" else m[1]) + m[2], text)
    text = _BARE_LINK.sub(lambda m: m[1], text)
    text = _BOLD.sub(lambda m: m[1], text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text_of(element: Any) -> str:
    if isinstance(element, dict):
        if isinstance(element.get("text"), dict):
            return _text_of(element["text"])
        value = element.get("text") or element.get("alt_text") or ""
        return plain(value) if isinstance(value, str) else ""
    return ""


def render_blocks(blocks: Iterable[Any]) -> list[str]:
    """Block Kit blocks as lines of plain text (sections, fields, context, buttons...)."""
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("section", "header"):
            if block.get("text"):
                text = _text_of(block)
                lines += text.upper().splitlines() if kind == "header" else text.splitlines()
            for field in block.get("fields") or []:
                lines += _text_of(field).splitlines()
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and accessory.get("type") == "button":
                lines.append(f"[ {_text_of(accessory)} ]")
        elif kind == "context":
            parts = [_text_of(e) for e in block.get("elements") or []]
            lines += " · ".join(p for p in parts if p).splitlines()
        elif kind == "divider":
            lines.append("─" * 40)
        elif kind == "actions":
            buttons = [f"[ {_text_of(e)} ]" for e in block.get("elements") or []]
            lines.append("  ".join(buttons))
    return lines


def render_message(message: dict[str, Any]) -> list[str]:
    """A recorded message (from `/_sandbox/messages`) as lines: its blocks, else its text."""
    lines = render_blocks(message.get("blocks") or [])
    if not lines:
        lines = plain(message.get("text") or "").splitlines()
    return lines or ["(empty message)"]


# --- the wire -----------------------------------------------------------------------------


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """One HTTP call on loopback: (status, body text); errors with a status are answers too."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


def signed_slash_command(
    secret: str, text: str, user: str, channel: str, response_url: str
) -> tuple[bytes, dict[str, str]]:
    """`/deploy <text>` as Slack POSTs it: the form body and its signed headers."""
    fields = {
        "token": "unused-legacy-verification-token",
        "team_id": "T0SANDBOX1",
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": "deploys",
        "user_id": user,
        "user_name": "demo.user",
        "command": "/deploy",
        # Slack escapes &, < and > in what was typed (docs.slack.dev, "Formatting text for
        # app surfaces": escaping text); the front unescapes it once.
        "text": escape(text),
        "api_app_id": "A0SANDBOX1",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": f"{secrets.randbelow(10**12)}.{secrets.token_hex(8)}",
    }
    # Slack percent-encodes spaces as %20; the signature covers these exact bytes.
    body = urlencode(fields, quote_via=quote).encode("ascii")
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(secret, timestamp, body),
    }
    return body, headers


def slash_command(
    webhook: str, secret: str, text: str, user: str, channel: str, response_url: str
) -> tuple[int, str]:
    """POST `/deploy <text>` to the front exactly as Slack does; (status, body)."""
    body, headers = signed_slash_command(secret, text, user, channel, response_url)
    return http("POST", f"{webhook}/slack/events", body, headers)


def _ts(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# --- the live thread ----------------------------------------------------------------------


class ThreadView:
    """Prints a channel's new messages as they appear; the deploy thread's parent is redrawn."""

    def __init__(self, sink: str, channel: str, out: TextIO, since: float) -> None:
        self.sink = sink
        self.channel = channel
        self.out = out
        self.since = since
        self.parent_ts: str | None = None
        self.tty = out.isatty()
        self._shown: dict[str, list[str]] = {}
        self._parent_rows = 0  # rows of the parent drawn last, while nothing follows it

    @property
    def shown(self) -> int:
        """How many messages were printed so far."""
        return len(self._shown)

    def messages(self) -> list[dict[str, Any]]:
        status, text = http("GET", f"{self.sink}/_sandbox/messages?channel={quote(self.channel)}")
        if status != 200:
            return []
        found: list[dict[str, Any]] = json.loads(text)
        return [m for m in found if _ts(m.get("ts")) > self.since]

    def poll(self) -> None:
        """Show what changed since the last poll."""
        for message in self.messages():
            ts = str(message.get("ts"))
            if message.get("ephemeral"):
                self._once(ts, message, "(only you can see this)")
            elif self.parent_ts is None and message.get("thread_ts") in (None, ts):
                self.parent_ts = ts
                self._parent(message)
            elif ts == self.parent_ts:
                self._parent(message)
            elif message.get("thread_ts") == self.parent_ts:
                self._once(ts, message, "↳ reply in thread")
            else:
                self._once(ts, message, "in the channel")

    def _rows(self, lines: list[str]) -> int:
        width = max(20, shutil.get_terminal_size().columns)
        return sum(max(1, -(-len(line) // width)) for line in lines)

    def _parent(self, message: dict[str, Any]) -> None:
        lines = ["┌ #deploys · deployer", *(f"│ {line}" for line in render_message(message))]
        previous = self._shown.get(str(message["ts"]))
        if previous == lines:
            return
        self._shown[str(message["ts"])] = lines
        if previous is not None:
            if self.tty and self._parent_rows:
                # Nothing was printed below the parent: redraw it in place.
                self.out.write(f"\x1b[{self._parent_rows}F\x1b[J")
            else:
                lines = ["┌ #deploys · deployer (message updated)", *lines[1:]]
        self._write(lines)
        self._parent_rows = self._rows(lines)

    def _once(self, ts: str, message: dict[str, Any], label: str) -> None:
        if ts in self._shown:
            return
        lines = [f"  {label}", *(f"  │ {line}" for line in render_message(message))]
        self._shown[ts] = lines
        self._write(lines)
        self._parent_rows = 0

    def _write(self, lines: list[str]) -> None:
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()


# --- the demo -------------------------------------------------------------------------------


def _record(store: Any, requester: str, since: float) -> DeployRecord | None:
    for record in store.history("prod", 5):
        if record.requester == requester and record.created_at >= since:
            return record  # type: ignore[no-any-return]
    return None


def _wait_for_job(job: str, host: str, deadline: float) -> None:
    """Wait (bounded) until the job's latest execution ended: the worker said its last word."""
    from google.cloud import run_v2

    from deployer.adapters.google_clients import google_client

    jobs: Any = google_client(run_v2.JobsClient, host)
    try:
        while time.monotonic() < deadline:
            latest = jobs.get_job(name=job, timeout=HTTP_TIMEOUT).latest_created_execution
            if latest.name and latest.completion_time:
                return
            time.sleep(POLL_INTERVAL)
    finally:
        jobs.transport.close()


def run(timeout: float = 300.0, out: TextIO = sys.stdout) -> int:
    """The `deployer demo` command; its exit status."""
    from deployer_sandbox.harness import lifecycle
    from deployer_sandbox.harness.seed import DemoError

    deadline = time.monotonic() + timeout
    # SIGTERM ends the demo like Ctrl-C: through `finally`, so every child process ends too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    say = _printer(out)
    say("Starting the sandbox: a local Cloud Build, Cloud Run, Secret Manager and Slack,")
    say("and deploying this repository's HEAD as the demo service's first revision ...")
    started = time.monotonic()
    try:
        running = lifecycle.start(with_demo=True)
    except DemoError as error:
        say(f"demo: {error}")
        return 1
    try:
        say(f"Sandbox ready in {time.monotonic() - started:.1f} s.\n")
        return _demo(running, deadline, out)
    except KeyboardInterrupt:
        say("demo: interrupted")
        return 130
    finally:
        say("Stopping the sandbox ...")
        running.close()


def _printer(out: TextIO) -> Any:
    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    return say


def _demo(running: Any, deadline: float, out: TextIO) -> int:
    from deployer.store import open_store

    say = _printer(out)
    demo, front, sandbox = running.demo, running.front, running.sandbox
    secret = running.state["slack_signing_secret"]
    requester = f"slack:{demo.slack_user}"
    store = open_store(demo.store)
    view = ThreadView(sandbox.http.url, demo.slack_channel, out, since=time.time())
    sent = time.time()
    say(f"<@{demo.slack_user}> in #deploys:  /deploy prod")
    status, body = slash_command(
        front.url,
        secret,
        "prod",
        demo.slack_user,
        demo.slack_channel,
        sandbox.http.mint_response_url(channel=demo.slack_channel, user=demo.slack_user),
    )
    say(f"  (POST /slack/events answered {status} in time for Slack's 3 s)\n")
    if status != 200:
        say(f"demo: the front refused the command: {status} {body.strip()[:200]}")
        return 1
    record = None
    while time.monotonic() < deadline:
        view.poll()
        record = _record(store, requester, sent - 1)
        if record is not None and record.state.finished:
            break
        time.sleep(POLL_INTERVAL)
    else:
        say(f"demo: the deploy did not end in time (last state: {record and record.state})")
        return 1
    if record is None:
        say("demo: the front accepted /deploy prod but started no deploy")
        return 1
    _wait_for_job(
        front.job, sandbox.grpc_address, min(deadline, time.monotonic() + JOB_END_TIMEOUT)
    )
    view.poll()
    say("")
    _status(running, view, say)
    if record.state == State.SUCCEEDED:
        say(f"\ndemo: deploy {record.id} succeeded: {record.candidate_revision} serves 100 %.")
        return 0
    say(f"\ndemo: deploy {record.id} ended {record.state}: {record.error or 'see the thread'}")
    return 1


def _status(running: Any, view: ThreadView, say: Any) -> None:
    demo, sandbox = running.demo, running.sandbox
    say(f"<@{demo.slack_user}> in #deploys:  /deploy status")
    view.since = time.time()
    url = sandbox.http.mint_response_url(channel=demo.slack_channel, user=demo.slack_user)
    status, body = slash_command(
        running.front.url,
        running.state["slack_signing_secret"],
        "status",
        demo.slack_user,
        demo.slack_channel,
        url,
    )
    if status != 200:
        say(f"  the front answered {status}: {body.strip()[:200]}")
        return
    if body.strip():
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {"text": body}
        if isinstance(answer, dict) and (answer.get("blocks") or answer.get("text")):
            say("  (only you can see this)")
            for line in render_message(answer):
                say(f"  │ {line}")
            return
    # Answered through the response_url instead: wait for it to show up.
    waited = time.monotonic() + STATUS_WAIT
    before = view.shown
    while time.monotonic() < waited and view.shown == before:
        view.poll()
        time.sleep(POLL_INTERVAL)
