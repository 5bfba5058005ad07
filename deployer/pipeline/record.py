"""What the deployer remembers about each deploy: the record, saved stage by stage."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from deployer.pipeline.changes import Changes
from deployer.pipeline.measurements import Figures, Measurement


class Stage(StrEnum):
    PREFLIGHT = "preflight"
    BUILD = "build"
    DEPLOY = "deploy"
    READY = "ready"
    HEALTH = "health"
    APPROVAL = "approval"
    PREDEPLOY = "predeploy"  # the predeploy hook (`pipeline/hooks.py`)
    PROMOTE = "promote"
    VERIFY = "verify"
    POSTDEPLOY = "postdeploy"  # the postdeploy hook
    WATCH = "watch"  # analysis keeps comparing after verify (`pipeline/watch.py`)
    ROLLBACK = "rollback"


DEPLOY_STAGES = (
    Stage.PREFLIGHT,
    Stage.BUILD,
    Stage.DEPLOY,
    Stage.READY,
    Stage.HEALTH,
    Stage.PROMOTE,
    Stage.VERIFY,
)
ROLLBACK_STAGES = (Stage.PREFLIGHT, Stage.PROMOTE, Stage.VERIFY)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class State(StrEnum):
    PENDING = "pending"  # holds its environment's lock, waiting for a worker
    QUEUED = "queued"  # waiting for the environment's lock, in FIFO order
    RUNNING = "running"
    # Passed health at 0 %; parked in the store, its lock held, no worker running, until
    # approved, rejected or timed out (`pipeline/approval.py`).
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # traffic never moved, or could not be put back
    ROLLED_BACK = "rolled_back"  # traffic moved, then went back to what served before
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"  # given up on (a forced unlock, or a worker lost too often)

    @property
    def finished(self) -> bool:
        return self not in (
            State.PENDING,
            State.QUEUED,
            State.RUNNING,
            State.AWAITING_APPROVAL,
        )


@dataclass(frozen=True)
class Share:
    """One traffic target as Cloud Run reported it: revision, percent, tag."""

    revision: str
    percent: int
    tag: str = ""


def shares_from(data: list[dict[str, Any]] | None) -> list[Share] | None:
    return None if data is None else [Share(**item) for item in data]


@dataclass(frozen=True)
class Note:
    """Something that happened to the deploy outside its stages (a lost worker, a takeover)."""

    at: float
    text: str


@dataclass(frozen=True)
class BreakGlass:
    """A deploy started with `--break-glass` despite its environment's deploy window."""

    by: str  # "slack:U123" (one of the environment's admins), "cli:alice"
    reason: str
    at: float
    window: str = ""  # the rule it broke, e.g. "deny Fri 16:00-Mon 09:00"; "" while open


@dataclass(frozen=True)
class Vote:
    """One approver's answer to a deploy waiting for approval."""

    who: str  # "slack:U123", "cli:alice"
    verdict: str  # "approve" or "reject"
    at: float
    reason: str = ""


@dataclass
class StageResult:
    stage: Stage
    outcome: Outcome
    started_at: float
    duration: float
    summary: str
    detail: str = ""
    link: str = ""


def new_deploy_id() -> str:
    """Sortable by time, unique without coordination: d-<ms since epoch in base 36>-<random>."""
    millis = int(time.time() * 1000)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    stamp = ""
    while millis:
        millis, rest = divmod(millis, 36)
        stamp = digits[rest] + stamp
    return f"d-{stamp}-{secrets.token_hex(3)}"


@dataclass
class DeployRecord:
    """One deploy or rollback, from request to end. Saved after every stage output."""

    id: str
    kind: str  # "deploy" or "rollback"
    environment: str
    service: str  # the `[services.X]` key
    requester: str  # "slack:U123", "github:owner/name", "cli:alice"
    ref: str | None = None
    state: State = State.PENDING
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    commit: str | None = None
    build_id: str | None = None
    build_log_url: str | None = None
    image: str | None = None
    # Build once: `--rebuild` asked for a new build whatever was built before; else a
    # successful build of the same commit and build config may be reused, and then
    # `build_id` is that build's and `reused_from` names the deploy that asked for it
    # (None when its build's tags do not say).
    rebuild: bool = False
    build_reused: bool = False
    reused_from: str | None = None
    previous_revision: str | None = None
    candidate_revision: str | None = None
    candidate_url: str | None = None
    service_url: str | None = None  # the service's own URL, the audience of probes' ID tokens
    target_revision: str | None = None  # rollback: where traffic goes
    stages: list[StageResult] = field(default_factory=list)
    error: str = ""
    cancel_requested: bool = False
    cancelled_by: str | None = None
    # Where the story is told: the Slack thread's parent message (channel, ts).
    slack_channel: str | None = None
    slack_ts: str | None = None
    # The traffic that served when the deploy first began, read back from the service at
    # its first preflight and never re-read: resume, rollback and "untouched" are judged
    # against it. None until then; empty when the deploy creates the service.
    baseline_traffic: list[Share] | None = None
    # The traffic read back from the service when the deploy ended.
    final_traffic: list[Share] | None = None
    attempt: int = 0  # how many runs (worker attempts) have taken this deploy on
    parks: int = 0  # how many of those ended parked awaiting approval (not lost)
    handovers_failed: int = 0  # dispatches that could not start a worker
    running_stage: Stage | None = None  # the stage a run started and has not finished
    queued_at: float | None = None
    abandoned_by: str | None = None
    notes: list[Note] = field(default_factory=list)
    break_glass: BreakGlass | None = None
    # What the candidate changes against what served, read once it passed health and
    # before traffic moved (names only, never a value); None until then.
    changes: Changes | None = None
    # Promotion: the environment whose serving image this deploy takes (no build), the
    # revision it served from, and the digest a "Promote" button was drawn for.
    promoted_from: str | None = None
    promoted_revision: str | None = None
    promote_digest: str | None = None
    # Environments that may take this deploy's image once it succeeded (their
    # `promote_from`), as configured when it was asked for: the thread offers them.
    promote_to: list[str] = field(default_factory=list)
    # The Cloud Run service the environment deploys (`Config.target`), when it was asked
    # for; None in records kept before it was.
    cloud_run_service: str | None = None
    # Approval: how many approvals traffic waits for (0: none), the answers read back,
    # and until when it waits (set when it first parked).
    approval_required: int = 0
    votes: list[Vote] = field(default_factory=list)
    approval_due_at: float | None = None
    # Analysis: what the stable revision answered before the rollout began (the watch
    # compares with it), each judged window in order, and until when the watch runs.
    stable_before: Figures | None = None
    analysis: list[Measurement] = field(default_factory=list)
    watch_until: float | None = None

    def note(self, text: str) -> None:
        """Keep a line of the deploy's story that no stage tells."""
        self.notes.append(Note(time.time(), text))

    def stage(self, stage: Stage) -> StageResult | None:
        """The latest result of `stage`, if it ran."""
        for result in reversed(self.stages):
            if result.stage == stage:
                return result
        return None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DeployRecord:
        data: dict[str, Any] = json.loads(text)
        data["state"] = State(data["state"])
        data["stages"] = [
            StageResult(**{**s, "stage": Stage(s["stage"]), "outcome": Outcome(s["outcome"])})
            for s in data["stages"]
        ]
        data["baseline_traffic"] = shares_from(data.get("baseline_traffic"))
        data["final_traffic"] = shares_from(data.get("final_traffic"))
        running = data.get("running_stage")
        data["running_stage"] = Stage(running) if running else None
        data["notes"] = [Note(**note) for note in data.get("notes") or []]
        glass = data.get("break_glass")
        data["break_glass"] = BreakGlass(**glass) if glass else None
        data["votes"] = [Vote(**vote) for vote in data.get("votes") or []]
        changes = data.get("changes")
        data["changes"] = Changes.from_dict(changes) if changes else None
        before = data.get("stable_before")
        data["stable_before"] = Figures.from_dict(before) if before else None
        data["analysis"] = [Measurement.from_dict(item) for item in data.get("analysis") or []]
        return cls(**data)


@dataclass(frozen=True)
class Lock:
    """An environment lock: a person's (`manual`) or a deploy's (`deploy`).

    A deploy lock is leased: `owner` names the run (worker execution, process) that
    holds it, and it is renewed by that run's heartbeat until `lease_until`. Once the
    lease has run out the run is presumed dead, and one resumption of the same deploy
    may take the lock over. Manual locks have no lease (`lease_until` 0).
    """

    environment: str
    kind: str  # "manual" or "deploy"
    holder: str  # requester or deploy id
    reason: str
    created_at: float
    owner: str = ""
    lease_until: float = 0.0

    def expired(self, now: float) -> bool:
        """Whether the lease ran out (never, for a lock without one)."""
        return 0 < self.lease_until < now

    def yields_to(self, wanted: Lock, now: float) -> bool:
        """Whether `wanted` may replace this lock: the same holder, and this lock's owner
        is `wanted`'s, or empty (handed over, not yet taken by a run), or its lease ran out."""
        return self.holder == wanted.holder and (
            self.owner in ("", wanted.owner) or self.expired(now)
        )
