"""A file shared in a deploy's thread right after the reply that carries it (the analysis
chart after the final reply): drawn when sent, shared at most once, never holding the
thread up.

A reply with a file goes out in two calls, each recorded in the outbox's box before
the next:

    text_posted   the reply's words are in the thread (chat.postMessage, as any reply)
    file_sharing  a share began (written before the upload starts)
    done          the reply counts as sent (`replies_sent` moves past it)

Slack offers no idempotency key for uploads either, so the share is at most once:

    the share ended                               what the box does
    Slack took it                                 done
    refused before anything was shared (429,      tried again after Retry-After or a
      no answer to getUploadURLExternal, the        backoff, `FILE_TRIES` times in all,
      upload URL refusing the bytes)                then given up
    refused for good (missing_scope: no           given up at once
      `files:write`; not_in_channel; ...)
    unsure: the share went out unanswered         given up: Slack may show it already
      (`ChatUnsure`), or a drain found a share
      begun and never ended (its run died)

Giving up logs one line saying why, and the reply's words stand. The chart is drawn
only here, on the courier's thread or the sweep, never in the deploy's own path: the
lock is released before matplotlib is even imported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from deployer.front.analysis_chart import analysis_chart
from deployer.front.analysis_messages import ANALYSIS_CHART
from deployer.front.outbox_failures import FIRST_BACKOFF, MAX_BACKOFF
from deployer.front.ports import Chat, ChatError, ChatUnsure
from deployer.front.thread_box import ThreadBox
from deployer.pipeline.measurements import Measurement

log = logging.getLogger(__name__)

FILE_TRIES = 3  # shares tried before a file is given up
# Slack's refusals that a later try would meet again, with what to do about them.
_HINTS = {
    "missing_scope": "the Slack app lacks the `files:write` bot scope: add it and reinstall",
    "not_in_channel": "the bot is not in the channel: invite it there to share files",
    "channel_not_found": "the bot cannot see the channel: invite it there to share files",
    "file_uploads_disabled": "the workspace has turned file uploads off",
    "file_upload_size_restricted": "the workspace refuses files this large",
}
_RETRYABLE = frozenset({"ratelimited", "request_timeout", "service_unavailable", "fatal_error"})


class FileNotDrawn(Exception):
    """The file could not be made (a drawing bug, an unknown kind): nothing to share."""


def draw(spec: Mapping[str, Any]) -> bytes | None:
    """The bytes of the file `spec` describes; None when there is nothing to show."""
    if spec.get("kind") != ANALYSIS_CHART:
        raise FileNotDrawn(f"unknown kind of file {spec.get('kind')!r}")
    try:
        windows = [Measurement.from_dict(item) for item in spec.get("windows") or []]
        thresholds = {str(k): float(v) for k, v in (spec.get("thresholds") or {}).items()}
        return analysis_chart(windows, thresholds, str(spec.get("title") or ""))
    except Exception as error:  # a drawing bug must cost the chart only
        raise FileNotDrawn(f"{type(error).__name__}: {error}") from error


def share(chat: Chat, box: ThreadBox, spec: Mapping[str, Any]) -> None:
    """Draw `spec` and share it in the thread of `box`; ChatError, ChatUnsure or FileNotDrawn."""
    assert box.ts is not None
    content = draw(spec)
    if content is None:
        return
    chat.upload(box.channel, box.ts, str(spec["filename"]), str(spec.get("title") or ""), content)


def begin(box: ThreadBox | None, index: int) -> ThreadBox | None:
    """Record that the share of reply `index` begins; a share found begun is given up."""
    if box is None or box.replies_sent != index:
        return box
    reply = box.replies[index]
    if reply.get("file_sharing"):
        _give_up(box, index, "an earlier share of it ended unrecorded; Slack may show it")
        return box
    reply["file_sharing"] = True
    reply["file_tries"] = int(reply.get("file_tries") or 0) + 1
    return box


def shared(box: ThreadBox | None, index: int) -> ThreadBox | None:
    """Reply `index` is done: its file is in the thread."""
    if box is not None and box.replies_sent == index:
        box.replies[index]["file_sharing"] = False
        box.replies_sent = index + 1
        box.failures, box.retry_at, box.last_error = 0, 0.0, ""
    return box


def failed(box: ThreadBox | None, index: int, error: Exception, now: float) -> ThreadBox | None:
    """Reply `index`'s share failed with `error` at `now`: tried again later, or given up."""
    if box is None or box.replies_sent != index:
        return box
    reply = box.replies[index]
    reply["file_sharing"] = False
    code = error.error if isinstance(error, ChatError) else ""
    if isinstance(error, ChatUnsure):
        _give_up(box, index, f"its share went unanswered ({error}); Slack may show it")
        return box
    if isinstance(error, FileNotDrawn) or not _retryable(error):
        why = _HINTS.get(code, f"Slack refused it: {code}" if code else str(error))
        _give_up(box, index, why)
        return box
    if int(reply.get("file_tries") or 0) >= FILE_TRIES:
        _give_up(box, index, f"{FILE_TRIES} tries failed, the last: {code or error}")
        return box
    assert isinstance(error, ChatError)
    box.failures += 1
    box.last_error = code or str(error)
    wait = error.retry_after
    if wait is None:
        wait = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (box.failures - 1))
    box.retry_at = now + wait
    log.warning(
        "slack: the file of %s's thread is tried again in %.1fs: %s",
        box.deploy_id,
        wait,
        box.last_error,
    )
    return box


def _retryable(error: Exception) -> bool:
    """Whether Slack may take the same file later: it did not answer, or asked to wait."""
    if not isinstance(error, ChatError):
        return False
    return error.outage or error.retry_after is not None or error.error in _RETRYABLE


def _give_up(box: ThreadBox, index: int, why: str) -> None:
    reply = box.replies[index]
    reply["file_sharing"] = False
    name = (reply.get("file") or {}).get("filename", "a file")
    box.replies_sent = index + 1
    box.failures, box.retry_at, box.last_error = 0, 0.0, ""
    log.error(
        "slack: %s was not shared in the thread of %s (%s); the reply's text stands",
        name,
        box.deploy_id,
        why,
    )
