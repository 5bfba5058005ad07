"""Block Kit as Slack checks it, through the real slack_sdk over HTTP.

Each rule is met as a Slack user meets it: `chat.postMessage` raises `SlackApiError`
with `invalid_blocks`, `errors` and `response_metadata.messages` naming the block by
its JSON pointer, and nothing is posted. The sink here is the test's own, without
rate limits and without retries, so every answer is seen exactly as sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.harness.http_server import SandboxHttp
from deployer_sandbox.slack.rate_limits import SlackRateLimits
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook import WebhookClient

TOKEN = "xoxb-sandbox-blocks"
CHANNEL = "C0BLOCKS01"
USER = "U0BLOCKS01"


@pytest.fixture
def slack() -> Iterator[SandboxHttp]:
    """A Slack sink of this module's own: one channel, one user, no rate limits."""
    http = SandboxHttp(Faults(), rate_limits=SlackRateLimits(0))
    http.sink.add_channel(CHANNEL, "blocks")
    http.sink.add_user(USER, "ada")
    http.start()
    yield http
    http.close()


@pytest.fixture
def web(slack: SandboxHttp) -> WebClient:
    return WebClient(token=TOKEN, base_url=f"{slack.url}/api/", retry_handlers=[])


def posted(slack: SandboxHttp) -> list[dict[str, Any]]:
    answer = httpx.get(f"{slack.url}/_sandbox/messages", params={"channel": CHANNEL})
    result: list[dict[str, Any]] = answer.json()
    return result


def refusal(call: Callable[[], Any]) -> list[str]:
    """Slack's `[ERROR] ...` messages for a call refused with invalid_blocks."""
    with pytest.raises(SlackApiError) as raised:
        call()
    answer = raised.value.response
    assert (answer.status_code, answer["ok"], answer["error"]) == (200, False, "invalid_blocks")
    messages: list[str] = answer["response_metadata"]["messages"]
    # The same problems, bare, in `errors` (as in Slack's own answers).
    assert answer["errors"] == [m.removeprefix("[ERROR] ") for m in messages]
    return messages


def section(text: str, kind: str = "mrkdwn") -> dict[str, Any]:
    return {"type": "section", "text": {"type": kind, "text": text}}


def plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def button(label: str = "Roll back", **fields: Any) -> dict[str, Any]:
    return {"type": "button", "text": plain(label), "action_id": "rollback", **fields}


def confirm(**overrides: Any) -> dict[str, Any]:
    dialog: dict[str, Any] = {
        "title": plain("Roll back prod?"),
        "text": {"type": "mrkdwn", "text": "Traffic goes back to *r-41*."},
        "confirm": plain("Roll back"),
        "deny": plain("Keep"),
    }
    dialog.update(overrides)
    return {key: value for key, value in dialog.items() if value is not None}


def rejects(web: WebClient, blocks: list[Any]) -> list[str]:
    return refusal(lambda: web.chat_postMessage(channel=CHANNEL, text="fallback", blocks=blocks))


# -- what Slack accepts -----------------------------------------------------------


def test_a_message_within_every_limit_is_posted_as_sent(slack: SandboxHttp, web: WebClient) -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain("h" * 150)},
        {
            "type": "section",
            "block_id": "b" * 255,
            "text": {"type": "mrkdwn", "text": "s" * 3000},
            "fields": [{"type": "plain_text", "text": "f" * 2000} for _ in range(10)],
            "accessory": button(confirm=confirm(), style="danger"),
        },
        {"type": "divider"},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": plain("x" * 75),
                    "action_id": f"{n:0>255}",
                    "value": "v" * 2000,
                }
                for n in range(25)
            ],
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"} for _ in range(10)]},
        {"type": "image", "image_url": "https://example.com/a.png", "alt_text": "a chart"},
        *[{"type": "divider"} for _ in range(44)],
    ]
    assert len(blocks) == 50

    answer = web.chat_postMessage(channel=CHANNEL, text="fallback", blocks=blocks)

    assert answer["ok"] and answer["message"]["blocks"] == blocks
    assert posted(slack)[0]["blocks"] == blocks


def test_fields_alone_make_a_section_and_a_button_may_leave_out_its_action_id(
    web: WebClient,
) -> None:
    # Section text "is not required if a valid array of fields objects is provided";
    # a button's action_id is Optional (docs.slack.dev, section block and button element).
    blocks = [
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Env*\nprod"}]},
        {"type": "actions", "elements": [{"type": "button", "text": plain("Open")}]},
    ]

    assert web.chat_postMessage(channel=CHANNEL, text="fallback", blocks=blocks)["ok"]


# -- what Slack refuses, and where it points ------------------------------------------


def test_more_than_fifty_blocks_is_refused_and_nothing_is_posted(
    slack: SandboxHttp, web: WebClient
) -> None:
    blocks = [{"type": "divider"}] * 51

    assert rejects(web, blocks) == ["[ERROR] no more than 50 items allowed [json-pointer:/blocks]"]
    assert posted(slack) == []


def test_a_section_text_over_3000_characters_fails_both_text_schemas(web: WebClient) -> None:
    # As Slack answered activepieces/activepieces#11149.
    assert rejects(web, [section("s" * 3001)]) == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/blocks/0/text]",
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
    ]


def test_more_than_ten_fields_or_a_field_over_2000_characters_is_refused(web: WebClient) -> None:
    many = {"type": "section", "fields": [plain("f")] * 11}
    long = {"type": "section", "fields": [plain("f"), plain("f" * 2001)]}

    assert rejects(web, [many]) == [
        "[ERROR] no more than 10 items allowed [json-pointer:/blocks/0/fields]"
    ]
    assert rejects(web, [section("ok"), long]) == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/blocks/1/fields/1]",
        "[ERROR] must be less than 2001 characters [json-pointer:/blocks/1/fields/1/text]",
    ]


def test_more_than_25_elements_in_an_actions_block_is_refused(web: WebClient) -> None:
    elements = [button(action_id=f"b{n}") for n in range(26)]

    assert rejects(web, [section("pick"), {"type": "actions", "elements": elements}]) == [
        "[ERROR] no more than 25 items allowed [json-pointer:/blocks/1/elements]"
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("text", plain("x" * 76), "must be less than 76 characters [json-pointer:{at}/text/text]"),
        ("value", "v" * 2001, "must be less than 2001 characters [json-pointer:{at}/value]"),
        ("action_id", "a" * 256, "must be less than 256 characters [json-pointer:{at}/action_id]"),
        ("url", "https://x.test/" + "u" * 2986, "must be less than 3001 characters [json-pointer:{at}/url]"),
        ("style", "warning", "must be a valid enum value [json-pointer:{at}/style]"),
    ],
)  # fmt: skip
def test_a_button_field_over_its_limit_is_refused_at_the_button(
    web: WebClient, field: str, value: Any, message: str
) -> None:
    element = {**button(), field: value}

    assert rejects(web, [{"type": "actions", "elements": [button(action_id="a"), element]}]) == [
        "[ERROR] " + message.format(at="/blocks/0/elements/1")
    ]
    assert rejects(web, [{"type": "section", "text": plain("t"), "accessory": element}]) == [
        "[ERROR] " + message.format(at="/blocks/0/accessory")
    ]


def test_more_than_ten_context_elements_is_refused(web: WebClient) -> None:
    context = {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}

    assert rejects(web, [context]) == [
        "[ERROR] no more than 10 items allowed [json-pointer:/blocks/0/elements]"
    ]


def test_text_objects_are_plain_text_or_mrkdwn_and_never_empty(web: WebClient) -> None:
    assert rejects(web, [section("x", kind="markdown")]) == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/blocks/0/text]",
        "[ERROR] must be a valid enum value [json-pointer:/blocks/0/text/type]",
    ]
    assert rejects(web, [{"type": "section", "fields": [plain("a"), plain("")]}]) == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/blocks/0/fields/1]",
        "[ERROR] must be more than 0 characters [json-pointer:/blocks/0/fields/1/text]",
    ]
    assert rejects(web, [{"type": "context", "elements": [{"type": "mrkdwn", "text": ""}]}]) == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/blocks/0/elements/0]",
        "[ERROR] must be more than 0 characters [json-pointer:/blocks/0/elements/0/text]",
    ]


def test_a_button_label_must_be_plain_text(web: WebClient) -> None:
    element = {**button(), "text": {"type": "mrkdwn", "text": "*Roll back*"}}

    assert rejects(web, [{"type": "actions", "elements": [element]}]) == [
        "[ERROR] must be a valid enum value [json-pointer:/blocks/0/elements/0/text/type]"
    ]


def test_unknown_block_and_element_types_are_unsupported(web: WebClient) -> None:
    # Slack's wording, from slackapi/node-slack-sdk's own tests:
    # "[ERROR] unsupported type: sections [json-pointer:/blocks/0/type]".
    assert rejects(web, [{"type": "sections", "text": plain("x")}]) == [
        "[ERROR] unsupported type: sections [json-pointer:/blocks/0/type]"
    ]
    assert rejects(web, [{"type": "actions", "elements": [{**button(), "type": "buton"}]}]) == [
        "[ERROR] unsupported type: buton [json-pointer:/blocks/0/elements/0/type]"
    ]
    # A real element where its block does not take it is refused the same way.
    picture = {"type": "image", "image_url": "https://x.test/a.png", "alt_text": "a"}
    assert rejects(web, [{"type": "actions", "elements": [picture]}]) == [
        "[ERROR] unsupported type: image [json-pointer:/blocks/0/elements/0/type]"
    ]


def test_missing_required_fields_are_named(web: WebClient) -> None:
    assert rejects(web, [{"text": plain("no type")}]) == [
        "[ERROR] missing required field: type [json-pointer:/blocks/0]"
    ]
    assert rejects(web, [{"type": "section", "block_id": "s1"}]) == [
        "[ERROR] must define either `text` or `fields` [json-pointer:/blocks/0/type]"
    ]
    assert rejects(web, [{"type": "actions", "elements": [{"type": "button", "value": "v"}]}]) == [
        "[ERROR] missing required field: text [json-pointer:/blocks/0/elements/0]"
    ]
    assert rejects(web, [{"type": "actions"}]) == [
        "[ERROR] missing required field: elements [json-pointer:/blocks/0]"
    ]
    assert rejects(web, ["divider"]) == ["[ERROR] must provide an object [json-pointer:/blocks/0]"]


@pytest.mark.parametrize("part", ["title", "text", "confirm", "deny"])
def test_a_confirm_dialog_needs_title_text_confirm_and_deny(web: WebClient, part: str) -> None:
    element = button(confirm=confirm(**{part: None}))

    assert rejects(web, [{"type": "actions", "elements": [element]}]) == [
        f"[ERROR] missing required field: {part} [json-pointer:/blocks/0/elements/0/confirm]"
    ]


def test_a_confirm_dialog_keeps_to_its_limits(web: WebClient) -> None:
    element = button(confirm=confirm(title=plain("t" * 101), deny=plain("d" * 31)))

    assert rejects(web, [{"type": "actions", "elements": [element]}]) == [
        "[ERROR] must be less than 101 characters [json-pointer:/blocks/0/elements/0/confirm/title/text]",
        "[ERROR] must be less than 31 characters [json-pointer:/blocks/0/elements/0/confirm/deny/text]",
    ]  # fmt: skip


def test_two_buttons_of_one_block_may_not_share_an_action_id(web: WebClient) -> None:
    elements = [button(value="1"), button(value="2")]

    assert rejects(web, [{"type": "actions", "elements": elements}]) == [
        '[ERROR] `action_id` "rollback" already exists '
        "[json-pointer:/blocks/0/elements/1/action_id]"
    ]


def test_other_block_types_are_held_to_slack_sdks_models(web: WebClient) -> None:
    # An image block without its required alt_text (docs.slack.dev, image block).
    image = {"type": "image", "image_url": "https://x.test/a.png"}

    assert rejects(web, [section("chart"), image]) == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/blocks/1]"
    ]


def test_every_problem_of_a_message_is_listed_in_order(web: WebClient) -> None:
    blocks = [
        section("s" * 3001),
        {"type": "nope"},
        {"type": "actions", "elements": [{"type": "button", "text": plain("x" * 76)}]},
    ]

    assert rejects(web, blocks) == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/blocks/0/text]",
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]",
        "[ERROR] unsupported type: nope [json-pointer:/blocks/1/type]",
        "[ERROR] must be less than 76 characters [json-pointer:/blocks/2/elements/0/text/text]",
    ]


# -- every way blocks come in ----------------------------------------------------------


def test_form_encoded_blocks_are_checked_too(slack: SandboxHttp, web: WebClient) -> None:
    form = {"channel": CHANNEL, "text": "form", "blocks": json.dumps([section("s" * 3001)])}

    messages = refusal(lambda: web.api_call("chat.postMessage", data=form))

    assert (
        messages[-1]
        == "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"
    )
    assert posted(slack) == []


def test_an_update_with_refused_blocks_changes_nothing(slack: SandboxHttp, web: WebClient) -> None:
    ts = web.chat_postMessage(channel=CHANNEL, text="v1", blocks=[section("v1")])["ts"]

    messages = refusal(
        lambda: web.chat_update(
            channel=CHANNEL, ts=ts, text="v2", blocks=[{"type": "divider"}] * 51
        )
    )

    assert messages == ["[ERROR] no more than 50 items allowed [json-pointer:/blocks]"]
    [message] = posted(slack)
    assert (message["text"], message["blocks"], message["edits"]) == ("v1", [section("v1")], [])


def test_an_ephemeral_message_is_held_to_the_same_rules(slack: SandboxHttp, web: WebClient) -> None:
    messages = refusal(
        lambda: web.chat_postEphemeral(
            channel=CHANNEL, user=USER, text="only you", blocks=[section("", kind="plain_text")]
        )
    )

    assert messages == [
        "[ERROR] failed to match all allowed schemas [json-pointer:/blocks/0/text]",
        "[ERROR] must be more than 0 characters [json-pointer:/blocks/0/text/text]",
    ]
    assert posted(slack) == []


def test_a_response_url_answers_400_invalid_blocks_without_detail(slack: SandboxHttp) -> None:
    url = slack.mint_response_url(channel=CHANNEL, user=USER)

    answer = WebhookClient(url).send(text="status", blocks=[{"type": "sections"}])

    assert (answer.status_code, answer.body) == (400, "invalid_blocks")
    assert posted(slack) == []
    # The URL was not spent: a good answer still goes through.
    assert WebhookClient(url).send(text="status", blocks=[section("ok")]).status_code == 200


def test_text_over_40000_characters_is_still_msg_too_long(web: WebClient) -> None:
    with pytest.raises(SlackApiError) as raised:
        web.chat_postMessage(channel=CHANNEL, text="t" * 40_001, blocks=[section("ok")])

    assert raised.value.response["error"] == "msg_too_long"
