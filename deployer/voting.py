"""Approving or rejecting a parked deploy, the same for every front.

    not a deploy awaiting approval      refused, saying what it is now
    the requester approving their own   refused unless the environment's `allow_self`
    the same person again               nothing more is counted (a double click), said so,
                                        also while the deploy it woke is running
    a vote                              kept (`pipeline/approval.cast`); `decision` says
                                        whether a run must now be dispatched to act on it

Who is an approver at all is the front's to check first: Slack knows users and user
groups (`front/approvals.py`); the command line is trusted as whoever holds the
store and the cloud credentials, as `--break-glass` is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from deployer.config import Config
from deployer.pipeline import approval
from deployer.pipeline.approval import Decision
from deployer.pipeline.record import DeployRecord, State, Vote
from deployer.store.protocol import Store


@dataclass(frozen=True)
class Voted:
    record: DeployRecord
    vote: Vote
    votes: list[Vote]
    counted: bool  # False: this person had voted already
    decision: Decision  # WAITING: more approvals needed; else a run must act on it


def refusal(config: Config, record: DeployRecord | None, who: str, verdict: str) -> str | None:
    """Why `who` may not cast `verdict` on `record` (any front), or None."""
    if record is None:
        return "There is no such deploy."
    if record.state != State.AWAITING_APPROVAL:
        said = str(record.state).replace("_", " ")
        return f"Deploy {record.id} is not waiting for approval: it is {said}."
    settings = config.environment(record.environment)
    allow_self = settings.approval is not None and settings.approval.allow_self
    if verdict == approval.APPROVE and record.requester == who and not allow_self:
        return (
            f"You asked for deploy {record.id}; someone else must approve it "
            f"(`allow_self` is off for {record.environment})."
        )
    return None


def vote(
    config: Config, store: Store, deploy_id: str, who: str, verdict: str, reason: str = ""
) -> Voted | str:
    """Cast `who`'s `verdict` on `deploy_id`: what it did, or why it was refused."""
    record = store.get(deploy_id)
    if record is not None and record.approval_required and not record.state.finished:
        # A second click that lands after the first woke the deploy up is still a second
        # click: it counts once, while the deploy goes on.
        votes = approval.read_votes(store, deploy_id)
        earlier = next((vote for vote in votes if vote.who == who), None)
        if earlier is not None:
            return Voted(record, earlier, votes, False, approval.decided(store, record))
    refused = refusal(config, record, who, verdict)
    if refused is not None:
        return refused
    assert record is not None
    cast = approval.cast(store, deploy_id, Vote(who, verdict, time.time(), reason))
    mine = next(earlier for earlier in cast.votes if earlier.who == who)
    return Voted(record, mine, cast.votes, cast.counted, approval.decided(store, record))
