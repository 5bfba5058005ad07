"""The chat front over one engine world: signed requests in, the Slack workspace out.

    FrontWorld
    ├── world        tests/engine_world.py: repo, config, secrets, store, a first deploy
    ├── env          what the front reads (sandbox addresses, secrets, config, store, inline dispatch)
    ├── send         a WireRequest -> Answer: through functions-framework on main.py
    │                (`in_process`), or over real HTTP to a `deployer serve` subprocess (`served`)
    └── channel, user, other     a channel and people of its own in the shared sandbox sink

Nothing is mocked: bolt, slack_sdk, the Google clients and the pipeline all run
for real against the sandbox.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import functions_framework
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.pipeline.record import DeployRecord
from deployer.store.protocol import Store
from tests.engine_world import ENVIRONMENT, World, thread_sent
from tests.front_requests import (
    Answer,
    WireRequest,
    block_action,
    send_flask,
    send_http,
    slash_command,
)
from tests.slack_thread_text import normalise, read_messages, render_channel

BOT_TOKEN = "xoxb-front-tests"
Sender = Callable[[WireRequest], Answer]


def unique(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:9].upper()


@dataclass
class FrontWorld:
    world: World
    sandbox: Sandbox
    env: dict[str, str]
    channel: str
    user: str  # allowed to deploy
    other: str  # not on the allow-list
    send: Sender = field(init=False)
    signing_secret: str = ""
    ephemeral: list[str] = field(default_factory=list)  # ack bodies, rendered
    served: subprocess.Popen[str] | None = None
    people: dict[str, str] = field(default_factory=dict)  # Slack user id -> stable name
    job: str = ""  # the worker job deploys are dispatched to, when not inline

    # --- requests ---

    def command(
        self, text: str, user: str | None = None, channel: str | None = None, **kwargs: Any
    ) -> Answer:
        """`/deploy text` as Slack sends it; an ack body with text is kept as an ephemeral."""
        who = user or self.user
        where = channel or self.channel
        url = self.sandbox.http.mint_response_url(channel=where, user=who)
        answer = self.send(
            slash_command(
                self.signing_secret, text, user=who, channel=where, response_url=url, **kwargs
            )
        )
        if answer.status == 200 and answer.text.strip():
            self.ephemeral.append(f"ack to {who}: {json.loads(answer.text).get('text', '')}")
        return answer

    def click(
        self, action_id: str, record: DeployRecord, user: str | None = None, **kwargs: Any
    ) -> Answer:
        """A click on `record`'s thread button `action_id`."""
        who = user or self.user
        assert record.slack_ts is not None
        url = self.sandbox.http.mint_response_url(
            channel=self.channel, user=who, message_ts=record.slack_ts
        )
        return self.send(
            block_action(
                self.signing_secret,
                action_id,
                record.id,
                user=who,
                channel=self.channel,
                message_ts=record.slack_ts,
                response_url=url,
                **kwargs,
            )
        )

    # --- the store ---

    def records(self) -> list[DeployRecord]:
        """Every record of the environment, newest first (the first deploy included)."""
        return self.world.store().history(ENVIRONMENT, 1000)

    def newest(self) -> DeployRecord:
        return self.records()[0]

    def wait(
        self,
        check: Callable[[DeployRecord], bool],
        deploy_id: str,
        timeout: float = 60,
        store: Store | None = None,
    ) -> DeployRecord:
        store = store or self.world.store()
        deadline = time.monotonic() + timeout
        while True:
            record = store.get(deploy_id)
            if record is not None and check(record):
                return record
            assert time.monotonic() < deadline, f"{deploy_id} never got there: {record}"
            time.sleep(0.1)

    def finished(
        self, deploy_id: str, timeout: float = 60, store: Store | None = None
    ) -> DeployRecord:
        """The record once it ended, its outbox sent everything, and its thread stopped changing."""
        store = store or self.world.store()
        record = self.wait(
            lambda r: r.state.finished and thread_sent(store, deploy_id), deploy_id, timeout, store
        )
        self.settle()
        return record

    def posted(self, deploy_id: str, timeout: float = 30) -> str:
        """The ts of the deploy's thread parent, once a worker (or the sweep) posted it."""
        deadline = time.monotonic() + timeout
        while True:
            box = self.world.store().outbox_read(deploy_id)
            ts = json.loads(box.body)["ts"] if box else None
            if ts:
                return str(ts)
            assert time.monotonic() < deadline, f"the thread of {deploy_id} was never posted"
            time.sleep(0.1)

    def settle(self, quiet: float = 0.6, timeout: float = 10) -> None:
        """Wait until the channel has seen no new Slack call for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last = self._calls()
        still = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.15)
            now = self._calls()
            if now != last:
                last, still = now, time.monotonic()
            elif time.monotonic() - still >= quiet:
                return

    def _calls(self) -> int:
        return len(self.sandbox.http.sink.calls())

    # --- what Slack shows ---

    def messages(self) -> list[dict[str, Any]]:
        return read_messages(self.sandbox.http.url, self.channel)

    def thread_text(self) -> str:
        """Every thread of the channel, then what each person was told ephemerally."""
        messages = self.messages()
        replies = [
            f"ephemeral to {m['user_target']}: {m['text']}"
            for m in messages
            if m.get("ephemeral") or m.get("response_url")
        ]
        parts = [render_channel(messages, self.channel) or "(no thread)\n"]
        notes = [*self.ephemeral, *replies]
        if notes:
            parts.append(normalise("\n".join(notes) + "\n"))
        text = "\n".join(parts).replace(self.channel, "CHANNEL")
        for person, name in self.people.items():
            text = text.replace(person, name)
        return text


def front_env(world: World, sandbox: Sandbox, signing_secret: str) -> dict[str, str]:
    """The variables the front reads, pointing at the sandbox and the world."""
    return {
        "DEPLOYER_GCP_EMULATOR_HOST": sandbox.grpc_address,
        "SLACK_API_URL": f"{sandbox.http.url}/api/",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": signing_secret,
        "GITHUB_WEBHOOK_SECRET": secrets.token_hex(16),
        "DEPLOYER_CONFIG": str(world.config_path),
        "DEPLOYER_STORE": world.store_url,
        "DEPLOYER_DISPATCH": "inline",
    }


def make_front(world: World, sandbox: Sandbox) -> FrontWorld:
    """A front world: a channel and two people of its own, the allow-list naming them."""
    channel, user, other = unique("C"), unique("U"), unique("U")
    sink = sandbox.http.sink
    sink.add_channel(channel, f"deploys-{channel.lower()}")
    sink.add_user(user, "allowed")
    sink.add_user(other, "stranger")
    world.reconfigure(environment={"allow": {"slack_users": [user], "slack_channels": [channel]}})
    secret = secrets.token_hex(16)
    front = FrontWorld(world, sandbox, front_env(world, sandbox, secret), channel, user, other)
    front.signing_secret = secret
    front.people = {user: "USER", other: "OTHER"}
    return front


@contextmanager
def in_process(front: FrontWorld, repo_root: Path) -> Iterator[FrontWorld]:
    """Requests through `functions_framework.create_app("deployer_http", "main.py")`."""
    os.environ.update(front.env)
    app = functions_framework.create_app("deployer_http", str(repo_root / "main.py"))
    client = app.test_client()
    front.send = lambda request: send_flask(client, request)
    yield front


@contextmanager
def served(front: FrontWorld, repo_root: Path, timeout: float = 20) -> Iterator[FrontWorld]:
    """Requests over real HTTP to `deployer serve --port 0`, a subprocess; SIGTERM at the end."""
    log = (front.world.root / "serve.log").open("w", encoding="utf-8")
    process = subprocess.Popen(
        [sys.executable, "-m", "deployer.cli", "serve", "--port", "0"],
        cwd=repo_root,
        env={**os.environ, **front.env},
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    front.served = process
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, f"deployer serve said {line!r}"
        url = line.rsplit(" ", 1)[-1].strip()
        front.send = lambda request: send_http(url, request, timeout=timeout)
        front.env["_SERVE_URL"] = url
        yield front
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
            log.close()
