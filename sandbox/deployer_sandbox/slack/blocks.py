"""Block Kit as Slack checks it: a message's `blocks` refused with Slack's own `invalid_blocks`.

Slack validates `blocks` against its Block Kit schema and refuses the whole
message, naming every problem with a JSON pointer, twice: bare in `errors`,
prefixed with `[ERROR] ` in `response_metadata.messages`. A real answer to
`chat.postMessage` (github.com/incidentbot/incidentbot/issues/328):

    {"ok": false, "error": "invalid_blocks",
     "errors": ["no more than 5 items allowed [json-pointer:/blocks/2/accessory/options]"],
     "response_metadata": {"messages":
         ["[ERROR] no more than 5 items allowed [json-pointer:/blocks/2/accessory/options]"]}}

The wordings, each seen in a real answer:

    no more than N items allowed       adobe/spacecat-api-service#176 (/blocks/1/elements, 25)
    must be less than N+1 characters   activepieces/activepieces#11149 (/blocks/0/text/text, 3001)
    failed to match all allowed schemas  the same answer, for the text object of a section
    must be more than 0 characters     an empty field's text (/blocks/N/fields/M/text)
    missing required field: X          slackapi/java-slack-sdk#302 ("title [json-pointer:/view]")
    must provide an object / a string / an array  slackapi/java-slack-sdk#853
    unsupported type: X                slackapi/node-slack-sdk's own WebClient tests
                                       ("sections [json-pointer:/blocks/0/type]")
    must be a valid enum value         agents.sessions.setStatus's answer ([json-pointer:/status])
    must define either `text` or `fields`  slackapi/java-slack-sdk#1017 (quoted by Slack's seratch)

Blocks this module knows field by field (section, actions, context, header,
divider, and the button and confirm objects inside them) are checked rule by
rule, so each problem gets its own pointer. Every other block type Slack
documents is handed to slack_sdk's models (`Block.parse(...).to_dict()` runs
their validators and raises `SlackObjectFormationError`), and a refusal there
is answered at the block's pointer with Slack's generic "failed to match all
allowed schemas". slack_sdk does not refuse unknown types (it logs and returns
None), so types are checked here first. A response URL answers plain
`400 invalid_blocks`, without the detail (`slack.response_urls`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks.basic_components import ConfirmObject
from slack_sdk.models.blocks.block_elements import BlockElement, ButtonElement, RichTextElement
from slack_sdk.models.blocks.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    HeaderBlock,
    SectionBlock,
)

from deployer_sandbox.slack.workspace import SlackError

# "You can include up to 50 blocks in each message"
# (https://docs.slack.dev/reference/block-kit/blocks).
MAX_BLOCKS = 50
# Text objects: "The minimum length is 1 and maximum length is 3000 characters."
# (https://docs.slack.dev/reference/block-kit/composition-objects/text-object)
MAX_TEXT_OBJECT = 3000
# Section fields: "Maximum length for the text in each item is 2000 characters."
# (https://docs.slack.dev/reference/block-kit/blocks/section-block)
MAX_FIELD_TEXT = 2000
TEXT_TYPES = ("plain_text", "mrkdwn")
PLAIN = ("plain_text",)
# Button and confirm styles (button-element, confirmation-dialog-object pages).
STYLES = ("primary", "danger")

# Elements by where they may go. Section accessory: "button, checkboxes, date
# picker, image, multi-select menu, overflow menu, radio buttons, select menu,
# time picker, workflow button" (section-block page); actions: "buttons, select
# menus, overflow menus, or date pickers" plus those whose element pages list
# Actions among their block types (checkboxes, radio buttons, time picker,
# datetime picker, workflow button); context: "image elements and text
# objects" (context-block page).
_SELECTS = (
    "static_select",
    "external_select",
    "users_select",
    "conversations_select",
    "channels_select",
    "multi_static_select",
    "multi_external_select",
    "multi_users_select",
    "multi_conversations_select",
    "multi_channels_select",
)
_INTERACTIVE = (
    "button",
    "checkboxes",
    "datepicker",
    "overflow",
    "radio_buttons",
    "timepicker",
    "workflow_button",
    *_SELECTS,
)
ACCESSORY_TYPES = frozenset({*_INTERACTIVE, "image"})
ACTIONS_TYPES = frozenset({*_INTERACTIVE, "datetimepicker"})
CONTEXT_TYPES = frozenset({"image", *TEXT_TYPES})


def _subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


# Every block and element type Slack documents, as slack_sdk's models know them.
BLOCK_TYPES = frozenset(
    t for c in _subclasses(Block) if isinstance(t := getattr(c, "type", None), str)
)
ELEMENT_TYPES = frozenset(
    t
    for c in _subclasses(BlockElement)
    if not issubclass(c, RichTextElement) and isinstance(t := getattr(c, "type", None), str)
)
_SDK_REFUSALS = (SlackObjectFormationError, TypeError, ValueError, KeyError, AttributeError)


def check_blocks(blocks: list[Any]) -> None:
    """Raise Slack's `invalid_blocks` answer, every problem pointed at, when `blocks` break a rule."""
    found = _Problems()
    if len(blocks) > MAX_BLOCKS:
        found.add("/blocks", f"no more than {MAX_BLOCKS} items allowed")
    for index, block in enumerate(blocks):
        _block(block, f"/blocks/{index}", found)
    if found.items:
        with open("/tmp/refusals.log", "a") as log:  # TEMP
            log.write(repr(found.items) + " " + repr(blocks)[:2000] + "\n")
        raise SlackError(
            "invalid_blocks",
            errors=list(found.items),
            response_metadata={"messages": [f"[ERROR] {item}" for item in found.items]},
        )


class _Problems:
    """What is wrong, in Slack's words, each with its JSON pointer."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, pointer: str, message: str) -> None:
        self.items.append(f"{message} [json-pointer:{pointer}]")


def _object(value: Any, pointer: str, found: _Problems) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        found.add(pointer, "must provide an object")
        return None
    return value


def _typed(value: Any, pointer: str, found: _Problems) -> tuple[dict[str, Any], str] | None:
    """The object and its `type`, when it is an object with a string type."""
    obj = _object(value, pointer, found)
    if obj is None:
        return None
    if "type" not in obj:
        found.add(pointer, "missing required field: type")
        return None
    kind = obj["type"]
    if not isinstance(kind, str):
        found.add(f"{pointer}/type", "must provide a string")
        return None
    return obj, kind


def _string(obj: dict[str, Any], key: str, pointer: str, most: int, found: _Problems) -> None:
    """An optional string field of at most `most` characters."""
    if key not in obj:
        return
    value = obj[key]
    if not isinstance(value, str):
        found.add(f"{pointer}/{key}", "must provide a string")
    elif len(value) > most:
        found.add(f"{pointer}/{key}", f"must be less than {most + 1} characters")


def _text(value: Any, pointer: str, found: _Problems, kinds: tuple[str, ...], most: int) -> None:
    """A text object of one of `kinds`, its text 1 to `most` characters."""
    own = _Problems()
    typed = _typed(value, pointer, own)
    if typed is not None:
        obj, kind = typed
        if kind not in kinds:
            own.add(f"{pointer}/type", "must be a valid enum value")
        if "text" not in obj:
            own.add(pointer, "missing required field: text")
        elif not isinstance(obj["text"], str):
            own.add(f"{pointer}/text", "must provide a string")
        elif not obj["text"]:
            own.add(f"{pointer}/text", "must be more than 0 characters")
        elif len(obj["text"]) > most:
            own.add(f"{pointer}/text", f"must be less than {most + 1} characters")
    if own.items and len(kinds) > 1:
        # Where plain_text and mrkdwn are both allowed Slack first says the object
        # matched neither schema, then why (activepieces/activepieces#11149's answer:
        # "failed to match all allowed schemas [json-pointer:/blocks/0/text]",
        # "must be less than 3001 characters [json-pointer:/blocks/0/text/text]").
        found.add(pointer, "failed to match all allowed schemas")
    found.items.extend(own.items)


def _block(value: Any, pointer: str, found: _Problems) -> None:
    typed = _typed(value, pointer, found)
    if typed is None:
        return
    block, kind = typed
    if kind not in BLOCK_TYPES:
        found.add(f"{pointer}/type", f"unsupported type: {kind}")
        return
    # "Maximum length for this field is 255 characters." (block_id, every block page)
    _string(block, "block_id", pointer, Block.block_id_max_length, found)
    check = _BLOCK_CHECKS.get(kind)
    if check is not None:
        check(block, pointer, found)
        return
    _by_sdk_model(Block, block, pointer, found)


def _by_sdk_model(model: Any, value: dict[str, Any], pointer: str, found: _Problems) -> None:
    """Hold `value` to slack_sdk's model of its kind (`to_dict()` runs the model's checks)."""
    try:
        parsed = model.parse(value)
        if parsed is not None:
            parsed.to_dict()
    except _SDK_REFUSALS:
        found.add(pointer, "failed to match all allowed schemas")


def _section(block: dict[str, Any], pointer: str, found: _Problems) -> None:
    # https://docs.slack.dev/reference/block-kit/blocks/section-block: text "Minimum
    # length ... is 1 and maximum length is 3000 characters. This field is not
    # required if a valid array of fields objects is provided instead"; fields
    # "Maximum number of items is 10. Maximum length for the text in each item is
    # 2000 characters."
    if "text" not in block and "fields" not in block:
        found.add(f"{pointer}/type", "must define either `text` or `fields`")
    if "text" in block:
        _text(block["text"], f"{pointer}/text", found, TEXT_TYPES, SectionBlock.text_max_length)
    if "fields" in block:
        fields = block["fields"]
        if not isinstance(fields, list):
            found.add(f"{pointer}/fields", "must provide an array")
        else:
            if len(fields) > SectionBlock.fields_max_length:
                found.add(
                    f"{pointer}/fields",
                    f"no more than {SectionBlock.fields_max_length} items allowed",
                )
            for index, field in enumerate(fields):
                _text(field, f"{pointer}/fields/{index}", found, TEXT_TYPES, MAX_FIELD_TEXT)
    if "accessory" in block:
        _element(block["accessory"], f"{pointer}/accessory", ACCESSORY_TYPES, found)


def _actions(block: dict[str, Any], pointer: str, found: _Problems) -> None:
    # https://docs.slack.dev/reference/block-kit/blocks/actions-block: elements is
    # Required; "There is a maximum of 25 elements in each action block." A
    # button's action_id "Should be unique among all other action_ids in the
    # containing block" (button-element page).
    elements = _elements(block, pointer, ActionsBlock.elements_max_length, found)
    seen: set[str] = set()
    for index, element in enumerate(elements):
        _element(element, f"{pointer}/elements/{index}", ACTIONS_TYPES, found)
        action_id = element.get("action_id") if isinstance(element, dict) else None
        if isinstance(action_id, str):
            if action_id in seen:
                found.add(
                    f"{pointer}/elements/{index}/action_id",
                    f'`action_id` "{action_id}" already exists',
                )
            seen.add(action_id)


def _context(block: dict[str, Any], pointer: str, found: _Problems) -> None:
    # https://docs.slack.dev/reference/block-kit/blocks/context-block: elements is
    # Required, "An array of image elements and text objects. Maximum number of
    # items is 10."
    elements = _elements(block, pointer, ContextBlock.elements_max_length, found)
    for index, element in enumerate(elements):
        at = f"{pointer}/elements/{index}"
        kind = element.get("type") if isinstance(element, dict) else None
        if kind in TEXT_TYPES:
            _text(element, at, found, TEXT_TYPES, MAX_TEXT_OBJECT)
        else:
            _element(element, at, CONTEXT_TYPES, found)


def _header(block: dict[str, Any], pointer: str, found: _Problems) -> None:
    # https://docs.slack.dev/reference/block-kit/blocks/header-block: text is
    # Required, "The text for the block, in the form of a plain_text text object.
    # Maximum length for the text in this field is 150 characters."
    if "text" not in block:
        found.add(pointer, "missing required field: text")
    else:
        _text(block["text"], f"{pointer}/text", found, PLAIN, HeaderBlock.text_max_length)


def _divider(block: dict[str, Any], pointer: str, found: _Problems) -> None:
    """A divider has nothing but its type and block_id."""


_BLOCK_CHECKS = {
    "section": _section,
    "actions": _actions,
    "context": _context,
    "header": _header,
    "divider": _divider,
}


def _elements(block: dict[str, Any], pointer: str, most: int, found: _Problems) -> list[Any]:
    """A block's required `elements`, at most `most` of them (refusals recorded)."""
    if "elements" not in block:
        found.add(pointer, "missing required field: elements")
        return []
    elements = block["elements"]
    if not isinstance(elements, list):
        found.add(f"{pointer}/elements", "must provide an array")
        return []
    if len(elements) > most:
        found.add(f"{pointer}/elements", f"no more than {most} items allowed")
    return elements


def _element(value: Any, pointer: str, allowed: frozenset[str], found: _Problems) -> None:
    typed = _typed(value, pointer, found)
    if typed is None:
        return
    element, kind = typed
    if kind not in allowed or (kind not in ELEMENT_TYPES and kind not in TEXT_TYPES):
        found.add(f"{pointer}/type", f"unsupported type: {kind}")
        return
    if kind == "button":
        _button(element, pointer, found)
        return
    _by_sdk_model(BlockElement, element, pointer, found)


def _button(button: dict[str, Any], pointer: str, found: _Problems) -> None:
    # https://docs.slack.dev/reference/block-kit/block-elements/button-element: text
    # is Required, "Can only be of type: plain_text ... Maximum length for the text
    # in this field is 75 characters"; action_id is Optional, "Maximum length is
    # 255 characters" (Slack generates one when it is left out, as
    # @slack/types' `Actionable.action_id?` says too); url at most 3000; value at
    # most 2000; style primary or danger; confirm a confirmation dialog object.
    if "text" not in button:
        found.add(pointer, "missing required field: text")
    else:
        _text(button["text"], f"{pointer}/text", found, PLAIN, ButtonElement.text_max_length)
    _string(button, "action_id", pointer, ButtonElement.action_id_max_length, found)
    _string(button, "url", pointer, ButtonElement.url_max_length, found)
    _string(button, "value", pointer, ButtonElement.value_max_length, found)
    if "style" in button and button["style"] not in STYLES:
        found.add(f"{pointer}/style", "must be a valid enum value")
    if "confirm" in button:
        _confirm(button["confirm"], f"{pointer}/confirm", found)


def _confirm(value: Any, pointer: str, found: _Problems) -> None:
    # https://docs.slack.dev/reference/block-kit/composition-objects/confirmation-dialog-object:
    # title, text, confirm and deny are all Required; title a plain_text object of
    # at most 100 characters, text at most 300, confirm and deny at most 30 each.
    # The field table calls text plain_text, yet the page's own example (a button's
    # confirm) uses mrkdwn there, so both are accepted for text.
    dialog = _object(value, pointer, found)
    if dialog is None:
        return
    parts = (
        ("title", PLAIN, ConfirmObject.title_max_length),
        ("text", TEXT_TYPES, ConfirmObject.text_max_length),
        ("confirm", PLAIN, ConfirmObject.confirm_max_length),
        ("deny", PLAIN, ConfirmObject.deny_max_length),
    )
    for key, kinds, most in parts:
        if key not in dialog:
            found.add(pointer, f"missing required field: {key}")
        else:
            _text(dialog[key], f"{pointer}/{key}", found, kinds, most)
    if "style" in dialog and dialog["style"] not in STYLES:
        found.add(f"{pointer}/style", "must be a valid enum value")
