"""Traffic targets: checking them as a request arrives, resolving them once revisions run.

TrafficTarget(type LATEST | REVISION, revision, percent, tag)
  -> validate(): shape, percents summing to 100, unique valid tags    (INVALID_ARGUMENT)
  -> resolve():  each target to a concrete revision that exists and is ready
                 (else the operation fails and traffic stays where it was)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from google.cloud import run_v2

from deployer_sandbox.cloud_run.names import check_tag
from deployer_sandbox.cloud_run.resources import State
from deployer_sandbox.cloud_run.state import RevisionRecord
from deployer_sandbox.common.rpc import RpcError, failed_precondition, invalid

Kind = run_v2.TrafficTargetAllocationType
LATEST = Kind.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST
REVISION = Kind.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def _revision_id(target: run_v2.TrafficTarget) -> str:
    # Clients name revisions by id; a full resource name means the same revision.
    return str(target.revision).rsplit("/", 1)[-1]


def validate(
    service_id: str, targets: Sequence[run_v2.TrafficTarget]
) -> list[run_v2.TrafficTarget]:
    """Checked, normalised targets; no traffic at all means 100 % to the latest revision."""
    if not targets:
        return [run_v2.TrafficTarget(type_=LATEST, percent=100)]
    checked: list[run_v2.TrafficTarget] = []
    tags: dict[str, int] = {}
    total = 0
    for index, given in enumerate(targets):
        target = run_v2.TrafficTarget(given)
        if target.type_ == Kind.TRAFFIC_TARGET_ALLOCATION_TYPE_UNSPECIFIED:
            target.type_ = REVISION if target.revision else LATEST  # type: ignore[assignment]
        kind = target.type_
        if kind == REVISION and not target.revision:
            raise invalid(
                f"service.traffic[{index}].revision: a revision name is required when the "
                "type is TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION."
            )
        if kind == LATEST and target.revision:
            raise invalid(
                f"service.traffic[{index}].revision: must be empty when the type is "
                "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST."
            )
        if kind == REVISION:
            target.revision = _revision_id(target)
        if not 0 <= target.percent <= 100:
            raise invalid(
                f"service.traffic[{index}].percent: Invalid value {target.percent}: "
                "must be between 0 and 100."
            )
        if target.tag:
            check_tag(service_id, target.tag, index)
            if target.tag in tags:
                raise invalid(
                    f'service.traffic: Multiple definitions for "{target.tag}": '
                    f"service.traffic[{tags[target.tag]}].tag, service.traffic[{index}].tag"
                )
            tags[target.tag] = index
        total += target.percent
        checked.append(target)
    if total != 100:
        raise invalid(f"service.traffic: Traffic targets sum to {total}, want 100")
    return checked


def named_revisions(targets: Sequence[run_v2.TrafficTarget]) -> set[str]:
    """Ids of the revisions that REVISION targets name."""
    return {str(t.revision) for t in targets if Kind(t.type_) == REVISION}


def not_ready_error(revision_id: str, message: str) -> RpcError:
    """The operation error for traffic sent to a revision that cannot serve it."""
    detail = f" {message}" if message else ""
    return failed_precondition(
        f"Revision '{revision_id}' is not ready and cannot serve traffic.{detail}"
    )


@dataclass
class Resolution:
    """Targets resolved to revision ids: who gets traffic, who has a tag, the statuses."""

    split: dict[str, int] = field(default_factory=dict)  # revision id -> percent
    tags: dict[str, str] = field(default_factory=dict)  # tag -> revision id
    targets: list[run_v2.TrafficTarget] = field(default_factory=list)

    def serving(self) -> set[str]:
        """Revisions that receive traffic or hold a tag: they must keep running."""
        return {r for r, percent in self.split.items() if percent > 0} | set(self.tags.values())

    def statuses(self, tag_url: Callable[[str], str]) -> list[run_v2.TrafficTargetStatus]:
        """`traffic_statuses`: the targets as routed, with each tag's URL."""
        return [
            run_v2.TrafficTargetStatus(
                type_=target.type_,
                revision=target.revision,
                percent=target.percent,
                tag=target.tag,
                uri=tag_url(target.tag) if target.tag else "",
            )
            for target in self.targets
        ]


def resolve(
    targets: Sequence[run_v2.TrafficTarget],
    revisions: dict[str, RevisionRecord],
    latest_ready: str,
) -> Resolution:
    """Map targets onto ready revisions; FAILED_PRECONDITION if one is missing or not ready."""
    resolution = Resolution(targets=[run_v2.TrafficTarget(t) for t in targets])
    for target in targets:
        if Kind(target.type_) == LATEST:
            if not latest_ready:
                raise failed_precondition(
                    "No revision of this service is ready to serve the LATEST traffic target."
                )
            revision_id = latest_ready
        else:
            revision_id = str(target.revision)
            record = revisions.get(revision_id)
            if record is None:
                raise failed_precondition(
                    f"Revision '{revision_id}' does not exist or is deleted. Update all traffic "
                    "to route to currently available revisions."
                )
            if record.ready_state() != State.CONDITION_SUCCEEDED:
                raise not_ready_error(revision_id, record.ready_message())
        resolution.split[revision_id] = resolution.split.get(revision_id, 0) + target.percent
        if target.tag:
            resolution.tags[str(target.tag)] = revision_id
    return resolution
