"""Adding bindings to an IAM policy without removing anyone's: read, add what is
missing, write with the etag read; a concurrent change (ABORTED) reads again.

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


def ensure(
    get: Callable[[], policy_pb2.Policy],
    set_policy: Callable[[policy_pb2.Policy], object],
    wanted: Mapping[str, set[str]],
    dry_run: bool,
) -> dict[str, list[str]]:
    """Make the policy hold `wanted`; what was (or, in a dry run, would be) added."""
    for attempt in range(_ATTEMPTS):
        policy = get()
        additions = missing(policy, wanted)
        if not additions or dry_run:
            return additions
        add(policy, additions)
        try:
            set_policy(policy)
            return additions
        except exceptions.Aborted:
            if attempt == _ATTEMPTS - 1:
                raise
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


def describe(additions: Mapping[str, list[str]]) -> str:
    """`run.developer to deployer, datastore.user to deployer, deployer-front`."""
    parts = []
    for role, members in additions.items():
        # An account is named by its id: the project is the one setup runs on, said once.
        who = ", ".join(m.split(":", 1)[-1].split("@", 1)[0] for m in members)
        parts.append(f"{role.removeprefix('roles/')} to {who}")
    return ", ".join(parts)
