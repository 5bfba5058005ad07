"""What the pipeline tells its listeners: the terminal renders these now, Slack later."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deployer.config_environment import Approval
from deployer.pipeline.record import DeployRecord, Stage, StageResult


@dataclass(frozen=True)
class StageStarted:
    record: DeployRecord
    stage: Stage


@dataclass(frozen=True)
class StageProgressed:
    record: DeployRecord
    stage: Stage
    message: str
    link: str = ""


@dataclass(frozen=True)
class StageFinished:
    record: DeployRecord
    result: StageResult


@dataclass(frozen=True)
class Noted:
    """Something that happened to the deploy between its stages (a lost worker, a takeover)."""

    record: DeployRecord
    text: str


@dataclass(frozen=True)
class DeployFinished:
    record: DeployRecord
    plan: tuple[str, ...] = ()  # a dry run's plan, one line a step
    # A dry run ends SUCCEEDED when preflight passed, yet nothing was built or changed:
    # whoever tells how it ended must say so, not "succeeded".
    dry_run: bool = False


@dataclass(frozen=True)
class AwaitingApproval:
    """The candidate passed health; the deploy is parked until approved, rejected or out of
    time (`record.approval_due_at`): whoever tells the story asks the approvers."""

    record: DeployRecord
    approval: Approval


Event = AwaitingApproval | StageStarted | StageProgressed | StageFinished | Noted | DeployFinished
Listener = Callable[[Event], None]


def ignore(event: Event) -> None:
    """A listener that drops every event."""


def fan_out(*listeners: Listener) -> Listener:
    """One listener that hands every event to each of `listeners`, in order."""

    def each(event: Event) -> None:
        for listener in listeners:
            listener(event)

    return each
