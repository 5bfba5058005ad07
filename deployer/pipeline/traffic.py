"""Traffic: the splits a rollout asks for, and looking at where traffic really is.

Every claim the pipeline makes about traffic ("untouched", "back on X") is
made after reading the service again, never from what it asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

from deployer.pipeline.ports import ServiceState, TrafficShare
from deployer.pipeline.record import Share
from deployer.run_names import CANDIDATE_TAG as CANDIDATE_TAG  # still importable from here


def split_towards(
    candidate: str, percent: int, keep: tuple[TrafficShare, ...]
) -> list[TrafficShare]:
    """`percent` to the candidate, the rest shared by the kept revisions in their proportions."""
    rest = 100 - percent
    total = sum(share.percent for share in keep) or 1
    shares = [TrafficShare(candidate, percent, CANDIDATE_TAG)]
    given = 0
    for index, share in enumerate(keep):
        part = rest - given if index == len(keep) - 1 else share.percent * rest // total
        given += part
        # The tag belongs to the candidate now (a first deploy leaves it on its revision):
        # Cloud Run refuses two targets with one tag.
        tag = "" if share.tag == CANDIDATE_TAG else share.tag
        shares.append(TrafficShare(share.revision, part, tag))
    return shares


def serving(state: ServiceState | None) -> list[tuple[str, int]]:
    """(revision, percent) of every revision that receives requests."""
    return [(share.revision, share.percent) for share in (state.serving() if state else [])]


def shares(keep: Sequence[TrafficShare]) -> list[tuple[str, int]]:
    return [(share.revision, share.percent) for share in keep if share.percent > 0]


def describe(pairs: Sequence[tuple[str, int]]) -> str:
    """`backend-00042-abc 90%, backend-00043-def 10%`, or `nothing`."""
    return ", ".join(f"{revision} {percent}%" for revision, percent in pairs) or "nothing"


def audience(public: bool, service_url: str) -> str:
    """Who probes' ID tokens are for: the service's own URL (Cloud Run checks `aud`
    against the service's URLs, whichever URL is called), or "" for a public service."""
    return "" if public else service_url


def tag_url(state: ServiceState | None, tag: str = CANDIDATE_TAG) -> str:
    """The URL Cloud Run gives `tag`, or ""."""
    if state is None:
        return ""
    return next((share.uri for share in state.traffic if share.tag == tag), "")


def to_shares(targets: Sequence[TrafficShare]) -> list[Share]:
    """Traffic as a record keeps it: revision, percent and tag of every target."""
    return [Share(t.revision, t.percent, t.tag) for t in targets if t.revision]


def from_shares(shares: Sequence[Share]) -> tuple[TrafficShare, ...]:
    return tuple(TrafficShare(s.revision, s.percent, s.tag) for s in shares)
