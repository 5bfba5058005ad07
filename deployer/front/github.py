"""`POST /github/webhook`: a release deploys its tag, once.

    signature (X-Hub-Signature-256 over the raw body)   401 when wrong, 503 without a secret
    ping                                                200
    release, action released (a release published, or   deploy release.tag_name to
      a pre-release turned into one), not a draft         releases.environment, 202
    release, action prereleased, not a draft            deploy it to releases.prerelease_environment
                                                        (none configured: 200, nothing done)
    release, action published                           200, nothing done: GitHub sends
                                                        `released` or `prereleased` with it
        repository not in [releases] / allow-list       403, nothing done
        the same release already taken in there         200, nothing done (one deploy per
                                                        release and environment, whatever
                                                        the deliveries, redeliveries included)
    anything else (created, edited, drafts, pushes)     200, nothing done
    body not JSON, or a release not shaped as GitHub    400 (`payloads.release`)
    the deploy could not be recorded (store down)       503, nothing kept: a redelivery by
                                                        hand runs it

GitHub's actions (docs.github.com/webhooks/webhook-events-and-payloads#release):
`published` for releases and pre-releases alike; `released` when a release is
published or a pre-release is changed into one; `prereleased` when a pre-release
is published. So a pre-release never reaches `releases.environment` until someone
makes it the release. Only `tag_name` is built, never `target_commitish` (usually
a branch that may have moved on). The deploy is taken in like a Slack one
(the front's intake), announced in a new thread in `releases.channel` (or the
environment's `channel`), requested by `github:<owner/name>`; a busy or locked
environment queues it, so no release is lost to bad timing. The answer is 202
once the deploy is recorded: if its worker cannot be started now, the sweep
starts it.

Exactly once, never lost: a release's deploy has an id derived from the release
and the environment (`release_deploy_id`), and the record under that id is the
only mark that the release was taken in. There is no claim to take first that a
front killed before saving could leave behind: a redelivery finds no record and
takes the release in (under the same id, so it also takes over the lock such a
front left), and a delivery racing another finds the same lock holder and the
same record, never a second deploy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from deployer import window_gate
from deployer.front import payloads
from deployer.front.access import github_denial
from deployer.front.intake import never_taken_in
from deployer.front.verify import github_refusal
from deployer.pipeline.record import State

if TYPE_CHECKING:
    from deployer.front.context import FrontContext
    from deployer.front.ports import SlackMessage
    from deployer.pipeline.record import DeployRecord

log = logging.getLogger(__name__)

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
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
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
    release = payloads.release(payload)
    if isinstance(release, payloads.Malformed):
        log.warning("github release refused: %s", release.reason, extra={"delivery": delivery})
        return 400, "bad request\n"
    if release.action == "published":
        return 200, "ignored: published; its released or prereleased delivery deploys it\n"
    if release.action not in ("released", "prereleased"):
        return 200, f"ignored: release {release.action} deploys nothing\n"
    if release.draft:
        return 200, "ignored: drafts deploy nothing\n"
    repository, tag = release.repository, release.tag

    releases = context.config.releases
    if releases is None:
        return 403, "releases are not configured to deploy\n"
    prerelease = release.action == "prereleased"
    if release.prerelease and not prerelease:
        # `released` names a release; one still marked a pre-release never reaches it.
        return 200, "ignored: a pre-release is not the release\n"
    environment = releases.prerelease_environment if prerelease else releases.environment
    if environment is None:
        return 200, "ignored: prereleases deploy nothing here\n"
    denial = github_denial(context.config, environment, repository)
    if denial is not None:
        log.warning("github release refused: %s", denial, extra={"delivery": delivery})
        return 403, "repository not allowed\n"
    deploy_id = release_deploy_id(repository, release.release_id or tag, environment)
    try:
        earlier = context.store.get(deploy_id)
        if earlier is not None and not never_taken_in(earlier):
            return 200, f"already deployed to {environment}: {tag} ({deploy_id})\n"
        return _deploy(
            context, deploy_id, environment, tag, repository, release.sender, payload["release"]
        )
    except Exception:
        # GitHub does not redeliver on its own: the 503 (shown in the hook's deliveries)
        # says to redeliver, and nothing was kept that would stop the redelivery.
        log.exception("release %s of %s not taken in", tag, repository)
        return 503, "the deploy could not be recorded; redeliver this delivery\n"


def release_deploy_id(repository: str, release: str, environment: str) -> str:
    """The deploy id of a release in an environment: the same for every delivery of it."""
    digest = hashlib.sha256(f"{repository}\n{release}\n{environment}".encode()).hexdigest()
    return f"d-gh{digest[:10]}-{digest[10:16]}"


def _window_closed(
    context: FrontContext,
    record: DeployRecord,
    channel: str | None,
    note: SlackMessage,
    closed: str,
) -> Answer:
    """A release during a closed deploy window: kept as a cancelled deploy (nothing locked
    or built), told in a thread of its own that the sweep posts; a person deploys the tag
    once the window opens."""
    from deployer.front.thread import open_thread

    record.state = State.CANCELLED
    record.cancelled_by = "the deploy window"
    record.error = f"not started: {closed}; deploy {record.ref} by hand once it opens"
    context.store.save(record)
    if channel:
        open_thread(context.outbox, channel, record)
        context.outbox.reply(record.id, note)
    log.warning(
        "release %s not deployed: %s",
        record.ref,
        closed,
        extra={"deploy_id": record.id, "environment": record.environment},
    )
    return 200, f"not deployed: {closed} ({record.id})\n"


def _deploy(
    context: FrontContext,
    deploy_id: str,
    environment: str,
    tag: str,
    repository: str,
    sender: str,
    release: dict[str, Any],
) -> Answer:
    """Take the release in as a deploy; while the environment is busy or locked it waits in
    the queue, so no release is lost to bad timing."""
    from deployer.front import messages
    from deployer.front.intake import Queued, take_in

    record = context.engine.new_deploy(environment, tag, f"github:{repository}")
    record.id = deploy_id
    releases = context.config.releases
    channel = (releases.channel if releases else None) or context.config.environment(
        environment
    ).channel
    url = release.get("html_url")
    note = messages.release_note(repository, tag, sender, url if isinstance(url, str) else "")
    closed = window_gate.closed_text(context.config, record)
    if closed is not None:
        return _window_closed(context, record, channel, note, closed)
    outcome = take_in(context, record, channel, queue=True, first_reply=note)
    queued = isinstance(outcome, Queued)
    log.info(
        "release %s of %s %s %s as %s",
        tag,
        repository,
        "waits for" if queued else "deploys to",
        environment,
        record.id,
        extra={"deploy_id": record.id, "environment": environment},
    )
    if queued:
        return 202, f"queued {tag} for {environment} (busy): {record.id}\n"
    return 202, f"deploying {tag} to {environment}: {record.id}\n"
