"""Signed but malformed input: a 4xx with a generic body, never a 500; nothing deployed, nothing posted.

Properties (hypothesis) over the three entry points, every request correctly signed:

    /deploy forms    a required field missing, empty, misshapen, huge or
                     non-ASCII, or any field repeated                        400 "bad request"
                     any form at all, never from the allowed person          2xx or 4xx
    block_actions    arbitrary JSON for user, channel, container, actions
                     (or type), at least one of them unusable                400 "bad request"
                     arbitrary JSON for any of them                          2xx or 4xx
    GitHub release   arbitrary JSON for release, repository, sender,
                     action, tag_name, draft, prerelease, at least one of
                     them not what a deploy needs                            2xx or 4xx

and the parsers (`deployer.front.payloads`) never raise, whatever they get.
After every example: no new record in the store, and nothing new in the test's
channel unless the request was a valid one (answered 200). The strategies build
on requests that would deploy (the allowed person, the allowed channel, the
configured repository), so a check that let one through would start a deploy.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from deployer.front import payloads
from tests.engine_world import ENVIRONMENT, World, close_world, make_world, shared_world_fixture  # noqa: F401
from tests.front_requests import (
    Answer,
    WireRequest,
    block_action,
    form_fields,
    github_event,
    interactive_payload,
    release_payload,
    signed_form,
    signed_payload,
    slack_headers,
    slash_command,
)
from tests.front_world import FrontWorld, in_process, make_front

REPOSITORY = "acme/content-api"
BAD_REQUEST = (400, "bad request\n")
# Slack's shapes, as Slack documents them; the front may be stricter, never looser.
USER = re.compile(r"[UW][A-Z0-9]{2,}")
CHANNEL = re.compile(r"[CGD][A-Z0-9]{2,}")
ACTION_TS = re.compile(r"[0-9]+(\.[0-9]+)?")
SLASH_FIELDS = (
    "token",
    "team_id",
    "team_domain",
    "channel_id",
    "channel_name",
    "user_id",
    "user_name",
    "command",
    "text",
    "api_app_id",
    "is_enterprise_install",
    "response_url",
    "trigger_id",
)

HTTP = settings(
    max_examples=40,
    deadline=None,
    database=None,  # no example database: every run draws afresh
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PURE = settings(max_examples=150, deadline=None, database=None)


# --- the world: one for the module, a front (channel, people, secrets) per test ---


@pytest.fixture
def front(shared_world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    """A front whose allowed person, channel and repository would deploy `prod` at once."""
    made = make_front(shared_world, gcp)
    shared_world.settings["releases"] = {
        "repositories": [REPOSITORY],
        "environment": ENVIRONMENT,
        "channel": made.channel,
    }
    shared_world.reconfigure()
    with in_process(made, repo_root) as ready:
        builds = shared_world.build_ids()
        yield ready
        ready.settle(quiet=0.3)
        assert shared_world.build_ids() == builds, "a build started"


def _snapshot(front: FrontWorld) -> tuple[int, int, int]:
    """Records of the environment, messages in the channel, Slack calls naming the channel."""
    sink = front.sandbox.http.sink
    calls = [c for c in sink.calls() if front.channel in str(c["params"].get("channel", ""))]
    return len(front.records()), len(sink.messages(front.channel)), len(calls)


def _send(front: FrontWorld, request: WireRequest, *, valid_may_post: bool = False) -> Answer:
    """Send; whatever the answer, no 5xx and no deploy; no Slack post unless answered 200."""
    before = _snapshot(front)
    answer = front.send(request)
    if currently_in_test_context():
        event(f"answered {answer.status}")  # pytest --hypothesis-show-statistics
    assert 200 <= answer.status < 500, (answer.status, answer.text)
    records, messages, calls = _snapshot(front)
    assert records == before[0], "a deploy was recorded"
    if answer.status != 200 or not valid_may_post:
        assert (messages, calls) == before[1:], "something was posted to Slack"
    return answer


# --- strategies ---

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
MISSING = object()  # the key is left out altogether
KEEP = object()  # the value the valid request had


def _near(key: str) -> st.SearchStrategy[Any]:
    """An object with `key` holding anything, or anything at all (absent included)."""
    return st.just(MISSING) | json_values | st.fixed_dictionaries({key: json_values})


def _misshapen(pattern: re.Pattern[str]) -> st.SearchStrategy[str]:
    """Text that is not `pattern`: lower case, punctuation, non-ASCII, a trailing newline..."""
    return (
        st.sampled_from(["u0abc", "U", "U0 ABC", "U0ABC\n", " U0ABC", "Ü0ABC", "U0ABC;id", "-"])
        | st.text(min_size=1, max_size=40)
    ).filter(lambda text: not pattern.fullmatch(text))


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    if value is MISSING:
        data.pop(key, None)
    elif value is not KEEP:
        data[key] = value


# --- /deploy forms ---


def _deploy_form(front: FrontWorld, text: str) -> list[tuple[str, str]]:
    """The fields of `/deploy text` from the allowed person in the allowed channel."""
    url = front.sandbox.http.mint_response_url(channel=front.channel, user=front.user)
    request = slash_command(
        front.signing_secret, text, user=front.user, channel=front.channel, response_url=url
    )
    return form_fields(request)


Mutation = Callable[[list[tuple[str, str]]], list[tuple[str, str]]]


def _replace(key: str, value: str | None) -> Mutation:
    def mutate(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
        kept = [(k, v) for k, v in fields if k != key]
        return kept if value is None else [*kept, (key, value)]

    return mutate


def _repeat(index: int, value: str) -> Mutation:
    def mutate(fields: list[tuple[str, str]]) -> list[tuple[str, str]]:
        key = fields[index % len(fields)][0]
        return [*fields, (key, value)]

    return mutate


REQUIRED = {"user_id": USER, "channel_id": CHANNEL, "trigger_id": re.compile(r"[A-Za-z0-9._-]+")}

breaking_mutations: st.SearchStrategy[Mutation] = st.one_of(
    # missing, or empty
    st.builds(_replace, st.sampled_from([*REQUIRED, "command"]), st.sampled_from([None, ""])),
    # misshapen (non-ASCII, spaces, lower case, newlines...)
    st.sampled_from(sorted(REQUIRED)).flatmap(
        lambda key: st.builds(_replace, st.just(key), _misshapen(REQUIRED[key]))
    ),
    # huge
    st.builds(_replace, st.just("text"), st.integers(4001, 50_000).map(lambda n: "prod " * n)),
    st.builds(
        _replace,
        st.sampled_from(["user_id", "channel_id", "trigger_id", "response_url"]),
        st.integers(300, 5_000).map(lambda n: "U" + "A" * n),
    ),
    # a name given twice, with the same value or another
    st.builds(_repeat, st.integers(0, 100), st.text(max_size=20)),
)
# Other fields that change nothing by themselves (never ssl_check, payload or a known name).
noise_fields = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=12).filter(
            lambda k: k not in SLASH_FIELDS and k != "ssl_check" and "payload" not in k
        ),
        st.text(max_size=40).filter(lambda v: "payload" not in v),
    ),
    max_size=3,
)


@HTTP
@given(
    text=st.sampled_from(["prod", "prod main", "lock prod", "rollback prod"]),
    noise=noise_fields,
    mutations=st.lists(breaking_mutations, min_size=1, max_size=3),
)
def test_a_broken_slash_command_is_refused_and_starts_nothing(
    front: FrontWorld, text: str, noise: list[tuple[str, str]], mutations: list[Mutation]
) -> None:
    fields = _deploy_form(front, text) + noise
    for mutate in mutations:
        fields = mutate(fields)
    answer = _send(front, signed_form(front.signing_secret, fields))
    assert (answer.status, answer.text) == BAD_REQUEST


@HTTP
@given(data=st.data())
def test_any_signed_form_gets_no_5xx_and_starts_nothing(
    front: FrontWorld, data: st.DataObject
) -> None:
    # Someone not on the allow-list (a valid `/deploy prod` from the allowed person would
    # rightly deploy): each field kept, dropped or replaced, and fields of any name added.
    url = front.sandbox.http.mint_response_url(channel=front.channel, user=front.other)
    text = data.draw(st.sampled_from(["prod", "prod main", "help", "history prod", "lock prod"]))
    request = slash_command(
        front.signing_secret, text, user=front.other, channel=front.channel, response_url=url
    )
    values = st.sampled_from(
        ["", "/deploy", "prod", "status", front.other, front.channel]
    ) | st.text(max_size=60)
    fields: list[tuple[str, str]] = []
    for name, value in form_fields(request):
        fate = data.draw(st.sampled_from(["keep", "keep", "keep", "drop", "replace"]))
        if fate != "drop":
            fields.append((name, value if fate == "keep" else data.draw(values)))
    names = st.sampled_from(SLASH_FIELDS) | st.text(max_size=12)
    fields += data.draw(st.lists(st.tuples(names, values), max_size=3))
    fields = [(k, front.other if v == front.user else v) for k, v in fields]
    _send(front, signed_form(front.signing_secret, fields))


@HTTP
@given(body=st.binary(max_size=3000))
def test_any_signed_body_gets_a_4xx(front: FrontWorld, body: bytes) -> None:
    request = WireRequest("POST", "/slack/events", slack_headers(front.signing_secret, body), body)
    answer = _send(front, request)
    assert 400 <= answer.status < 500


# --- block_actions ---


def _click(front: FrontWorld, action_id: str = "deploy_retry") -> dict[str, Any]:
    """A click on a thread button by the allowed person in the allowed channel, as a payload."""
    url = front.sandbox.http.mint_response_url(
        channel=front.channel, user=front.user, message_ts="1700000000.000100"
    )
    request = block_action(
        front.signing_secret,
        action_id,
        "d-000000-unknown",
        user=front.user,
        channel=front.channel,
        message_ts="1700000000.000100",
        response_url=url,
        action_ts=f"{time.time():.6f}",
    )
    return interactive_payload(request)


def _names(value: Any, key: str, pattern: re.Pattern[str]) -> bool:
    """Whether `value` is an object whose `key` could pass for a Slack ID."""
    found = value.get(key) if isinstance(value, dict) else None
    return isinstance(found, str) and pattern.fullmatch(found) is not None


def _not_object(value: Any) -> bool:
    return value is not MISSING and value is not None and not isinstance(value, dict)


Edit = Callable[[dict[str, Any]], None]


def _edit(key: str) -> Callable[[Any], Edit]:
    return lambda value: lambda payload: _set(payload, key, value)


def _edit_action(field: tuple[str, Any]) -> Edit:
    key, value = field
    return lambda payload: _set(payload["actions"][0], key, value)


def _edit_places(pair: tuple[Any, Any]) -> Edit:
    channel, container = pair

    def edit(payload: dict[str, Any]) -> None:
        _set(payload, "channel", channel)
        _set(payload, "container", container)

    return edit


unusable_user = _near("id").filter(lambda v: not _names(v, "id", USER))
unusable_actions = (st.just(MISSING) | json_values).filter(
    lambda v: not (isinstance(v, list) and v and isinstance(v[0], dict))
)
unusable_action_field = st.one_of(
    st.tuples(
        st.just("action_id"),
        st.just(MISSING) | st.just("") | json_values.filter(lambda v: not isinstance(v, str)),
    ),
    st.tuples(
        st.just("value"),
        json_values.filter(lambda v: v is not None and not isinstance(v, str))
        | st.just("d" * 2001),
    ),
    st.tuples(
        st.just("action_ts"),
        (st.just(MISSING) | json_values).filter(
            lambda v: not (isinstance(v, str) and ACTION_TS.fullmatch(v))
        ),
    ),
)
# Where the click happened: no usable channel anywhere, or one of the two not an object.
places = _near("id")
boxes = _near("channel_id")
unusable_places = st.one_of(
    st.tuples(places, boxes).filter(
        lambda p: not _names(p[0], "id", CHANNEL) and not _names(p[1], "channel_id", CHANNEL)
    ),
    st.tuples(st.just(KEEP), json_values.filter(_not_object)),
    st.tuples(json_values.filter(_not_object), st.just(KEEP)),
)
# Each leaves the click unusable by itself; none makes an earlier one usable again.
unusable_click_edits: st.SearchStrategy[Edit] = st.one_of(
    unusable_user.map(_edit("user")),
    unusable_actions.map(_edit("actions")),
    unusable_places.map(_edit_places),
    (st.just(MISSING) | json_values).filter(lambda v: v != "block_actions").map(_edit("type")),
)


@HTTP
@given(
    action_field=st.none() | unusable_action_field,
    edits=st.lists(unusable_click_edits, max_size=3),
)
def test_a_broken_click_is_refused_and_starts_nothing(
    front: FrontWorld, action_field: tuple[str, Any] | None, edits: list[Edit]
) -> None:
    if action_field is None and not edits:
        edits = [_edit("user")(MISSING)]
    payload = _click(front)
    if action_field is not None:
        _edit_action(action_field)(payload)  # the action the click had, before any other edit
    for edit in edits:
        edit(payload)
    answer = _send(front, signed_payload(front.signing_secret, payload))
    assert (answer.status, answer.text) == BAD_REQUEST


@HTTP
@given(
    user=st.just(KEEP) | _near("id"),
    channel=st.just(KEEP) | _near("id"),
    container=st.just(KEEP) | _near("channel_id"),
    actions=st.just(KEEP)
    | json_values
    | st.lists(st.fixed_dictionaries({"action_id": json_values, "action_ts": json_values})),
    team=st.just(KEEP) | json_values,
    enterprise=st.just(KEEP) | json_values,
)
def test_any_click_gets_no_5xx_and_starts_nothing(
    front: FrontWorld,
    user: Any,
    channel: Any,
    container: Any,
    actions: Any,
    team: Any,
    enterprise: Any,
) -> None:
    payload = _click(front)
    edits = {
        "user": user,
        "channel": channel,
        "container": container,
        "actions": actions,
        "team": team,
        "enterprise": enterprise,
    }
    for key, value in edits.items():
        _set(payload, key, value)
    # A click that is still valid (the deploy it names is unknown) is answered in the channel.
    _send(front, signed_payload(front.signing_secret, payload), valid_may_post=True)


@HTTP
@given(payload=json_values)
def test_any_json_payload_is_refused(front: FrontWorld, payload: Any) -> None:
    answer = _send(front, signed_payload(front.signing_secret, payload))
    assert (answer.status, answer.text) == BAD_REQUEST


# --- GitHub releases ---


def _release(front: FrontWorld, payload: dict[str, Any]) -> Answer:
    secret = front.env["GITHUB_WEBHOOK_SECRET"]
    return _send(front, github_event(secret, "release", payload))


def _edit_release(key: str) -> Callable[[Any], Edit]:
    def edit(value: Any) -> Edit:
        def apply(payload: dict[str, Any]) -> None:
            if isinstance(payload.get("release"), dict):
                _set(payload["release"], key, value)

        return apply

    return edit


hostile_tags = st.sampled_from(
    [
        "",
        "-x",
        "--upload-pack=id",
        "v1..v2",
        "v1 x",
        "v1\n",
        "v1;id",
        "$(id)",
        "t" * 129,
        "v1\u00e9",
    ]
) | st.text(max_size=30).filter(lambda t: not re.fullmatch(r"[A-Za-z0-9._/+-]{1,128}", t))
# Each keeps the release from deploying by itself.
undeployable_edits: st.SearchStrategy[Edit] = st.one_of(
    st.sampled_from(["published", "created", "edited", "prereleased", "deleted"]).map(
        _edit("action")
    ),
    st.just({"full_name": "evil/fork"}).map(_edit("repository")),
    st.sampled_from([True]).map(_edit_release("draft")),
    st.sampled_from([True]).map(_edit_release("prerelease")),
    (st.just(MISSING) | json_values).filter(lambda v: v != "released").map(_edit("action")),
    (st.just(MISSING) | json_values)
    .filter(lambda v: not (isinstance(v, dict) and v.get("draft") is False))
    .map(_edit("release")),
    (st.just(MISSING) | json_values | st.just([REPOSITORY]) | _near("full_name"))
    .filter(lambda v: not (isinstance(v, dict) and v.get("full_name") == REPOSITORY))
    .map(_edit("repository")),
    (st.just(MISSING) | json_values.filter(lambda v: not isinstance(v, str)) | hostile_tags).map(
        _edit_release("tag_name")
    ),
    (st.just(MISSING) | json_values).filter(lambda v: v is not False).map(_edit_release("draft")),
    (st.just(MISSING) | json_values)
    .filter(lambda v: v is not False)
    .map(_edit_release("prerelease")),
)
# Each may or may not be refused; alone they would let the release deploy.
harmless_edits: st.SearchStrategy[Edit] = st.one_of(
    st.sampled_from([MISSING, None, {}, {"login": "octocat"}]).map(_edit("sender")),
    (st.just(MISSING) | json_values | _near("login")).map(_edit("sender")),
    (st.just(MISSING) | json_values).map(_edit_release("html_url")),
)


@HTTP
@given(
    breaking=st.lists(undeployable_edits, min_size=1, max_size=3),
    harmless=st.lists(harmless_edits, max_size=2),
)
def test_a_release_that_cannot_deploy_gets_no_5xx_and_starts_nothing(
    front: FrontWorld, breaking: list[Edit], harmless: list[Edit]
) -> None:
    payload = release_payload(REPOSITORY, "v9.9.9")
    # The release object's own fields first: replacing `release` afterwards must still break it.
    for edit in [*harmless, *breaking]:
        edit(payload)
    _release(front, payload)


# --- the parsers alone: whatever they are given, a result, never an exception ---


@PURE
@given(st.dictionaries(st.sampled_from(SLASH_FIELDS) | st.text(max_size=10), json_values))
def test_slash_command_parses_anything(command: dict[str, Any]) -> None:
    parsed = payloads.slash_command(command)
    if isinstance(parsed, payloads.SlashCommand):
        assert USER.fullmatch(parsed.user_id) and CHANNEL.fullmatch(parsed.channel_id)
        assert len(parsed.text) <= payloads.TEXT_LIMIT and parsed.trigger_id
    else:
        assert isinstance(parsed, payloads.Malformed)


@PURE
@given(
    st.dictionaries(
        st.sampled_from(["type", "user", "channel", "container", "actions", "trigger_id"]),
        json_values | st.just("block_actions"),
    ),
    st.dictionaries(st.sampled_from(["action_id", "value", "action_ts"]), json_values),
)
def test_button_click_parses_anything(body: dict[str, Any], action: dict[str, Any]) -> None:
    for parsed in (payloads.button_click(body, action), payloads.block_actions(body)):
        assert isinstance(parsed, payloads.ButtonClick | payloads.Malformed)
        if isinstance(parsed, payloads.ButtonClick):
            assert USER.fullmatch(parsed.user_id) and parsed.action_ts


@PURE
@given(st.dictionaries(st.sampled_from(["action", "release", "repository", "sender"]), json_values))
def test_release_parses_anything(payload: dict[str, Any]) -> None:
    parsed = payloads.release(payload)
    assert isinstance(parsed, payloads.Release | payloads.Malformed)


@PURE
@given(st.binary(max_size=500) | st.text(max_size=200).map(str.encode))
def test_slack_form_parses_anything(body: bytes) -> None:
    assert isinstance(
        payloads.slack_form(body),
        payloads.SlashCommand | payloads.ButtonClick | payloads.SslCheck | payloads.Malformed,
    )


# --- the cases seen answering 500 ---


@pytest.mark.parametrize("missing", ["user_id", "channel_id"])
def test_a_slash_command_without_user_or_channel_is_refused(
    front: FrontWorld, missing: str
) -> None:
    fields = [(k, v) for k, v in _deploy_form(front, "prod main") if k != missing]
    answer = _send(front, signed_form(front.signing_secret, fields))
    assert (answer.status, answer.text) == BAD_REQUEST


def test_block_actions_without_user_is_refused(front: FrontWorld) -> None:
    payload = _click(front)
    del payload["user"]
    answer = _send(front, signed_payload(front.signing_secret, payload))
    assert (answer.status, answer.text) == BAD_REQUEST


def test_a_release_whose_repository_is_a_list_is_refused(front: FrontWorld) -> None:
    payload = release_payload(REPOSITORY, "v9.9.9")
    payload["repository"] = [REPOSITORY]
    answer = _release(front, payload)
    assert (answer.status, answer.text) == BAD_REQUEST


def test_a_signed_ssl_check_is_answered_200_and_does_nothing(front: FrontWorld) -> None:
    fields = [("ssl_check", "1"), ("token", "legacy-verification-token-unused")]
    answer = _send(front, signed_form(front.signing_secret, fields))
    assert (answer.status, answer.text) == (200, "")
