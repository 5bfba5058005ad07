"""The slack-bolt app: `/deploy` and the thread's three buttons, answered before the response.

bolt's Cloud Functions adapter allows no lazy listeners, so the app runs with
`process_before_response=True`: each listener finishes its work (all bounded),
then bolt sends the ack. The raw request was verified before it got here
(`deployer.front.verify`), and its fields checked (`deployer.front.payloads`);
bolt checks the signature again, which is cheap. The listeners check the fields
once more through the same functions: one that finds them malformed returns a
400 `BoltResponse` without acking (bolt answers what a listener returns), never
raises (bolt would answer 500).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import Ack, App, BoltRequest, BoltResponse
from slack_bolt.authorization import AuthorizeResult

from deployer.adapters.slack_client import slack_web_client
from deployer.front import payloads
from deployer.front.access import GroupMembers
from deployer.front.approval_messages import PROMOTE_BUTTON
from deployer.front.commands import ACTIONS, SlackCommands
from deployer.front.context import FrontContext
from deployer.front.messages import SlackMessage
from deployer.front.ports import Chat
from deployer.front.verify import BAD_FORM

log = logging.getLogger(__name__)

COMMAND = "/deploy"

_building = threading.Lock()


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


def _bad_request(malformed: payloads.Malformed) -> BoltResponse:
    log.warning("refused a Slack request in bolt: %s", malformed.reason)
    return BoltResponse(status=BAD_FORM.status, body=BAD_FORM.body)


class SlackFront:
    """A bolt `App` wired to one front context."""

    def __init__(self, context: FrontContext) -> None:
        self.context = context
        self.commands = SlackCommands(context, GroupMembers(context.chat.usergroup_members))
        token = context.settings.slack_bot_token
        # bolt wants a WebClient of its own; no listener calls it, and it never retries.
        # Its default single-workspace authorization calls `auth.test` inside the first
        # request of every process (slack_bolt/middleware/authorization/
        # single_team_authorization.py): a cold start would wait on Slack, a 429 for the
        # whole Retry-After. Authorizing from the request itself costs no call.
        self.app = App(
            signing_secret=context.settings.slack_signing_secret,
            client=slack_web_client(
                token, context.settings.slack_api_url, retries=False, timeout=1
            ),
            authorize=lambda enterprise_id, team_id, user_id: AuthorizeResult(
                enterprise_id=enterprise_id, team_id=team_id, user_id=user_id, bot_token=token
            ),
            process_before_response=True,
        )
        self.app.command(COMMAND)(self._on_command)
        for action_id in ACTIONS:
            self.app.action(action_id)(self._on_button)
        self.app.action(re.compile("^" + re.escape(PROMOTE_BUTTON)))(self._on_button)

    def handle(self, body: bytes, headers: Mapping[str, str]) -> SlackAnswer:
        """Dispatch one verified request through bolt."""
        try:
            request = BoltRequest(
                body=body.decode("utf-8"),
                headers={key.lower(): [value] for key, value in headers.items()},
            )
        except (ValueError, TypeError, AttributeError, KeyError, IndexError) as error:
            # bolt reads team, enterprise and authorizations while building the request,
            # outside `dispatch`'s error handling: a field of an odd type must not be a 500.
            log.warning("bolt could not read a signed Slack request: %r", error)
            return SlackAnswer(BAD_FORM.status, BAD_FORM.body)
        response = self.app.dispatch(request)
        return SlackAnswer(response.status, response.body, dict(response.headers))

    def _on_command(self, ack: Ack, command: dict[str, Any]) -> BoltResponse | None:
        parsed = payloads.slash_command(command)
        if isinstance(parsed, payloads.Malformed):
            return _bad_request(parsed)
        message = self.commands.command(
            parsed.text,
            parsed.user_id,
            parsed.channel_id,
            parsed.trigger_id,
            parsed.response_url,
            parsed.team_id,
        )
        if message is None:
            ack()
        else:
            ack(text=message.text, blocks=message.blocks, response_type="ephemeral")
        return None

    def _on_button(
        self, ack: Ack, body: dict[str, Any], action: dict[str, Any]
    ) -> BoltResponse | None:
        click = payloads.button_click(body, action)
        if isinstance(click, payloads.Malformed):
            return _bad_request(click)
        ack()
        # A click delivered twice (a retry, a replay) acts once.
        if not self.context.store.claim(f"slack-action:{click.action_ts}"):
            return None
        message = self.commands.button(
            click.action_id, click.value, click.user_id, click.channel_id, click.team_id
        )
        if message is not None:
            reply_via(self.context.chat, click.response_url, message)
        return None


def slack_front(context: FrontContext) -> SlackFront:
    """The bolt app of `context`, built once (bolt is heavy: a front that only ever hears
    from GitHub never builds it)."""
    with _building:
        if context.slack is None:
            context.slack = SlackFront(context)
        return context.slack
