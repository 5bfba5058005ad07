"""Adding bindings to an IAM policy without removing anyone's: read, add what is
missing (and take out what setup itself granted that the config no longer asks for),
write with the etag read; a concurrent change (ABORTED) reads again.

The same for every resource that speaks `google.iam.v1` (the project through Resource
Manager, a service account, a secret, a Cloud Run service or job): each caller passes
its own `get` and `set`. AIP-154 and `Policy.etag` (google/iam/v1/policy.proto): "If no
etag is provided in the call to setIamPolicy, then the existing policy is overwritten
blindly", so the etag is always sent. Conditional bindings are never touched: a member
is added to the binding of the role without a condition (made if none is there).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from google.api_core import exceptions
from google.iam.v1 import policy_pb2

_ATTEMPTS = 5  # Resource Manager asks for a retry "with exponential backoff"


def missing(policy: policy_pb2.Policy, wanted: Mapping[str, set[str]]) -> dict[str, list[str]]:
    """role -> members `wanted` that the policy's unconditional bindings lack."""
    held: dict[str, set[str]] = {}
    for binding in policy.bindings:
        if not binding.HasField("condition"):
            held.setdefault(binding.role, set()).update(binding.members)
    gaps = {role: sorted(members - held.get(role, set())) for role, members in wanted.items()}
    return {role: members for role, members in sorted(gaps.items()) if members}


def add(policy: policy_pb2.Policy, additions: Mapping[str, list[str]]) -> None:
    """Add `additions` to the policy in place, on unconditional bindings."""
    for role, members in additions.items():
        bindings = [b for b in policy.bindings if b.role == role and not b.HasField("condition")]
        if bindings:
            bindings[0].members.extend(members)
        else:
            policy.bindings.append(policy_pb2.Binding(role=role, members=members))


def surplus(
    policy: policy_pb2.Policy, wanted: Mapping[str, set[str]], managed: Mapping[str, set[str]]
) -> dict[str, list[str]]:
    """role -> members of `managed` that the policy's unconditional bindings hold and
    `wanted` no longer asks for."""
    extra: dict[str, list[str]] = {}
    for binding in policy.bindings:
        if binding.HasField("condition") or binding.role not in managed:
            continue
        gone = set(binding.members) & managed[binding.role] - wanted.get(binding.role, set())
        if gone:
            extra[binding.role] = sorted(set(extra.get(binding.role, [])) | gone)
    return dict(sorted(extra.items()))


def remove(policy: policy_pb2.Policy, removals: Mapping[str, list[str]]) -> None:
    """Take `removals` out of the policy's unconditional bindings in place; a binding left
    with no member is dropped (Google refuses an empty one)."""
    kept = []
    for binding in policy.bindings:
        if not binding.HasField("condition") and binding.role in removals:
            members = [m for m in binding.members if m not in removals[binding.role]]
            del binding.members[:]
            binding.members.extend(members)
        if binding.members:
            kept.append(binding)
    del policy.bindings[:]
    policy.bindings.extend(kept)


def ensure(
    get: Callable[[], policy_pb2.Policy],
    set_policy: Callable[[policy_pb2.Policy], object],
    wanted: Mapping[str, set[str]],
    dry_run: bool,
    managed: Mapping[str, set[str]] | None = None,
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Make the policy hold `wanted`, and of `managed` (role -> members setup grants when
    the config asks) no more than `wanted`: what was (or, in a dry run, would be) added,
    and removed. Nobody else's binding is touched."""
    for attempt in range(_ATTEMPTS):
        policy = get()
        additions = missing(policy, wanted)
        removals = surplus(policy, wanted, managed or {})
        if not (additions or removals) or dry_run:
            return additions, removals
        add(policy, additions)
        remove(policy, removals)
        try:
            set_policy(policy)
            return additions, removals
        except exceptions.Aborted:
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def describe(additions: Mapping[str, list[str]], preposition: str = "to") -> str:
    """`run.developer to deployer, datastore.user to deployer, deployer-front`."""
    parts = []
    for role, members in additions.items():
        # An account is named by its id: the project is the one setup runs on, said once.
        who = ", ".join(m.split(":", 1)[-1].split("@", 1)[0] for m in members)
        parts.append(f"{role.removeprefix('roles/')} {preposition} {who}")
    return ", ".join(parts)
