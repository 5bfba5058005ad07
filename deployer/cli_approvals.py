"""`deployer promote FROM ENV`, `deployer approve ID`, `deployer reject ID [--reason]`.

A promotion runs here, in the terminal, like `deployer deploy`. A vote is kept as the
Slack buttons keep one (`deployer.voting`); the person at the terminal is trusted as
`cli:<user>`, as for `--break-glass`: whoever holds the store and the cloud credentials
could move traffic by hand anyway. Self-approval is refused all the same. Once the vote
decides, the deploy is resumed here, to its end, telling its Slack thread too when
`SLACK_BOT_TOKEN` is set.

Exit status: 0 when the operation succeeded (a promotion or a resumed deploy that
succeeded, a vote that was counted); 1 when it failed or was refused; 3 when a deploy
is left awaiting approval.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from deployer import voting
from deployer.pipeline.approval import APPROVE, Decision
from deployer.pipeline.record import DeployRecord, State

if TYPE_CHECKING:
    from deployer.engine import Engine
    from deployer.pipeline.events import Listener

AWAITING_EXIT = 3


def exit_status(record: DeployRecord) -> int:
    """0 succeeded, 3 awaiting approval, 1 anything else."""
    if record.state == State.AWAITING_APPROVAL:
        return AWAITING_EXIT
    return 0 if record.state == State.SUCCEEDED else 1


def promote(
    engine: Engine,
    source: str,
    environment: str,
    requester: str,
    progress: Listener,
    dry_run: bool,
    prepare: Callable[[DeployRecord], None] = lambda record: None,
) -> DeployRecord:
    """Promote here; `prepare` marks the record first (`--break-glass`)."""
    record = engine.new_promotion(source, environment, requester)
    prepare(record)
    return engine.deploy(record, progress, dry_run=dry_run)


def vote(
    engine: Engine, deploy_id: str, who: str, verdict: str, reason: str, progress: Listener
) -> int:
    """Cast the vote; resume the deploy here once it is decided."""
    outcome = voting.vote(engine.config, engine.store, deploy_id, who, verdict, reason)
    if isinstance(outcome, str):
        print(f"deployer: {outcome}", file=sys.stderr)
        return 1
    if not outcome.counted:
        print(f"{who} voted on {deploy_id} already; it counts once")
        return 0
    _tell_thread(engine, outcome)
    verb = "approved" if verdict == APPROVE else "rejected"
    if outcome.decision == Decision.WAITING:
        got = sum(1 for each in outcome.votes if each.verdict == APPROVE)
        print(f"{deploy_id} {verb} by {who}: {got} of {outcome.record.approval_required}")
        return 0
    print(f"{deploy_id} {verb} by {who}; resuming it here")
    return exit_status(_resume(engine, deploy_id, progress))


def _resume(engine: Engine, deploy_id: str, progress: Listener) -> DeployRecord:
    if os.environ.get("SLACK_BOT_TOKEN"):
        from deployer.front.worker import run_deploy

        return run_deploy(deploy_id, engine, progress=progress)
    return engine.resume(deploy_id, progress)


def _tell_thread(engine: Engine, voted: voting.Voted) -> None:
    """The vote in the deploy's Slack thread, when it has one and a bot token is set."""
    if voted.record.slack_channel is None or not os.environ.get("SLACK_BOT_TOKEN"):
        return
    from deployer.front.approval_messages import vote_line
    from deployer.front.worker import worker_outbox

    try:
        worker_outbox(engine).reply(voted.record.id, vote_line(voted))
    except Exception as error:  # the vote stands; the resumed run tells the rest
        print(f"deployer: the vote was not written to the thread: {error}", file=sys.stderr)
