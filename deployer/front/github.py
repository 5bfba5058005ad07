"""`POST /github/webhook`: a published release deploys its tag.

    signature (X-Hub-Signature-256 over the raw body)   401 when wrong, 503 without a secret
    ping                                                200
    release, action published, not a draft              deploy release.tag_name, 202
        prerelease -> releases.prerelease_environment   (none configured: 200, nothing done)
        repository not in [releases] / allow-list       403, nothing done
        X-GitHub-Delivery seen before                   200, nothing done (a redelivery)
    anything else (released, created, drafts, pushes)   200, nothing done
    body not JSON after a valid signature               400

Only `tag_name` is built, never `target_commitish` (usually a branch that may
have moved on). The deploy is announced as a new thread in `releases.channel`
(or the environment's `channel`), requested by `github:<owner/name>`, and
dispatched like a Slack deploy. Environment locks are not checked here: the
pipeline's preflight refuses a locked environment and the thread says so, which
is what the team needs to see for a release that did not go out.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from deployer.front.access import github_denial
from deployer.front.verify import github_refusal

if TYPE_CHECKING:
    from deployer.front.context import FrontContext

log = logging.getLogger(__name__)

# Git's own ref rules, narrowed: no leading dash (an option to git), no "..", no spaces.
_TAG = re.compile(r"^(?!-)[A-Za-z0-9._/+-]{1,128}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$")
_DELIVERY = re.compile(r"^[A-Za-z0-9-]{1,100}$")

Answer = tuple[int, str]


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), "")
    return value.strip()


def _payload(headers: Mapping[str, str], body: bytes) -> dict[str, Any] | None:
    """The event's JSON object (GitHub sends it raw, or form-encoded as `payload=`)."""
    try:
        if _header(headers, "Content-Type").split(";")[0].strip().lower() == (
            "application/x-www-form-urlencoded"
        ):
            values = parse_qs(body.decode("utf-8"), strict_parsing=True).get("payload", [])
            if len(values) != 1:
                return None
            data = json.loads(values[0])
        else:
            data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def handle_github(
    headers: Mapping[str, str], body: bytes, context: FrontContext
) -> tuple[int, str]:
    """Answer one GitHub webhook delivery (body already read and size-capped): (status, text)."""
    refusal = github_refusal(headers, body, context.settings.github_webhook_secret)
    if refusal is not None:
        return refusal.status, refusal.body
    event = _header(headers, "X-GitHub-Event")
    delivery = _header(headers, "X-GitHub-Delivery")
    if not event or not _DELIVERY.match(delivery):
        return 400, "bad request\n"
    payload = _payload(headers, body)
    if payload is None:
        return 400, "bad request\n"
    if event == "ping":
        return 200, "pong\n"
    if event != "release":
        return 200, f"ignored: {event} events deploy nothing\n"
    return _release(payload, delivery, context)


def _release(payload: dict[str, Any], delivery: str, context: FrontContext) -> Answer:
    release = payload.get("release")
    repository = (payload.get("repository") or {}).get("full_name")
    action = payload.get("action")
    if not isinstance(release, dict) or not isinstance(repository, str):
        return 400, "bad request\n"
    if action != "published":
        return 200, f"ignored: release {action} deploys nothing\n"
    if release.get("draft") is not False:
        return 200, "ignored: drafts deploy nothing\n"
    tag = release.get("tag_name")
    if not isinstance(tag, str) or not _TAG.match(tag) or ".." in tag:
        return 400, "bad request\n"
    if not _REPOSITORY.match(repository):
        return 400, "bad request\n"

    releases = context.config.releases
    if releases is None:
        return 403, "releases are not configured to deploy\n"
    environment = (
        releases.prerelease_environment if release.get("prerelease") else (releases.environment)
    )
    if environment is None:
        return 200, "ignored: prereleases deploy nothing here\n"
    denial = github_denial(context.config, environment, repository)
    if denial is not None:
        log.warning("github release refused: %s", denial, extra={"delivery": delivery})
        return 403, "repository not allowed\n"
    # Claimed only now: a delivery that was refused above may be fixed and redelivered.
    if not context.store.claim(f"github-delivery:{delivery}"):
        return 200, "already handled\n"
    return _deploy(context, environment, tag, repository, _sender(payload), release)


def _sender(payload: dict[str, Any]) -> str:
    login = (payload.get("sender") or {}).get("login")
    return login if isinstance(login, str) else ""


def _deploy(
    context: FrontContext,
    environment: str,
    tag: str,
    repository: str,
    sender: str,
    release: dict[str, Any],
) -> Answer:
    from deployer.front import messages
    from deployer.front.thread import post_parent

    engine = context.engine
    record = engine.new_deploy(environment, tag, f"github:{repository}")
    releases = context.config.releases
    channel = (releases.channel if releases else None) or context.config.environment(
        environment
    ).channel
    if channel:
        record.slack_channel = channel
        record.slack_ts = post_parent(context.chat, channel, record)
    context.store.save(record)
    if record.slack_channel and record.slack_ts:
        url = release.get("html_url")
        note = messages.release_note(repository, tag, sender, url if isinstance(url, str) else "")
        try:
            context.chat.post(record.slack_channel, note, thread_ts=record.slack_ts)
        except Exception:
            # The thread is a courtesy; the release deploys whatever Slack says.
            log.exception("could not post the release note of %s", record.id)
    context.dispatcher.dispatch(record.id)
    log.info(
        "release %s of %s deploys to %s as %s",
        tag,
        repository,
        environment,
        record.id,
        extra={"deploy_id": record.id, "environment": environment},
    )
    return 202, f"deploying {tag} to {environment}: {record.id}\n"
