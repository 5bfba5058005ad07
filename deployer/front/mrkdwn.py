"""Slack mrkdwn building blocks: escaping, people, links, code, durations, limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from deployer.failure_detail import DETAIL_LINES, GAP, excerpt
from deployer.front.ports import SlackMessage
from deployer.pipeline.record import State

MAX_SECTION = 3000  # characters of text in one section block
MAX_BLOCKS = 50  # blocks in one message
MAX_TEXT = 3000  # the notification text we send (Slack allows more; nobody reads it)
CODE_LINES = DETAIL_LINES  # as many lines of a failure's detail as the terminal shows

STATE_WORDS = {
    State.PENDING: "starting",
    State.QUEUED: "queued",
    State.RUNNING: "running",
    State.SUCCEEDED: "succeeded",
    State.FAILED: "failed",
    State.ROLLED_BACK: "failed, rolled back",
    State.CANCELLED: "cancelled",
    State.ABANDONED: "abandoned",
}

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,30}$")
_SLACK_REQUESTER = re.compile(r"\bslack:([UW][A-Z0-9]{2,30})\b")
_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,4}$")
_DIGEST = re.compile(r"sha256:([0-9a-f]{12})[0-9a-f]*")


def escape(text: str) -> str:
    """`text` safe to echo in mrkdwn: `&`, `<`, `>` become entities, so `<!channel>` cannot ping."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def said(text: str) -> str:
    """System text that may quote users (a stage summary): escaped, `slack:U…` shown as the person."""
    return _SLACK_REQUESTER.sub(r"<@\1>", escape(text))


def code(text: str) -> str:
    """Inline code of user or system text (escaped, backticks defused)."""
    return "`" + escape(text).replace("`", "'") + "`"


def person(requester: str) -> str:
    """Who asked: `<@U…>` for `slack:U…`, the escaped requester otherwise (`github:owner/name`)."""
    kind, _, who = requester.partition(":")
    if kind == "slack" and _SLACK_USER.match(who):
        return f"<@{who}>"
    return escape(requester)


def link(url: str, label: str) -> str:
    """A mrkdwn link; the URL's `|` and the label are escaped so neither can break out."""
    target = escape(url).replace("|", "%7C")
    return f"<{target}|{escape(label)}>"


def duration(seconds: float) -> str:
    """`0.4s`, `12.3s`, `2m 05s`."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s"


def when(epoch: float) -> str:
    """A UTC timestamp, to the minute."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%MZ")


def fit(text: str, limit: int = MAX_SECTION) -> str:
    """`text` cut to `limit` characters (never inside an entity), marked with `…`."""
    if len(text) <= limit:
        return text
    cut = _PARTIAL_ENTITY.sub("", text[: limit - 1])
    return cut + "…"


def code_block(detail: str, lines: int = CODE_LINES, limit: int = 1800) -> str:
    """The last `lines` lines of `detail` in a code block, escaped, at most about `limit` chars."""
    return _fenced([], detail.strip().splitlines()[-lines:], False, limit)


def detail_block(detail: str, lines: int = CODE_LINES, limit: int = 1800) -> str:
    """A failure's detail in a code block as the terminal shows it: its key lines first
    (the error, the port), then its last lines (`deployer.failure_detail`); escaped, at
    most about `limit` chars."""
    shown = excerpt(detail, lines)
    return _fenced(list(shown.key), list(shown.tail), shown.gap, limit)


def _fenced(key: list[str], tail: list[str], gap: bool, limit: int) -> str:
    """`key` lines, `…` where lines were left out, and `tail` in a code block of about
    `limit` chars: to fit, the tail's oldest lines go first, then the key lines."""
    key, tail = [_code_line(line) for line in key], [_code_line(line) for line in tail]

    def size() -> int:
        return sum(len(line) + 1 for line in (*key, *tail))

    while size() > limit and (len(tail) > 1 or key):
        if len(tail) > 1:
            tail.pop(0)
        else:
            key.pop(0)
        gap = True
    if tail and len(tail[0]) > limit:
        tail[0] = GAP + _PARTIAL_ENTITY.sub("", tail[0][-limit:]).lstrip(";")
    body = [*key, *([GAP] if gap else []), *tail]
    return "```\n" + "\n".join(body) + "\n```"


def _code_line(line: str) -> str:
    return escape(line.rstrip()).replace("```", "'''")


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": fit(text)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": fit(text)}]}


def button(
    label: str,
    action_id: str,
    value: str,
    style: str | None = None,
    confirm: tuple[str, str, str, str] | None = None,
) -> dict[str, Any]:
    """A button; `confirm` = (title, question, yes, no) asks before acting."""
    element: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": value,
    }
    if style:
        element["style"] = style
    if confirm:
        title, question, yes, no = confirm
        element["confirm"] = {
            "title": {"type": "plain_text", "text": title},
            "text": {"type": "mrkdwn", "text": question},
            "confirm": {"type": "plain_text", "text": yes},
            "deny": {"type": "plain_text", "text": no},
        }
    return element


def plain(text: str) -> str:
    """The notification text: mrkdwn markers dropped, entities kept (they are still escaped)."""
    return fit(text.replace("*", "").replace("`", ""), MAX_TEXT)


def says(mrkdwn: str) -> SlackMessage:
    """A one-section message whose notification text is the same words."""
    return SlackMessage(plain(mrkdwn), [section(mrkdwn)])


def image_ref(image: str) -> str:
    """An image as its short digest (`sha256:` and 12 hex digits), or the reference itself."""
    found = _DIGEST.search(image)
    if found:
        return code(f"sha256:{found.group(1)}")
    return code(image) if image else "no image"
