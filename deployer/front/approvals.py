"""Approve and Reject, from Slack: the buttons of a parked deploy's thread and
`/deploy approve ID`, `/deploy reject ID [reason]`.

    someone outside the approvers      refused privately (the requester may still reject:
                                       withdraw their own deploy)
    the rules of `deployer.voting`     not parked, self-approval, a second vote
    a vote counted                     said in the thread; once decided (approved, or one
                                       rejection) a run is dispatched at once to act on it,
                                       otherwise the parent shows the count
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from deployer import voting
from deployer.front import messages
from deployer.front.access import UserGroupMembers, slack_approver_denial
from deployer.front.approval_messages import vote_line
from deployer.front.context import FrontContext
from deployer.front.deploy_messages import deploy_parent
from deployer.front.messages import SlackMessage
from deployer.pipeline.approval import APPROVE, Decision

log = logging.getLogger(__name__)


def vote_from_slack(
    context: FrontContext,
    deploy_id: str,
    verdict: str,
    reason: str,
    user: str,
    members: UserGroupMembers,
) -> SlackMessage | None:
    """Cast `user`'s `verdict` on `deploy_id`; the private answer, if any."""
    record = context.store.get(deploy_id)
    if record is None:
        return messages.reply(f"There is no deploy {deploy_id}.")
    who = f"slack:{user}"
    withdrawing = verdict != APPROVE and record.requester == who
    if not withdrawing:
        denial = slack_approver_denial(context.config, record.environment, user, members)
        if denial is not None:
            return messages.denied(denial)
    outcome = voting.vote(context.config, context.store, deploy_id, who, verdict, reason)
    if isinstance(outcome, str):
        return messages.reply(outcome)
    if not outcome.counted:
        earlier = "approved" if outcome.vote.verdict == APPROVE else "rejected"
        return messages.reply(f"You {earlier} deploy {deploy_id} already; it counts once.")
    tell_thread(context, outcome)
    if outcome.decision != Decision.WAITING:
        # The run resumes from the store; a dispatch that fails is retried by the sweep.
        context.dispatcher.dispatch(deploy_id)
    return None


def tell_thread(context: FrontContext, voted: voting.Voted) -> None:
    """The vote in the thread; while more are wanted, the parent's count too (once
    decided, the resumed run tells the rest)."""
    record = voted.record
    if record.slack_channel is None:
        return
    try:
        context.outbox.reply(record.id, vote_line(voted))
        if voted.decision == Decision.WAITING:
            shown = replace(record, votes=voted.votes)
            context.outbox.parent(record.id, deploy_parent(shown, time.time()))
    except Exception as error:  # the vote stands; the thread catches up with the run
        log.warning("could not tell %s's thread about a vote: %s", record.id, error)
