"""Slack's Web API and response URLs behind the front's `Chat` port.

Each call is bounded by the timeout and retry handlers the Slack client is
built with; whatever goes wrong comes out as a
`ChatError`, so the front never sees a slack_sdk type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError, SlackRequestError
from slack_sdk.webhook import WebhookClient

from deployer.adapters.slack_client import slack_web_client
from deployer.front.ports import BotIdentity, ChannelView, ChatError, ChatUnsure, SlackMessage

HISTORY_LIMIT = 100  # messages looked through for a parent that may have been posted
RESPONSE_URL_TIMEOUT = 1  # seconds; it runs inside a request, which must answer within 3

T = TypeVar("T")


def _outage(error: Exception) -> bool:
    """True when Slack itself did not answer usefully (network, 429 or 5xx after retries)."""
    if isinstance(error, SlackApiError):
        status = getattr(error.response, "status_code", 200)
        return isinstance(status, int) and (status == 429 or status >= 500)
    return True


def _retry_after(error: Exception) -> float | None:
    """The seconds a 429's `Retry-After` header asks for, if it says."""
    if not isinstance(error, SlackApiError):
        return None
    headers = getattr(error.response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            text = value[0] if isinstance(value, list) else value
            try:
                return max(0.0, float(text))
            except (TypeError, ValueError):
                return None
    return None


def _calling(call: Callable[[], T]) -> T:
    """`call()`, with slack_sdk's and the network's failures turned into `ChatError`."""
    try:
        return call()
    except (SlackClientError, OSError) as error:
        code = error.response.get("error") if isinstance(error, SlackApiError) else None
        raise ChatError(
            str(error), code if isinstance(code, str) else "", _outage(error), _retry_after(error)
        ) from error


class SlackChat:
    """`Chat` over one `WebClient` (default: SLACK_BOT_TOKEN at SLACK_API_URL)."""

    def __init__(self, client: WebClient | None = None) -> None:
        self.client = client or slack_web_client()

    def post(
        self,
        channel: str,
        message: SlackMessage,
        thread_ts: str | None = None,
        metadata: dict[str, object] | None = None,
    ) -> str | None:
        kwargs: dict[str, Any] = message.to_kwargs()
        if thread_ts is not None:
            kwargs["thread_ts"] = thread_ts
        if metadata is not None:
            kwargs["metadata"] = metadata
        answer = _calling(lambda: self.client.chat_postMessage(channel=channel, **kwargs))
        ts = answer.get("ts")
        return ts if isinstance(ts, str) else None

    def find_posted(self, channel: str, event_type: str, key: str, value: str) -> str | None:
        # The last hundred top-level messages are plenty: a parent is looked for right
        # after a post that may or may not have landed (api.slack.com/methods/
        # conversations.history: `include_all_metadata`; needs channels:history or
        # groups:history).
        answer = _calling(
            lambda: self.client.conversations_history(
                channel=channel, limit=HISTORY_LIMIT, include_all_metadata=True
            )
        )
        for found in answer.get("messages") or []:
            meta = found.get("metadata") if isinstance(found, dict) else None
            if not isinstance(meta, dict) or meta.get("event_type") != event_type:
                continue
            payload = meta.get("event_payload")
            if isinstance(payload, dict) and payload.get(key) == value:
                ts = found.get("ts")
                return ts if isinstance(ts, str) else None
        return None

    def update(self, channel: str, ts: str, message: SlackMessage) -> None:
        _calling(lambda: self.client.chat_update(channel=channel, ts=ts, **message.to_kwargs()))

    def permalink(self, channel: str, ts: str) -> str:
        answer = _calling(lambda: self.client.chat_getPermalink(channel=channel, message_ts=ts))
        return str(answer.get("permalink") or "")

    def channel_info(self, channel: str) -> ChannelView:
        answer = _calling(lambda: self.client.conversations_info(channel=channel))
        found = answer.get("channel")
        # Slack lists a token's scopes in this header on every Web API answer.
        said = next((v for k, v in answer.headers.items() if k.lower() == "x-oauth-scopes"), None)
        if isinstance(said, list):  # slack_sdk keeps some headers as lists
            said = ",".join(said)
        scopes = None if said is None else frozenset(filter(None, str(said).split(",")))
        return ChannelView(dict(found) if isinstance(found, dict) else {}, scopes)

    def identity(self) -> BotIdentity:
        # auth.test answers url, team, user, team_id, user_id and, for a bot token, bot_id
        # (api.slack.com/methods/auth.test).
        answer = _calling(lambda: self.client.auth_test())
        return BotIdentity(
            *(
                str(answer.get(key) or "")
                for key in ("team", "team_id", "user", "user_id", "bot_id")
            )
        )

    def usergroup_members(self, group: str, team_id: str = "") -> set[str]:
        # usergroups.users.list: `team_id` "required if org token is used" (Enterprise Grid).
        answer = _calling(
            lambda: self.client.usergroups_users_list(usergroup=group, team_id=team_id or None)
        )
        return {str(user) for user in answer.get("users") or []}

    def upload(
        self, channel: str, thread_ts: str, filename: str, title: str, content: bytes
    ) -> None:
        # slack_sdk's own three steps (files.getUploadURLExternal, a POST of the bytes to
        # the upload URL, files.completeUploadExternal with channel_id and thread_ts):
        # see WebClient.files_upload_v2. Needs the bot scope files:write.
        try:
            self.client.files_upload_v2(
                channel=channel,
                thread_ts=thread_ts,
                filename=filename,
                title=title,
                content=content,
            )
        except SlackApiError as error:
            code = error.response.get("error")
            code = code if isinstance(code, str) else ""
            sharing = str(getattr(error.response, "api_url", "")).endswith(
                "files.completeUploadExternal"
            )
            status = getattr(error.response, "status_code", 200)
            if sharing and isinstance(status, int) and status >= 500:
                # The share went out and Slack failed while answering: it may be shown.
                raise ChatUnsure(str(error), code, True) from error
            raise ChatError(str(error), code, _outage(error), _retry_after(error)) from error
        except SlackRequestError as error:
            # The upload URL refused the bytes (files_upload_v2 raises this on a non-200):
            # nothing was shared.
            raise ChatError(str(error), "", True) from error
        except (SlackClientError, OSError) as error:
            refused = isinstance(error, ConnectionRefusedError) or (
                isinstance(error, URLError) and isinstance(error.reason, ConnectionRefusedError)
            )
            if refused:  # nothing reached Slack
                raise ChatError(str(error), "", True) from error
            # No answer, and no telling which of the three steps it cut short.
            raise ChatUnsure(str(error), "", True) from error

    def respond(self, response_url: str, message: SlackMessage) -> None:
        hook = WebhookClient(response_url, timeout=RESPONSE_URL_TIMEOUT)
        answer = _calling(
            lambda: hook.send(
                text=message.text,
                blocks=message.blocks,
                response_type="ephemeral",
                replace_original=False,
            )
        )
        if answer.status_code != 200:
            raise ChatError(
                f"the response URL answered {answer.status_code}: {answer.body}",
                answer.body,
                answer.status_code == 429 or answer.status_code >= 500,
            )
