"""Bad input to `POST /slack/events`: a 4xx with a generic body, or an ephemeral reply; nothing started.

"Nothing started" is checked where it would show: no new record in the store, no
new build in the sandbox, no Slack message (nor response_url post) in the channel.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from tests.engine_world import World, close_world, make_world, shared_world_fixture  # noqa: F401
from tests.front_requests import FORM, WireRequest, block_action, slack_headers, slash_command
from tests.front_world import FrontWorld, in_process, make_front

GENERIC = {"invalid request signature\n", "unsupported content type\n", "bad request\n"}


@pytest.fixture
def front(shared_world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    with in_process(make_front(shared_world, gcp), repo_root) as ready:
        before = (len(ready.records()), shared_world.build_ids())
        yield ready
        ready.settle(quiet=0.3)
        assert (len(ready.records()), shared_world.build_ids()) == before, "something started"
        assert [m for m in ready.messages() if not m.get("response_url")] == []


def signed(front: FrontWorld, text: str = "prod", **kwargs: object) -> WireRequest:
    return slash_command(
        front.signing_secret, text, user=front.user, channel=front.channel, **kwargs
    )  # type: ignore[arg-type]


def _unsigned(front: FrontWorld) -> WireRequest:
    request = signed(front)
    headers = {k: v for k, v in request.headers.items() if k != "X-Slack-Signature"}
    return replace(request, headers=headers)


def _wrong_secret(front: FrontWorld) -> WireRequest:
    return slash_command("not-the-secret", "prod", user=front.user, channel=front.channel)


def _no_timestamp(front: FrontWorld) -> WireRequest:
    request = signed(front)
    headers = {k: v for k, v in request.headers.items() if k != "X-Slack-Request-Timestamp"}
    return replace(request, headers=headers)


def _old(front: FrontWorld) -> WireRequest:
    return signed(front, timestamp=int(time.time()) - 301)


def _future(front: FrontWorld) -> WireRequest:
    return signed(front, timestamp=int(time.time()) + 301)


def _re_encoded(front: FrontWorld) -> WireRequest:
    # Same form, spaces as `+` instead of `%20`: the bytes Slack signed are gone.
    request = signed(front, text="prod main")
    assert b"%20" in request.body
    return replace(request, body=request.body.replace(b"%20", b"+"))


def _json_typed(front: FrontWorld) -> WireRequest:
    body = json.dumps({"command": "/deploy", "text": "prod", "user_id": front.user}).encode()
    headers = {**slack_headers(front.signing_secret, body), "Content-Type": "application/json"}
    return WireRequest("POST", "/slack/events", headers, body)


def _json_as_form(front: FrontWorld) -> WireRequest:
    body = json.dumps({"command": "/deploy", "text": "prod", "user_id": front.user}).encode()
    return WireRequest("POST", "/slack/events", slack_headers(front.signing_secret, body), body)


def _empty_form(front: FrontWorld) -> WireRequest:
    body = b"team_id=T0SANDBOX1&text=prod"
    return WireRequest("POST", "/slack/events", slack_headers(front.signing_secret, body), body)


def _oversized(front: FrontWorld) -> WireRequest:
    body = b"text=" + b"a" * (1024 * 1024)
    return WireRequest("POST", "/slack/events", slack_headers(front.signing_secret, body), body)


REFUSED: dict[str, tuple[Callable[[FrontWorld], WireRequest], int]] = {
    "missing signature": (_unsigned, 401),
    "wrong signature": (_wrong_secret, 401),
    "missing timestamp": (_no_timestamp, 401),
    "timestamp 301 s old": (_old, 401),
    "timestamp 301 s ahead": (_future, 401),
    "body re-encoded after signing": (_re_encoded, 401),
    "JSON content type": (_json_typed, 415),
    "JSON body sent as a form": (_json_as_form, 400),
    "form without command or payload": (_empty_form, 400),
    "body over 1 MiB": (_oversized, 413),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_with_a_generic_4xx(front: FrontWorld, case: str) -> None:
    build, status = REFUSED[case]
    answer = front.send(build(front))
    assert answer.status == status
    assert answer.text in GENERIC | {"request too large\n"}
    assert front.signing_secret not in answer.text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("frobnicate", "I don't know the environment `frobnicate`"),
        ("prod; id", "I don't know the environment `prod;`"),
        ("prod;id", "I don't know the environment `prod;id`"),
        ("PROD", "I don't know the environment `PROD`"),
        ("\u0440rod", "I don't know the environment `'\u0440rod'`"),
        ("prod $(id)", "A ref is a branch, tag or commit"),
        ("prod --upload-pack=evil", "A ref is a branch, tag or commit"),
        ("rollback prod ../x", "A revision name is lower-case letters"),
    ],
)
def test_bad_arguments_get_an_ephemeral_reply(front: FrontWorld, text: str, says: str) -> None:
    answer = front.send(signed(front, text))
    assert answer.status == 200
    reply = answer.json()
    assert reply["response_type"] == "ephemeral"
    shown = reply["blocks"][0]["text"]["text"]
    assert says in shown, shown


def test_an_unknown_slash_command_is_not_handled(front: FrontWorld) -> None:
    answer = front.send(signed(front, "prod", command="/shipit"))
    assert answer.status == 404


def test_a_missing_signing_secret_refuses_everything(
    front: FrontWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    answer = front.send(signed(front))
    assert (answer.status, answer.text) == (503, "not configured\n")


def test_a_retried_button_click_is_acked_and_ignored(front: FrontWorld) -> None:
    request = block_action(
        front.signing_secret,
        "deploy_retry",
        "d-unknown-000000",
        user=front.user,
        channel=front.channel,
        message_ts="1700000000.000100",
        retry_num=1,
    )
    answer = front.send(request)
    assert (answer.status, answer.text) == (200, "")


def test_the_wrong_method_and_path(front: FrontWorld) -> None:
    get = WireRequest("GET", "/slack/events", {"Content-Type": FORM}, b"")
    assert front.send(get).status == 405
    assert front.send(replace(get, path="/slack/event")).status == 404
