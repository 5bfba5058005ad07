"""What the deployer remembers about each deploy: the record, saved stage by stage."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    PREFLIGHT = "preflight"
    BUILD = "build"
    DEPLOY = "deploy"
    READY = "ready"
    HEALTH = "health"
    PROMOTE = "promote"
    VERIFY = "verify"
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
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # traffic never moved
    ROLLED_BACK = "rolled_back"  # traffic moved, then went back to the previous revision
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in (State.PENDING, State.RUNNING)


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
    service: str
    requester: str  # "slack:U123", "github:owner/name", "cli:alice"
    ref: str | None = None
    state: State = State.PENDING
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    commit: str | None = None
    build_id: str | None = None
    build_log_url: str | None = None
    image: str | None = None
    previous_revision: str | None = None
    candidate_revision: str | None = None
    candidate_url: str | None = None
    target_revision: str | None = None  # rollback: where traffic goes
    stages: list[StageResult] = field(default_factory=list)
    error: str = ""
    cancel_requested: bool = False
    cancelled_by: str | None = None
    # Where the story is told: the Slack thread's parent message (channel, ts).
    slack_channel: str | None = None
    slack_ts: str | None = None

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
        return cls(**data)


@dataclass(frozen=True)
class Lock:
    """An environment lock: a person's (`manual`) or a running deploy's (`deploy`)."""

    environment: str
    kind: str  # "manual" or "deploy"
    holder: str  # requester or deploy id
    reason: str
    created_at: float
