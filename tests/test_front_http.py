"""The webhook app over real HTTP (`deployer serve`) and each `main.py` target."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import functions_framework
import httpx
import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.pipeline.record import State
from tests.engine_world import World, world_fixture  # noqa: F401
from tests.front_requests import github_event, send_flask, slash_command
from tests.front_world import FrontWorld, in_process, make_front, served
from tests.slack_thread_text import assert_matches


@pytest.fixture
def front(world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    with served(make_front(world, gcp), repo_root) as ready:
        yield ready


def test_a_deploy_over_http_tells_the_same_thread(front: FrontWorld) -> None:
    url = front.env["_SERVE_URL"]
    assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}

    front.world.commit("a feature")
    started = time.monotonic()
    answer = front.command("prod")
    assert answer.status == 200
    assert time.monotonic() - started < 3
    record = front.newest()
    assert answer.json()["text"].startswith(f"Started deploy {record.id}")
    assert record.requester == f"slack:{front.user}"
    assert front.finished(record.id).state == State.SUCCEEDED
    assert_matches(front.thread_text(), "threads/success")


def test_routes_sizes_and_a_clean_stop(front: FrontWorld) -> None:
    url = front.env["_SERVE_URL"]
    assert httpx.get(f"{url}/nowhere", timeout=5).status_code == 404
    wrong = httpx.get(f"{url}/slack/events", timeout=5)
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")
    assert httpx.post(f"{url}/healthz", timeout=5).status_code == 405

    # No Content-Length (chunked): the read stops past 1 MiB all the same.
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"a" * 64 * 1024

    big = httpx.post(
        f"{url}/slack/events",
        content=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert big.status_code == 413
    stale = slash_command(
        front.signing_secret,
        "prod",
        user=front.user,
        channel=front.channel,
        timestamp=int(time.time()) - 600,
    )
    assert front.send(stale).status == 401
    assert front.records() == [front.world.first]

    process = front.served
    assert process is not None
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0


def test_each_main_target(front: FrontWorld, repo_root: Path) -> None:
    # The single-purpose targets answer on any path, as separate Cloud Functions do.
    with in_process(front, repo_root):
        main = str(repo_root / "main.py")
        slack = functions_framework.create_app("slack_events", main).test_client()
        request = slash_command("wrong", "prod", user=front.user, channel=front.channel)
        assert send_flask(slack, request).status == 401
        answer = send_flask(
            slack,
            slash_command(front.signing_secret, "help", user=front.user, channel=front.channel),
        )
        assert answer.status == 200 and "How to use" in answer.json()["text"]

        github = functions_framework.create_app("github_webhook", main).test_client()
        ping = github_event(front.env["GITHUB_WEBHOOK_SECRET"], "ping", {"zen": "Keep it simple."})
        assert send_flask(github, ping).status == 200
        forged = github_event("wrong", "ping", {"zen": "x"})
        assert send_flask(github, forged).status == 401
