"""What buttons carry beyond a deploy id, checked again when it comes back (it came
back from a client): a busy answer's Queue button (the request, to send again queued)
and a thread's Promote button (the deploy and where to)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from deployer.config import Config
from deployer.front import grammar
from deployer.pipeline.record import DeployRecord, State
from deployer.store.protocol import Store


@dataclass(frozen=True)
class QueueRequest:
    kind: str  # "deploy" or "rollback"
    environment: str
    ref: str | None
    service: str | None
    revision: str | None  # a rollback's target
    rebuild: bool
    promoted_from: str | None  # a promotion's source environment


def queue_value(record: DeployRecord) -> str:
    """What the busy answer's Queue button carries: the request, to send again queued."""
    return json.dumps(
        {
            "kind": record.kind,
            "environment": record.environment,
            "ref": record.ref,
            "service": record.service,
            "revision": record.target_revision,
            "rebuild": record.rebuild,
            "promoted_from": record.promoted_from,
        },
        separators=(",", ":"),
    )


def queue_request(value: str, config: Config) -> QueueRequest | None:
    """The request a Queue button carries, checked again (it came back from a client)."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    environment, kind = data.get("environment"), data.get("kind")
    ref, service, revision = data.get("ref"), data.get("service"), data.get("revision")
    source = data.get("promoted_from")
    if not isinstance(environment, str) or environment not in config.environments:
        return None
    if kind not in ("deploy", "rollback"):
        return None
    if source is not None:
        parsed = grammar.parse(f"promote {source} {environment}", config)
        if kind != "deploy" or not isinstance(parsed, grammar.Promote):
            return None
        ref = None  # a promotion takes what the source serves when it starts
    text = " ".join(str(part) for part in (environment, ref) if part)
    if kind == "deploy" and not isinstance(grammar.parse(text, config), grammar.Deploy):
        return None
    if revision is not None and not isinstance(revision, str):
        return None
    if service is not None and service != config.environments[environment].service:
        return None
    return QueueRequest(
        str(kind),
        environment,
        ref if isinstance(ref, str) else None,
        service,
        revision,
        data.get("rebuild") is True,
        source,
    )


def superseded(store: Store, source: DeployRecord) -> DeployRecord | None:
    """A newer succeeded deploy of `source`'s environment with another image: what serves
    there now, as far as the store knows, when it is not what a Promote button was drawn
    for. None when the store cannot tell (a rollback since: preflight reads Cloud Run)."""
    for record in store.history(source.environment, 20):
        if record.id == source.id:
            return None  # nothing newer succeeded there
        if record.state == State.SUCCEEDED:
            return record if record.kind == "deploy" and record.image != source.image else None
    return None


def promote_request(value: str, store: Store, config: Config) -> tuple[DeployRecord, str] | None:
    """The deploy a Promote button was drawn on and the environment it promotes to, when
    that environment still takes its image (`promote_from`); None otherwise."""
    try:
        data = json.loads(value)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("deploy"), str):
        return None
    source, target = store.get(data["deploy"]), data.get("to")
    if source is None or not isinstance(target, str):
        return None
    if target not in config.promotes_to(source.environment):
        return None
    return source, target
