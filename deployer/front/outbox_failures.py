"""What a failed Slack call costs a deploy's thread: a later try, or the message dropped.

A failure that says nothing about the message (no answer, a 429, the deployer's
token or Slack itself at fault) is tried again: after the 429's Retry-After, else
after a backoff that doubles with each failure in a row. Slack answering and
refusing a message for good (a bad block, `msg_too_long`) drops that message and
is logged; a parent Slack refuses ends the box.
"""

from __future__ import annotations

import logging

from deployer.front.mrkdwn import says
from deployer.front.ports import ChatError, SlackMessage
from deployer.front.thread_box import ThreadBox

log = logging.getLogger(__name__)

FIRST_BACKOFF, MAX_BACKOFF = 0.5, 60.0  # seconds after a failure without Retry-After
# Refusals that say nothing about the message: the deployer's token or Slack itself is
# at fault, and the same message may go through once that is mended.
# (api.slack.com/methods/chat.postMessage, "Errors": the common errors of every method)
TRANSIENT = frozenset(
    {
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "ratelimited",
        "request_timeout",
        "service_unavailable",
        "fatal_error",
        "internal_error",
        "team_access_not_granted",
    }
)
# Slack refusing a channel the bot is not in (api.slack.com/methods/chat.postMessage,
# "Errors"): a public one without `chat:write.public`, or any private one.
UNJOINED = frozenset({"not_in_channel", "channel_not_found"})


def unjoined(deploy_id: str, channel: str, error: str) -> SlackMessage:
    """What the asker is told when the thread's channel refuses the bot.

    The deploy itself goes on: only its thread has nowhere to go.
    """
    return says(
        f"Deploy `{deploy_id}` goes on, but I could not post its thread in <#{channel}> "
        f"(Slack: `{error}`): the bot is not in that channel. Invite it there (`/invite @` "
        "and the deployer's app) so the next deploys are told there; meanwhile "
        "`/deploy status` shows where things are."
    )


def failed(box: ThreadBox | None, error: ChatError, now: float) -> ThreadBox | None:
    """`box` after its next call failed with `error` at `now`: retried later, or the
    message dropped."""
    if box is None:
        return None
    box.last_error = error.error or str(error)
    if error.outage or error.retry_after is not None or error.error in TRANSIENT:
        if box.ts is None and error.outage and error.retry_after is None:
            box.parent_unsure = True  # it may have been posted: look before posting again
        box.failures += 1
        wait = error.retry_after
        if wait is None:
            wait = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (box.failures - 1))
        box.retry_at = now + wait
        log.warning(
            "slack: thread of %s: %s; next try in %.1fs", box.deploy_id, box.last_error, wait
        )
        return box
    # Slack answered and refused: sending the same again would be refused again.
    box.dropped += 1
    if box.ts is None:
        box.ended = f"Slack refused the thread's parent: {box.last_error}"
    elif box.replies_sent < len(box.replies):
        box.replies_sent += 1
    else:
        box.shown_version = box.parent_version
    log.error("slack: thread of %s: a message was refused: %s", box.deploy_id, box.last_error)
    return box
