"""Reading the arguments of Slack Web API methods, as Slack reads them from a form or JSON."""

from __future__ import annotations

import json
from typing import Any

from deployer_sandbox.slack.blocks import check_blocks
from deployer_sandbox.slack.workspace import SlackError

MAX_TEXT = 40_000  # chat.postMessage truncates beyond this; we refuse instead

Params = dict[str, Any]


def flag(value: Any) -> bool:
    """A Slack boolean argument: JSON true, or "1"/"true" from a form."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def text_param(params: Params, key: str) -> str | None:
    """A string argument, None when absent or empty."""
    value = params.get(key)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def blocks_param(value: Any) -> list[Any] | None:
    """Blocks as a list, whether sent as a JSON string (forms) or a list (JSON bodies).

    Not JSON, or not a list: `invalid_blocks_format`; a list Block Kit refuses:
    `invalid_blocks` with Slack's pointers (`slack.blocks`).
    """
    blocks: list[Any] | None = _json_argument(value, list, "invalid_blocks_format")
    if blocks is not None:
        check_blocks(blocks)
    return blocks


def _json_argument(value: Any, kind: type, error: str) -> Any:
    """A JSON argument, sent as a string (forms) or as itself (JSON bodies); None when absent;
    `error` when it is not JSON or not a `kind`."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError(error) from None
    if not isinstance(value, kind):
        raise SlackError(error)
    return value


def metadata_param(value: Any) -> dict[str, Any] | None:
    """Message metadata, a JSON string (forms) or an object (JSON bodies); None when absent.

    chat.postMessage's errors (https://docs.slack.dev/reference/methods/chat.postMessage):
    `invalid_metadata_format` "Invalid metadata format provided" when it is not a
    JSON object; `invalid_metadata_schema` "Invalid metadata schema provided" when
    it lacks the "JSON object with event_type and event_payload fields" the
    argument is documented as (event_type a string, event_payload an object, as in
    https://api.slack.com/metadata/publishing). The naming guidelines for
    event_type are recommendations: "none of these guidelines are enforced
    programmatically" (https://api.slack.com/reference/metadata).
    """
    value = _json_argument(value, dict, "invalid_metadata_format")
    if value is None:
        return None
    event_type, payload = value.get("event_type"), value.get("event_payload")
    if not isinstance(event_type, str) or not event_type or not isinstance(payload, dict):
        raise SlackError("invalid_metadata_schema")
    return {"event_type": event_type, "event_payload": json.loads(json.dumps(payload))}


def content(params: Params) -> tuple[str, list[Any] | None]:
    """A message's text and blocks; `no_text` when it has neither (nor attachments)."""
    text = text_param(params, "text")
    blocks = blocks_param(params.get("blocks"))
    if text is None and blocks is None and not params.get("attachments"):
        raise SlackError("no_text")
    if text is not None and len(text) > MAX_TEXT:
        raise SlackError("msg_too_long")
    return text or "", blocks
