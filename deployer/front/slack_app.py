"""The slack-bolt app: `/deploy` and the thread's three buttons, answered before the response.

bolt's Cloud Functions adapter allows no lazy listeners, so the app runs with
`process_before_response=True`: each listener finishes its work (all bounded),
then bolt sends the ack. The raw request was verified before it got here
(`deployer.front.verify`); bolt checks the signature again, which is cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import Ack, App, BoltRequest

from deployer.adapters.slack_client import slack_web_client
from deployer.front.commands import BUTTONS, GroupMembers, SlackCommands
from deployer.front.context import FrontContext
from deployer.front.messages import SlackMessage
from deployer.front.ports import Chat

log = logging.getLogger(__name__)

COMMAND = "/deploy"


@dataclass(frozen=True)
class SlackAnswer:
    status: int
    body: str
    headers: dict[str, Sequence[str]] = field(default_factory=dict)


def reply_via(chat: Chat, response_url: str, message: SlackMessage) -> None:
    """Post an ephemeral answer to a response URL; failures are logged, not raised."""
    if not response_url:
        return
    try:
        chat.respond(response_url, message)
    except Exception as error:
        log.warning("could not answer through the response URL: %s", error)


class SlackFront:
    """A bolt `App` wired to one front context."""

    def __init__(self, context: FrontContext) -> None:
        self.context = context
        self.commands = SlackCommands(context, GroupMembers(context.chat.usergroup_members))
        # bolt wants a WebClient of its own: the same token, URL and bounds as the chat's.
        self.app = App(
            signing_secret=context.settings.slack_signing_secret,
            client=slack_web_client(
                context.settings.slack_bot_token, context.settings.slack_api_url
            ),
            process_before_response=True,
            token_verification_enabled=False,
        )
        self.app.command(COMMAND)(self._on_command)
        for action_id in BUTTONS:
            self.app.action(action_id)(self._on_button)

    def handle(self, body: bytes, headers: Mapping[str, str]) -> SlackAnswer:
        """Dispatch one verified request through bolt."""
        request = BoltRequest(
            body=body.decode("utf-8"),
            headers={key.lower(): [value] for key, value in headers.items()},
        )
        response = self.app.dispatch(request)
        return SlackAnswer(response.status, response.body, dict(response.headers))

    def _on_command(self, ack: Ack, command: dict[str, Any]) -> None:
        message = self.commands.command(
            str(command.get("text") or ""), str(command["user_id"]), str(command["channel_id"])
        )
        if message is None:
            ack()
        else:
            ack(text=message.text, blocks=message.blocks, response_type="ephemeral")

    def _on_button(self, ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        ack()
        click = action.get("action_ts") or body.get("trigger_id") or ""
        # A click delivered twice (a retry, a replay) acts once.
        if not click or not self.context.store.claim(f"slack-action:{click}"):
            return
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id", ""
        )
        message = self.commands.button(
            str(action.get("action_id")),
            str(action.get("value") or ""),
            str(body["user"]["id"]),
            str(channel),
        )
        if message is not None:
            reply_via(self.context.chat, str(body.get("response_url") or ""), message)
