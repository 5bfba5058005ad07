"""A Slack thread as stable plain text, for comparing whole threads with `tests/expected/*.txt`.

    render_thread(messages, parent_ts)   one thread from `/_sandbox/messages` JSON
    render_channel(messages, channel)    every thread in a channel, in posting order
    read_thread(sandbox_url, parent_ts)  GET the messages and render one thread
    normalise(text)                      ids, hashes, durations, dates and URLs made stable
    assert_matches(text, name)           compare with tests/expected/<name>.txt
                                         (UPDATE_EXPECTED=1 rewrites the file instead)

The rendering: `parent: <notification text>`, then the parent's blocks (sections,
context, `[Button]` labels) one per line; then `reply: ...` for each reply, its
blocks' text (or its text) below, and `[file NAME: TITLE]` for each file it shares.
Threads are separated by a blank line. Ephemeral and deleted messages are left out:
nobody sees them in the channel.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx

EXPECTED = Path(__file__).parent / "expected"

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"https?://[^\s|>)`]+"), "URL"),
    (re.compile(r"\b(?:127\.0\.0\.1|localhost|0\.0\.0\.0):\d+\b"), "URL"),
    (re.compile(r"\bPORT=\d+"), "PORT=URL"),
    (re.compile(r"\bd-[0-9a-z]{4,12}-[0-9a-f]{6}\b"), "d-ID"),
    (re.compile(r"sha256:[0-9a-f]{12,64}"), "DIGEST"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "UUID"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "COMMIT"),
    (re.compile(r"\b[0-9a-f]{7,12}\b"), "COMMIT"),
    # A revision the deployer names: <service>-<commit[:7]>-<the deploy id's random part>.
    (re.compile(r"\bCOMMIT-[0-9a-f]{6}\b"), "COMMIT-ID"),
    (re.compile(r"\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?Z"), "DATE"),
    (re.compile(r"\b\d+x\b"), "Nx"),  # health attempts: `/health healthy 2x`
    (re.compile(r"\b\d+m \d\ds\b"), "N.Ns"),
    (re.compile(r"\b\d+(?:\.\d+)?s\b"), "N.Ns"),
]


def normalise(text: str) -> str:
    """`text` with what changes from run to run replaced by stable words."""
    for pattern, word in _RULES:
        text = pattern.sub(word, text)
    return text


def _block_lines(block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind in ("section", "header"):
        lines = [str(block["text"]["text"])] if block.get("text") else []
        lines += [str(field["text"]) for field in block.get("fields", [])]
        return lines
    if kind == "context":
        return [" ".join(str(e.get("text", "")) for e in block.get("elements", []))]
    if kind == "actions":
        return [" ".join(f"[{e['text']['text']}]" for e in block.get("elements", []))]
    if kind == "divider":
        return ["---"]
    return [f"({kind} block)"]


def render_message(message: dict[str, Any], role: str) -> str:
    """One message: `role: text`, then its blocks' text (a reply's text only without blocks)."""
    blocks = message.get("blocks") or []
    head = f"{role}:" if role == "reply" and blocks else f"{role}: {message.get('text', '')}"
    lines = [head]
    for block in blocks:
        lines.extend(_block_lines(block))
    # A file shared in the thread (the analysis chart): its name and title, not its bytes.
    lines.extend(f"[file {f.get('name')}: {f.get('title')}]" for f in message.get("files") or [])
    return "\n".join(lines)


def _visible(message: dict[str, Any]) -> bool:
    return not message.get("ephemeral") and not message.get("deleted")


def render_thread(messages: list[dict[str, Any]], parent_ts: str, normalised: bool = True) -> str:
    """The parent at `parent_ts` (its final text and blocks) and each reply, in order."""
    parent = next((m for m in messages if m["ts"] == parent_ts), None)
    assert parent is not None, f"no message {parent_ts} among {len(messages)}"
    parts = [render_message(parent, "parent")]
    parts += [
        render_message(m, "reply")
        for m in messages
        if m.get("thread_ts") == parent_ts and m["ts"] != parent_ts and _visible(m)
    ]
    text = "\n".join(parts) + "\n"
    return normalise(text) if normalised else text


def render_channel(messages: list[dict[str, Any]], channel: str) -> str:
    """Every thread started in `channel` (top-level messages with their replies), oldest first."""
    mine = [m for m in messages if m.get("channel") == channel]
    parents = [m for m in mine if _visible(m) and m.get("thread_ts") in (None, m["ts"])]
    return "\n".join(render_thread(mine, parent["ts"]) for parent in parents)


def read_messages(sandbox_url: str, channel: str | None = None) -> list[dict[str, Any]]:
    """`GET /_sandbox/messages` (sandbox_url is `sandbox.http.url`, no `/api/`)."""
    params = {"channel": channel} if channel else {}
    answer = httpx.get(f"{sandbox_url}/_sandbox/messages", params=params, timeout=10)
    answer.raise_for_status()
    found: list[dict[str, Any]] = answer.json()
    return found


def read_thread(sandbox_url: str, parent_ts: str, channel: str | None = None) -> str:
    """The thread at `parent_ts`, read over HTTP and rendered."""
    return render_thread(read_messages(sandbox_url, channel), parent_ts)


def assert_matches(text: str, name: str) -> None:
    """`text` equals tests/expected/<name>.txt; UPDATE_EXPECTED=1 writes it instead."""
    path = EXPECTED / f"{name}.txt"
    if os.environ.get("UPDATE_EXPECTED") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run with UPDATE_EXPECTED=1 and review it"
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name}: got\n{text}\n--- expected ---\n{expected}"
