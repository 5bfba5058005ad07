"""The demo's Slack, drawn in a terminal: Block Kit as plain text, and a channel's threads live.

    a thread's parent        drawn under its thread's name ("staging thread"), redrawn
                             when updated: in place on a terminal while nothing was printed
                             below it, else printed again, marked "(message updated)"
    a reply in a thread      printed once, saying which thread it belongs to
    an ephemeral message     printed once, saying who alone sees it
    anything else            printed once, "in the channel"

A thread parent is a message carrying the deployer's metadata event (`deployer_thread`,
api.slack.com/metadata), which names its deploy; `name_of` turns the deploy id into the
thread's name. Messages come from the sandbox's Slack (`GET /_sandbox/messages`).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from deployer.front.outbox import THREAD_EVENT
from deployer_sandbox.harness.demo_wire import channel_messages

_LINK = re.compile(r"<([^<>|]+)\|([^<>]+)>")
_MENTION = re.compile(r"<([@#!])([^<>|]+)>")
_BARE_LINK = re.compile(r"<([^<>|@#!][^<>]*)>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")


def plain(mrkdwn: str) -> str:
    """Slack mrkdwn as terminal text: links (and dates) show their label, mentions their id."""
    text = _LINK.sub(lambda m: m[2], mrkdwn)
    text = _MENTION.sub(lambda m: ("@" if m[1] == "!" else m[1]) + m[2], text)
    text = _BARE_LINK.sub(lambda m: m[1], text)
    text = _BOLD.sub(lambda m: m[1], text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text_of(element: Any) -> str:
    if isinstance(element, dict):
        if isinstance(element.get("text"), dict):
            return _text_of(element["text"])
        value = element.get("text") or element.get("alt_text") or ""
        return plain(value) if isinstance(value, str) else ""
    return ""


def render_blocks(blocks: Iterable[Any]) -> list[str]:
    """Block Kit blocks as lines of plain text (sections, fields, context, buttons...)."""
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("section", "header"):
            if block.get("text"):
                text = _text_of(block)
                lines += text.upper().splitlines() if kind == "header" else text.splitlines()
            for field in block.get("fields") or []:
                lines += _text_of(field).splitlines()
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and accessory.get("type") == "button":
                lines.append(f"[ {_text_of(accessory)} ]")
        elif kind == "context":
            parts = [_text_of(e) for e in block.get("elements") or []]
            lines += " · ".join(p for p in parts if p).splitlines()
        elif kind == "divider":
            lines.append("─" * 40)
        elif kind == "actions":
            buttons = [f"[ {_text_of(e)} ]" for e in block.get("elements") or []]
            lines.append("  ".join(buttons))
    return lines


def render_message(message: dict[str, Any]) -> list[str]:
    """A recorded message (from `/_sandbox/messages`) as lines: its blocks, else its text;
    then a line for each file it shares (a picture cannot be drawn here: its name is)."""
    lines = render_blocks(message.get("blocks") or [])
    if not lines:
        lines = plain(message.get("text") or "").splitlines()
    for file in message.get("files") or []:
        lines.append(f"[file {file.get('name')}: {file.get('title')}, {file.get('size')} bytes]")
    return lines or ["(empty message)"]


def deploy_of(message: dict[str, Any]) -> str | None:
    """The deploy a thread parent belongs to, from its metadata; None for other messages."""
    metadata = message.get("metadata") or {}
    if metadata.get("event_type") != THREAD_EVENT:
        return None
    deploy = (metadata.get("event_payload") or {}).get("deploy_id")
    return str(deploy) if deploy else None


def _ts(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class ThreadView:
    """Prints a channel's messages as they appear; every deploy thread's parent is redrawn."""

    def __init__(
        self,
        sink: str,
        channel: str,
        out: TextIO,
        since: float,
        name_of: Callable[[str], str | None] = lambda deploy_id: None,
        channel_name: str = "deploys",
    ) -> None:
        self.sink = sink
        self.channel = channel
        self.out = out
        self.since = since
        self.name_of = name_of
        self.header = f"┌ #{channel_name} · deployer"
        self.tty = out.isatty()
        self._shown: dict[str, list[str]] = {}
        self._threads: dict[str, str] = {}  # parent ts -> the thread's name
        self._last_ts: str | None = None  # the parent drawn last, while nothing follows it
        self._last_rows = 0

    @property
    def shown(self) -> int:
        """How many messages were printed so far."""
        return len(self._shown)

    def messages(self) -> list[dict[str, Any]]:
        """The channel's messages since `since`, oldest first."""
        found = channel_messages(self.sink, self.channel)
        return [m for m in found if _ts(m.get("ts")) > self.since and not m.get("deleted")]

    def poll(self) -> None:
        """Show what changed since the last poll."""
        for message in self.messages():
            ts = str(message.get("ts"))
            thread = message.get("thread_ts")
            if message.get("ephemeral"):
                self._once(ts, message, f"(only @{message.get('user_target')} can see this)")
            elif thread in (None, ts) and deploy_of(message) is not None:
                self._parent(ts, message)
            elif thread in self._threads:
                self._once(ts, message, f"↳ reply in the {self._threads[thread]}")
            elif thread not in (None, ts):
                self._once(ts, message, "↳ reply in a thread")
            else:
                self._once(ts, message, "in the channel")

    def _thread_name(self, ts: str, message: dict[str, Any]) -> str:
        if ts not in self._threads:
            deploy = deploy_of(message) or "?"
            named = self.name_of(deploy)
            if named is None:  # not known yet: named again at the next redraw
                return f"thread of {deploy}"
            self._threads[ts] = f"{named} thread"
        return self._threads[ts]

    def _rows(self, lines: list[str]) -> int:
        width = max(20, shutil.get_terminal_size().columns)
        return sum(max(1, -(-len(line) // width)) for line in lines)

    def _parent(self, ts: str, message: dict[str, Any]) -> None:
        name = self._thread_name(ts, message)
        body = [f"│ {line}" for line in render_message(message)]
        previous = self._shown.get(ts)
        if previous is not None and previous[1:] == body:
            return
        lines = [f"{self.header} · {name}", *body]
        if previous is not None:
            if self.tty and self._last_ts == ts:
                # Nothing was printed below this parent: redraw it in place.
                self.out.write(f"\x1b[{self._last_rows}F\x1b[J")
            else:
                lines[0] += " (message updated)"
        self._shown[ts] = lines
        self._write(lines)
        self._last_ts, self._last_rows = ts, self._rows(lines)

    def _once(self, ts: str, message: dict[str, Any], label: str) -> None:
        if ts in self._shown:
            return
        lines = [f"  {label}", *(f"  │ {line}" for line in render_message(message))]
        self._shown[ts] = lines
        self._write(lines)
        self._last_ts = None

    def _write(self, lines: list[str]) -> None:
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
