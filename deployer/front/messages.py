"""Every word the deployer says in Slack: small functions from state to a message (text + blocks).

This module answers commands (help, access, locks, status, history) and
re-exports the deploy thread's words from `deploy_messages`, so the front
imports one module. User-provided text (refs, lock reasons, stage summaries
quoting them) is always escaped; only the mentions and links built here are live.
"""

from __future__ import annotations

import re
import time
from typing import Any

from deployer.config import Config
from deployer.engine import EnvironmentStatus
from deployer.front import grammar
from deployer.front.deploy_messages import (
    CANCEL,
    RETRY,
    ROLLBACK,
    break_glass_reply,
    deploy_parent,
    note_reply,
    plan_reply,
    progress_reply,
    stage_reply,
)
from deployer.front.mrkdwn import (
    MAX_BLOCKS,
    STATE_WORDS,
    button,
    code,
    code_block,
    context,
    escape,
    image_ref,
    link,
    person,
    plain,
    said,
    says,
    section,
    when,
)
from deployer.front.ports import SlackMessage
from deployer.pipeline.record import DeployRecord, Lock, State

__all__ = [
    "CANCEL",
    "RETRY",
    "ROLLBACK",
    "SlackMessage",
    "break_glass_reply",
    "busy",
    "denied",
    "deploy_parent",
    "escape",
    "follow_up",
    "forced",
    "help_message",
    "history_message",
    "lock_taken",
    "locked_out",
    "never_started",
    "note_reply",
    "plan_reply",
    "progress_reply",
    "queued",
    "release_note",
    "reply",
    "stage_reply",
    "started",
    "status_message",
    "unlocked",
    "window_closed",
]

# --- help, access and locks ---------------------------------------------------------

_USAGE = (
    "/deploy help",
    "/deploy status [ENV]",
    "/deploy history ENV",
    "/deploy rollback ENV [REVISION]",
    "/deploy lock ENV [reason ...]",
    "/deploy unlock ENV [force [reason ...]]",
    '/deploy promote FROM ENV [--queue] [--break-glass "reason"]',
    "/deploy approve ID",
    "/deploy reject ID [reason ...]",
    '/deploy [SERVICE] ENV [REF] [--queue] [--rebuild] [--break-glass "reason"]',
)
_WHAT = {
    "help": "this message",
    "status": "what runs where: revisions, traffic, health, locks",
    "history": "the last deploys and rollbacks of ENV",
    "rollback": "traffic back to the previous (or the named) revision",
    "lock": "stop others deploying ENV until it is unlocked",
    "unlock": "lift the lock on ENV; force (admins): end a deploy stuck in it too",
    "promote": "deploy what FROM serves to ENV (its promote_from), with no build",
    "approve": "approve a deploy awaiting approval (its approvers)",
    "reject": "reject a deploy awaiting approval: its tag goes, traffic stays",
}
_DEPLOY_WHAT = "build REF (default: the default branch) and roll it out to ENV"
_OPTIONS = {
    "--queue": "wait if ENV is busy, and start when it is free",
    "--rebuild": "build again where an earlier build of the same commit would be reused",
    "--break-glass": 'deploy while ENV\'s deploy window is closed (its admins; "reason" recorded)',
}


def _usage() -> list[str]:
    doc = grammar.__doc__ or ""
    lines = [line.strip() for line in doc.splitlines() if line.strip().startswith("/deploy")]
    return lines or list(_USAGE)


def _options(line: str) -> tuple[str, list[str]]:
    """A usage line without its `[--option]`s, and those options' spellings."""
    head, _, tail = line.partition(" [--")
    if not tail:
        return line, []
    spelled = ["--" + part.rstrip("] ") for part in (" [--" + tail).split(" [--")[1:]]
    return f"{head} [OPTIONS]", spelled


def help_message(config: Config) -> SlackMessage:
    """The grammar, what each command does, and the environments one may name."""
    usage, options = [], []
    for line in _usage():
        short, spelled = _options(line)
        usage.append(short)
        options += [option for option in spelled if option not in options]
    width = max(len(line) for line in usage)
    rows = [f"{line.ljust(width)}  {_WHAT.get(line.split()[1], _DEPLOY_WHAT)}" for line in usage]
    if options:
        wide = max(len(option) for option in options)
        rows += ["", "OPTIONS of a deploy or promotion:"]
        rows += [
            f"  {option.ljust(wide)}  {_OPTIONS.get(option.split()[0], '')}".rstrip()
            for option in options
        ]
    environments = ", ".join(
        f"{code(name)} ({escape(env.service)})" for name, env in sorted(config.environments.items())
    )
    text = "*How to use `/deploy`*\n" + code_block("\n".join(rows), lines=len(rows), limit=2500)
    text += f"\nEnvironments: {environments or 'none configured'}"
    if len(config.services) > 1:
        text += "\nName the service first when an environment could mean several."
    return SlackMessage("How to use /deploy", [section(text)])


_LIVE = re.compile(r"(<#[CG][A-Z0-9]+>)")


def denied(reason: str) -> SlackMessage:
    """Why the request was refused; only channel links (`<#C…>`) in `reason` stay live."""
    parts = _LIVE.split(reason)
    safe = "".join(part if _LIVE.fullmatch(part) else escape(part) for part in parts)
    return says(f"Not allowed. {safe}")


def window_closed(text: str) -> SlackMessage:
    """Refusal of a deploy asked for while its environment's deploy window is closed."""
    return says(
        f"Not started: {escape(text)}. Nothing was locked or built. An admin may deploy "
        'anyway with `--break-glass "reason"`; rollbacks are always allowed.'
    )


QUEUE = "deploy_queue"  # the busy answer's button: wait in line instead


def _thread_link(permalink: str) -> str:
    return f" · {link(permalink, 'its thread')}" if permalink else ""


def busy(
    lock: Lock,
    holder: DeployRecord | None,
    permalink: str,
    reviving: bool,
    queue_value: str,
) -> SlackMessage:
    """Refusal while another deploy holds the environment: the true holder, and a Queue button."""
    env = escape(lock.environment)
    what = f"{escape(holder.kind)} {code(lock.holder)}" if holder else f"deploy {code(lock.holder)}"
    by = f" by {person(holder.requester)}" if holder else ""
    since = when(holder.created_at if holder else lock.created_at)
    stage = ""
    if holder is not None and holder.running_stage:
        stage = f", in {escape(str(holder.running_stage))}"
    if holder is not None and holder.state == State.AWAITING_APPROVAL:
        stage = ", awaiting approval (its approvers decide; a rejection frees it)"
    text = f"*{env}* is busy: {what}{by} since {since}{stage}{_thread_link(permalink)}."
    if reviving:
        text += " Its worker was lost; it is being resumed now."
    text += f" Wait for it, or queue behind it: `/deploy {env} … --queue`."
    blocks = [section(text)]
    if queue_value:
        blocks.append(
            {
                "type": "actions",
                "block_id": "busy_actions",
                "elements": [button("Queue", QUEUE, queue_value, "primary")],
            }
        )
    return SlackMessage(plain(text), blocks)


def queued(record: DeployRecord, position: int, holder: Lock) -> SlackMessage:
    """The answer to a deploy that now waits in line."""
    env = escape(record.environment)
    ahead = "next in line" if position <= 1 else f"number {position} in line"
    return says(
        f"Queued {code(record.id)} for *{env}*, {ahead} behind {code(holder.holder)}: "
        "it starts by itself when the environment is free. Cancel it in its thread."
    )


def started(record: DeployRecord) -> SlackMessage:
    """The answer to an accepted deploy or rollback: where its thread is."""
    what = escape(record.kind)
    ref = f" of {code(record.ref)}" if record.ref else ""
    where = f"<#{record.slack_channel}>" if record.slack_channel else "`/deploy status`"
    return says(
        f"Started {what} {code(record.id)}{ref} to *{escape(record.environment)}*: "
        f"follow it in {where}."
    )


def never_started(record: DeployRecord) -> SlackMessage:
    """The answer to a deploy whose worker could not be started."""
    return says(
        f"Could not start {escape(record.kind)} {code(record.id)} of "
        f"*{escape(record.environment)}*: {said(record.error)}. Nothing was changed."
    )


def forced(environment: str, manual: Lock | None, abandoned: DeployRecord | None) -> SlackMessage:
    """The answer to `/deploy unlock ENV force`."""
    env = f"*{escape(environment)}*"
    parts = []
    if manual is not None:
        parts.append(f"lifted {person(manual.holder)}'s lock")
    if abandoned is not None:
        parts.append(
            f"abandoned {escape(abandoned.kind)} {code(abandoned.id)}: its build is stopped and "
            "the traffic that served before it is being put back (its thread says when)"
        )
    if not parts:
        return says(f"{env} was not locked.")
    return says(f"{env}: " + "; ".join(parts) + ".")


def locked_out(lock: Lock) -> SlackMessage:
    """Refusal while someone else's lock or a running deploy holds the environment."""
    env = f"*{escape(lock.environment)}*"
    if lock.kind == "deploy":
        return says(
            f"Deploy {code(lock.holder)} is already running in {env} "
            f"(since {when(lock.created_at)}). Wait for it to end, or cancel it in its thread."
        )
    reason = f": {escape(lock.reason)}" if lock.reason else ""
    return says(
        f"{env} is locked by {person(lock.holder)} since {when(lock.created_at)}{reason}. "
        f"Ask them, or `/deploy unlock {escape(lock.environment)}` once they agree."
    )


def lock_taken(lock: Lock) -> SlackMessage:
    """The environment is now locked (by `lock.holder`)."""
    reason = f": {escape(lock.reason)}" if lock.reason else ""
    env = escape(lock.environment)
    return says(
        f"*{env}* is locked by {person(lock.holder)}{reason}. "
        f"Nobody else can deploy it until `/deploy unlock {env}`."
    )


def unlocked(environment: str, was_locked: bool) -> SlackMessage:
    """The answer to `/deploy unlock ENV`."""
    env = f"*{escape(environment)}*"
    if was_locked:
        return says(f"{env} is unlocked: deploys may go ahead.")
    return says(f"{env} was not locked.")


# --- status and history ---------------------------------------------------------------


def _lock_line(lock: Lock) -> str:
    since = when(lock.created_at)
    if lock.kind == "deploy" and lock.expired(time.time()):
        return (
            f"Deploy {code(lock.holder)} since {since}: *its worker was lost* "
            "(its lease ran out); it is being resumed"
        )
    if lock.kind == "deploy":
        return f"Deploy {code(lock.holder)} running since {since}"
    reason = f": {escape(lock.reason)}" if lock.reason else ""
    return f"Locked by {person(lock.holder)} since {since}{reason}"


def _status_text(status: EnvironmentStatus) -> str:
    head = f"*{escape(status.environment)}* · {code(status.service)} in {code(status.location)}"
    if status.uri:
        head += f" · {link(status.uri, status.uri)}"
    lines = [head]
    if status.problem:
        lines.append(f"Cannot tell: {escape(status.problem)}")
    for row in status.serving:
        commit = code(row.commit[:12]) if row.commit else "unknown commit"
        deploy = f" · deploy {code(row.deploy_id)}" if row.deploy_id else ""
        if row.deployed_by and row.deployed_at is not None:
            deploy += f" by {person(row.deployed_by)} at {escape(when(row.deployed_at))}"
        if row.promoted_from:
            deploy += f" · promoted from *{escape(row.promoted_from)}*"
        lines.append(
            f"• {row.percent}% {code(row.name)} · commit {commit} · {image_ref(row.image)}{deploy}"
        )
    for row in status.tagged:
        lines.append(f"• 0% {code(row.name)} (tag {code(row.tag)})")
    if status.health is not None:
        health = status.health
        verdict = "healthy" if health.ok else f"*unhealthy*: {escape(health.message)}"
        lines.append(f"Health now: {verdict}")
    if status.last is not None:
        last = status.last
        lines.append(
            f"Last {escape(last.kind)} {code(last.id)} by {person(last.requester)} "
            f"at {when(last.created_at)}: {STATE_WORDS[last.state]}"
        )
    lines.extend(_lock_line(lock) for lock in status.locks)
    if not status.locks:
        lines.append("Not locked")
    return "\n".join(lines)


def status_message(statuses: list[EnvironmentStatus]) -> SlackMessage:
    """What runs where, one section per environment."""
    if not statuses:
        return says("No environments are configured.")
    room = (MAX_BLOCKS + 1) // 2 - 1
    blocks: list[dict[str, Any]] = []
    for index, status in enumerate(statuses[:room]):
        if index:
            blocks.append({"type": "divider"})
        blocks.append(section(_status_text(status)))
    if len(statuses) > room:
        blocks.append(context(f"… and {len(statuses) - room} more: ask for one by name."))
    names = ", ".join(status.environment for status in statuses)
    return SlackMessage(plain(f"Status of {names}"), blocks)


def history_message(environment: str, records: list[DeployRecord]) -> SlackMessage:
    """The environment's deploys and rollbacks, newest first."""
    env = f"*{escape(environment)}*"
    if not records:
        return says(f"{env}: no deploys yet.")
    lines = [f"{env}: the last {len(records)}"]
    for record in records:
        target = record.target_revision if record.kind == "rollback" else record.candidate_revision
        commit = f" · {code(record.commit[:12])}" if record.commit else ""
        revision = f" → {code(target)}" if target else ""
        lines.append(
            f"• {when(record.created_at)} · {escape(record.kind)} {code(record.id)} · "
            f"{STATE_WORDS[record.state]}{commit}{revision} · {person(record.requester)}"
        )
    return SlackMessage(plain(f"History of {environment}"), [section("\n".join(lines))])


# --- answers around the thread (acks, buttons, announcements) ------------------------------


def reply(text: str) -> SlackMessage:
    """A short answer to the asker (escaped; backticks still make code)."""
    return says(escape(text))


def follow_up(old: DeployRecord, new: DeployRecord, permalink: str | None = None) -> SlackMessage:
    """Reply in `old`'s thread when its Roll back, Retry or Promote button starts `new` in a
    new thread."""
    what = "rolling back" if new.kind == "rollback" else "deploying again"
    if new.promoted_from:
        what = "promoting this to"
    where = link(permalink, "the new thread") if permalink else "the new thread in this channel"
    env = escape(new.environment)
    return says(f"{person(new.requester)} is {what} *{env}* ({code(new.id)}): follow {where}.")


def release_note(repository: str, tag: str, sender: str, url: str = "") -> SlackMessage:
    """First reply of a thread a GitHub release started: which release, published by whom."""
    release = link(url, tag) if url else code(tag)
    return says(
        f"GitHub release {release} of {code(repository)} published by {code(sender)} "
        f"deploys {code(tag)}."
    )
