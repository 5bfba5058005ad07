"""What the Cloud Run adapter asks for: the candidate's RevisionTemplate, traffic targets, states.

Pure functions between the pipeline's dataclasses and `run_v2` messages, kept
apart from the adapter's calls that send them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.cloud import run_v2
from google.protobuf import duration_pb2

from deployer.pipeline.ports import CandidateSpec, PinnedSecret, ServiceState, TrafficShare

Kind = run_v2.TrafficTargetAllocationType
REVISION = Kind.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = Kind.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST


def short_name(name: str) -> str:
    """`projects/.../revisions/x` -> `x` (short names pass through)."""
    return name.rsplit("/", 1)[-1]


def _copy(message: Any) -> Any:
    cls = type(message)
    return cls.deserialize(cls.serialize(message))


def candidate_template(
    current: run_v2.RevisionTemplate, spec: CandidateSpec
) -> run_v2.RevisionTemplate:
    """`current` with the deployer's fields set from `spec`; everything else (volumes, VPC...) kept."""
    template: run_v2.RevisionTemplate = _copy(current)
    # Always a fresh name: reusing one with another template is refused (google-cloud-python #11870).
    template.revision = spec.revision
    template.labels.update(spec.labels)
    template.annotations.update(spec.annotations)
    if not template.containers:
        template.containers.append(run_v2.Container())
    container = template.containers[0]  # the ingress container; sidecars are left alone
    container.image = spec.image
    # Replaced, not merged: a variable dropped from the config must disappear from the revision.
    del container.env[:]
    container.env.extend(container_env(spec.env, spec.secret_env))
    settings = spec.settings
    container.resources.limits["memory"] = settings.memory
    container.resources.limits["cpu"] = settings.cpu
    # Keep the port's name: it selects the protocol (http1 or h2c).
    port_name = container.ports[0].name if container.ports else "http1"
    del container.ports[:]
    container.ports.append(run_v2.ContainerPort(name=port_name, container_port=settings.port))
    template.scaling.min_instance_count = settings.min_instances
    template.scaling.max_instance_count = settings.max_instances
    template.max_instance_request_concurrency = settings.concurrency
    template.timeout = duration_pb2.Duration(seconds=settings.request_timeout)
    if settings.service_account:
        template.service_account = settings.service_account
    return template


def container_env(
    env: Mapping[str, str], secret_env: Mapping[str, PinnedSecret]
) -> list[run_v2.EnvVar]:
    """A container's variables: plain values, then secrets pinned to their versions (read
    by Cloud Run when an instance or a job's task starts)."""
    plain = [run_v2.EnvVar(name=name, value=value) for name, value in env.items()]
    return plain + [
        run_v2.EnvVar(
            name=name,
            value_source=run_v2.EnvVarSource(
                secret_key_ref=run_v2.SecretKeySelector(
                    secret=pinned.secret, version=pinned.version
                )
            ),
        )
        for name, pinned in secret_env.items()
    ]


def _target(revision: str, percent: int, tag: str) -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=percent, tag=tag)


def _merged(shares: Iterable[TrafficShare]) -> list[TrafficShare]:
    """Untagged shares of one revision summed; untagged 0 % shares dropped (they mean nothing)."""
    untagged: dict[str, int] = {}
    tagged: list[TrafficShare] = []
    for share in shares:
        if share.tag:
            tagged.append(TrafficShare(share.revision, share.percent, share.tag))
        elif share.percent > 0:
            untagged[share.revision] = untagged.get(share.revision, 0) + share.percent
    return [TrafficShare(rev, pct) for rev, pct in untagged.items()] + tagged


def split_targets(split: Sequence[TrafficShare]) -> list[run_v2.TrafficTarget]:
    """REVISION targets for exactly `split` (tagged 0 % shares kept so their URLs stay)."""
    return [_target(s.revision, s.percent, s.tag) for s in _merged(split)]


def candidate_traffic(keep: ServiceState, revision: str, tag: str) -> list[run_v2.TrafficTarget]:
    """Traffic pinned as in `keep` (by revision, never LATEST), plus `revision` at 0 % with `tag`."""
    shares = []
    for share in keep.traffic:
        if not share.revision:
            continue  # a LATEST entry with nothing ready: nothing to pin
        if share.tag == tag:
            # The tag moves to the new candidate; an old candidate's 0 % entry goes.
            if share.percent == 0:
                continue
            share = TrafficShare(share.revision, share.percent)
        if share.percent > 0 or share.tag:
            shares.append(share)
    return [*split_targets(shares), _target(revision, 0, tag)]


def same_traffic(found: Sequence[TrafficShare], wanted: Sequence[TrafficShare]) -> bool:
    """Whether two splits route the same (order, URLs and empty entries aside)."""

    def key(shares: Sequence[TrafficShare]) -> list[tuple[str, int, str]]:
        return sorted((s.revision, s.percent, s.tag) for s in _merged(shares))

    return key(found) == key(wanted)


def describe_traffic(shares: Sequence[TrafficShare]) -> str:
    """`a 90%, b 10% (tag canary)` for messages."""
    parts = [
        f"{s.revision or '?'} {s.percent}%" + (f" (tag {s.tag})" if s.tag else "")
        for s in _merged(shares)
    ]
    return ", ".join(parts) or "nothing"


def service_state(service: run_v2.Service) -> ServiceState:
    """The pipeline's view of a Service: short revision names, LATEST resolved."""
    latest_ready = short_name(service.latest_ready_revision)
    traffic = tuple(
        TrafficShare(
            revision=latest_ready if Kind(status.type_) == LATEST else short_name(status.revision),
            percent=status.percent,
            tag=status.tag,
            uri=status.uri,
        )
        for status in service.traffic_statuses
    )
    return ServiceState(
        name=service.name,
        uri=service.uri,
        traffic=traffic,
        latest_ready_revision=latest_ready or None,
        latest_created_revision=short_name(service.latest_created_revision) or None,
        etag=service.etag,
    )


def ready_condition(conditions: Iterable[run_v2.Condition]) -> run_v2.Condition | None:
    """The `Ready` condition among `conditions`, if there is one."""
    return next((c for c in conditions if c.type_ == "Ready"), None)
