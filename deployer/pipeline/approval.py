"""Approval: a deploy's traffic waits for people once its candidate passed health at 0 %.

    first time there     the deploy parks: state awaiting_approval, its lock held with no
                         lease (`Lease.pause`), no run alive; the thread asks the approvers,
                         linking the candidate's tag URL, until `approval_due_at`
    a vote               kept apart from the record (a compare-and-swap document per deploy,
                         `approvals:<id>`), once per person: a double click counts once, and
                         two approvers clicking at once both count
    decided              `required` approvals, or one rejection, or the time is up: a run is
                         dispatched (by the vote, or by the sweep for a timeout) and resumes
                         the deploy; stage `approval` says who decided, or why not
    rejected / timed out the candidate's tag is removed and traffic stays where it was, read
                         back (the pipeline's `keep_safe` says so)

Who may vote is the front's business (`front/approvals.py`): votes reach here checked.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from enum import StrEnum

from deployer.config import Approval
from deployer.pipeline import failpoints, traffic
from deployer.pipeline.ports import Platform
from deployer.pipeline.preflight import Plan
from deployer.pipeline.record import DeployRecord, Outcome, Vote
from deployer.pipeline.stages import Deadline, Done, StageFailed, StageRunner
from deployer.store.protocol import Store

APPROVE, REJECT = "approve", "reject"
_CAS_TRIES = 20


class Decision(StrEnum):
    WAITING = "waiting"
    APPROVED = "approved"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


def _key(deploy_id: str) -> str:
    return f"approvals:{deploy_id}"


def read_votes(store: Store, deploy_id: str) -> list[Vote]:
    """The votes cast on `deploy_id`, in the order they were cast."""
    found = store.outbox_read(_key(deploy_id))
    if found is None:
        return []
    return [Vote(**vote) for vote in json.loads(found.body)]


@dataclass(frozen=True)
class Cast:
    votes: list[Vote]  # every vote, this one included
    counted: bool  # False: this person had voted already (a double click)


def cast(store: Store, deploy_id: str, vote: Vote) -> Cast:
    """Add `vote` unless its person voted already; every vote as stored after it."""
    for _ in range(_CAS_TRIES):
        found = store.outbox_read(_key(deploy_id))
        votes = [] if found is None else [Vote(**v) for v in json.loads(found.body)]
        if any(earlier.who == vote.who for earlier in votes):
            return Cast(votes, counted=False)
        votes.append(vote)
        body = json.dumps([asdict(v) for v in votes])
        if store.outbox_write(_key(deploy_id), body, None, found.version if found else 0):
            return Cast(votes, counted=True)
    raise RuntimeError(f"votes on {deploy_id} kept changing; try again")


def decide(votes: list[Vote], required: int, due_at: float | None, now: float) -> Decision:
    """What the votes (and the clock) say: a rejection wins over approvals."""
    if any(vote.verdict == REJECT for vote in votes):
        return Decision.REJECTED
    if len({vote.who for vote in votes if vote.verdict == APPROVE}) >= required:
        return Decision.APPROVED
    if due_at is not None and now >= due_at:
        return Decision.TIMED_OUT
    return Decision.WAITING


def decided(store: Store, record: DeployRecord, now: float | None = None) -> Decision:
    """The decision on a parked `record` now."""
    now = time.time() if now is None else now
    votes = read_votes(store, record.id)
    return decide(votes, record.approval_required, record.approval_due_at, now)


def who_said(votes: list[Vote], verdict: str) -> list[str]:
    return [vote.who for vote in votes if vote.verdict == verdict]


def waited(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


@dataclass
class ApprovalGate:
    """The approval step of one deploy run, between health and the first traffic step."""

    platform: Platform
    runner: StageRunner
    plan: Plan
    store: Store
    # None: the environment no longer asks for approval, though the deploy was asked for
    # when it did; it then moves traffic only on the approvals it already has.
    approval: Approval | None

    @property
    def timeout(self) -> float:
        return self.approval.timeout if self.approval is not None else 0.0

    def waiting(self) -> bool:
        """Whether the deploy must (still) wait; sets its due time the first time. Never
        without an `approval` to ask people by."""
        record = self.runner.record
        if record.approval_due_at is None:
            record.approval_due_at = time.time() + self.timeout
        if self.approval is None:
            return False
        return decided(self.store, record) == Decision.WAITING

    def decide(self, deadline: Deadline) -> Done:
        """Stage `approval`: who approved; or, rejected or timed out, the tag removed."""
        record = self.runner.record
        # The first run after each park may be killed here in tests (failpoints).
        failpoints.reached("approval.deciding", record.attempt - record.parks)
        votes = read_votes(self.store, record.id)
        record.votes = votes
        decision = decide(votes, record.approval_required, record.approval_due_at, time.time())
        if decision == Decision.APPROVED:
            names = ", ".join(who_said(votes, APPROVE))
            asked = (record.approval_due_at or time.time()) - self.timeout
            last = max(vote.at for vote in votes)
            return Done(f"approved by {names}, {waited(max(0.0, last - asked))} after asking")
        if decision == Decision.REJECTED:
            rejection = next(vote for vote in votes if vote.verdict == REJECT)
            because = f": {rejection.reason}" if rejection.reason else ""
            self._drop_candidate_tag(deadline)
            raise StageFailed(f"rejected by {rejection.who}{because}")
        got = len(who_said(votes, APPROVE))
        if self.approval is None:
            self._drop_candidate_tag(deadline)
            raise StageFailed(
                f"{record.environment} no longer asks for approval, but this deploy was asked "
                f"for when it did and has {got} of {record.approval_required}: traffic did not "
                "move; deploy again"
            )
        if decision == Decision.TIMED_OUT:
            self._drop_candidate_tag(deadline)
            raise StageFailed(
                f"no approval within {waited(self.timeout)}"
                f" (wanted {record.approval_required}, got {got})",
                outcome=Outcome.TIMED_OUT,
            )
        raise StageFailed("still waiting for approval")  # `waiting` said otherwise

    def _drop_candidate_tag(self, deadline: Deadline) -> None:
        """Route the baseline again, which has no candidate tag; say what was read back."""
        record, services = self.runner.record, self.platform.services
        if record.baseline_traffic is None or not traffic.shares(
            traffic.from_shares(record.baseline_traffic)
        ):
            return  # nothing else served: the candidate serves, and keeps its tag's URL
        baseline = traffic.from_shares(record.baseline_traffic)
        outcome = services.route(self.plan.service, list(baseline), deadline.left())
        state = services.current(self.plan.service)
        tagged = traffic.tag_url(state)
        if tagged or not outcome.ok:
            self.runner.progress(
                f"could not remove tag {traffic.CANDIDATE_TAG} from {record.candidate_revision}"
                f": {outcome.message or 'it is still there'}"
            )
            return
        self.runner.progress(
            f"tag {traffic.CANDIDATE_TAG} removed from {record.candidate_revision}; "
            f"traffic {traffic.describe(traffic.serving(state))}"
        )
