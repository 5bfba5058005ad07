"""The words of approvals and promotions in a deploy's thread: the ask, each vote, the
parent's approval line and buttons, and the "Promote to ENV" button."""

from __future__ import annotations

import json
from typing import Any

from deployer.config_environment import Approval
from deployer.front.mrkdwn import button, code, escape, link, person, says, when
from deployer.front.ports import SlackMessage
from deployer.pipeline.approval import APPROVE, REJECT
from deployer.pipeline.promotion import digest_of
from deployer.pipeline.record import DeployRecord, State, Vote
from deployer.voting import Voted

# Button action ids. Approve and Reject carry the deploy id. Promote buttons are
# `deploy_promote:ENV` (action ids are unique within a block, and a deploy may promote
# to several environments) and carry `promote_value`.
APPROVE_BUTTON, REJECT_BUTTON, PROMOTE_BUTTON = "deploy_approve", "deploy_reject", "deploy_promote:"


def local_time(epoch: float) -> str:
    """A time each reader sees in their own time zone, UTC for clients that cannot
    (api.slack.com/reference/surfaces/formatting#date-formatting)."""
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{when(epoch)}>"


def approvers_text(approval: Approval) -> str:
    """`<@U1>, <!subteam^S2>`: the approvers as Slack mentions, so they are notified."""
    return ", ".join(
        f"<!subteam^{who}>" if who.startswith("S") else f"<@{who}>" for who in approval.approvers
    )


def approval_ask(record: DeployRecord, approval: Approval) -> SlackMessage:
    """The reply that asks for approval once the candidate passed health at 0 %."""
    env = escape(record.environment)
    got = len({vote.who for vote in record.votes if vote.verdict == APPROVE})
    wanted = record.approval_required - got
    try_it = (
        f"Try it first: {link(record.candidate_url, 'the candidate')} (its own URL, no traffic)."
        if record.candidate_url
        else ""
    )
    due = local_time(record.approval_due_at) if record.approval_due_at else "its timeout"
    self_rule = "" if approval.allow_self else f" {person(record.requester)} may not approve it."
    return says(
        f"🔐 *Approval needed* before traffic moves on *{env}*: {code(record.candidate_revision or '')} "
        f"passed health at 0%. {try_it}\n"
        f"{approvers_text(approval)}: {wanted} more approval{'s' if wanted != 1 else ''} wanted, "
        f"with the buttons above or `/deploy approve {record.id}`; "
        f"`/deploy reject {record.id} [reason]` stops it.{self_rule}\n"
        f"Until {due}: then it counts as rejected, its tag is removed and traffic stays."
    )


def vote_line(voted: Voted) -> SlackMessage:
    """What a vote did, in the thread."""
    vote, record = voted.vote, voted.record
    if vote.verdict == REJECT:
        because = f": “{escape(vote.reason)}”" if vote.reason else ""
        return says(
            f"❌ *Rejected* by {person(vote.who)}{because}. The candidate's tag goes; "
            "traffic stays where it is."
        )
    got = len({v.who for v in voted.votes if v.verdict == APPROVE})
    if got >= record.approval_required:
        then = "traffic moves now."
    else:
        then = f"{record.approval_required - got} more wanted."
    return says(
        f"✅ *Approved* by {person(vote.who)} ({got} of {record.approval_required}): {then}"
    )


def approval_line(record: DeployRecord) -> str:
    """The parent's line about approval: who approved or rejected, or what it waits for."""
    if not record.approval_required:
        return ""
    said = [_vote_text(vote) for vote in record.votes]
    if record.state == State.AWAITING_APPROVAL:
        got = len({vote.who for vote in record.votes if vote.verdict == APPROVE})
        due = f" until {local_time(record.approval_due_at)}" if record.approval_due_at else ""
        wanted = f"⏳ *Awaiting approval*: {got} of {record.approval_required}{due}"
        return " · ".join([wanted, *said])
    return " · ".join(said)


def _vote_text(vote: Vote) -> str:
    verb = "approved" if vote.verdict == APPROVE else "rejected"
    return f"{verb} by {person(vote.who)} at {when(vote.at)}"


def approval_buttons(record: DeployRecord) -> list[dict[str, Any]]:
    env = escape(record.environment)
    candidate = code(record.candidate_revision or "the candidate")
    yes = (
        "Approve this deploy?",
        f"Traffic on *{env}* moves to {candidate} as its rollout says.",
        "Approve",
        "Not yet",
    )
    no = (
        "Reject this deploy?",
        f"{candidate} loses its tag and *{env}* keeps the traffic it has.",
        "Reject",
        "Keep waiting",
    )
    return [
        button("Approve", APPROVE_BUTTON, record.id, "primary", yes),
        button("Reject", REJECT_BUTTON, record.id, "danger", no),
    ]


def promote_value(record: DeployRecord, environment: str) -> str:
    """What a Promote button carries: the deploy, where to, and the digest it was drawn for."""
    return json.dumps(
        {"deploy": record.id, "to": environment, "digest": digest_of(record.image or "")},
        separators=(",", ":"),
    )


def promote_buttons(record: DeployRecord) -> list[dict[str, Any]]:
    """A succeeded deploy's "Promote to ENV" buttons (none without an image by digest)."""
    digest = digest_of(record.image or "")
    if not digest or record.state != State.SUCCEEDED:
        return []
    buttons = []
    for environment in record.promote_to:
        ask = (
            f"Promote to {environment}?",
            f"Deploy image `{digest[:19]}` (commit {code((record.commit or '')[:12])}) to "
            f"*{escape(environment)}*, if *{escape(record.environment)}* still serves it.",
            "Promote",
            "No",
        )
        label = f"Promote to {environment}"[:75]
        buttons.append(
            button(
                label,
                PROMOTE_BUTTON + environment,
                promote_value(record, environment),
                "primary",
                ask,
            )
        )
    return buttons
